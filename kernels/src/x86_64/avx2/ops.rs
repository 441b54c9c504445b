//! Element-wise kernels that vectorise without changing the reference's arithmetic: RMSNorm (f64
//! sum of squares, then the same f32 products) and rotary embedding (the same products and sums,
//! bit for bit). softmax and silu need `exp` and stay scalar.

use std::arch::x86_64::*;

/// transformers' RMSNorm, as `scalar::ops::rmsnorm`; the sum of squares is the same f64 sum in
/// another order (each square is exact in f64), the rest is bit-identical.
pub(crate) fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { rmsnorm_avx2(x, w, eps, out) }
}

/// Rotary embedding, NeoX layout, bit-identical to `scalar::ops::rope_neox`.
pub(crate) fn rope_neox(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    // SAFETY: as for `rmsnorm`.
    unsafe { rope_neox_avx2(x, cos, sin) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rmsnorm_avx2(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len().min(w.len()).min(out.len());
    if x.is_empty() {
        return;
    }
    let px = x.as_ptr();
    let (mut s0, mut s1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut i = 0;
    while i + 8 <= x.len() {
        // SAFETY: 8 values at `i`, `i + 8 <= x.len()`.
        let v = unsafe { _mm256_loadu_ps(px.add(i)) };
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
        i += 8;
    }
    let s = _mm256_add_pd(s0, s1);
    let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
    let mut ss = _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    for &v in &x[i..] {
        ss += (v as f64) * (v as f64);
    }
    let var = (ss / x.len() as f64) as f32;
    let r = 1.0 / (var + eps).sqrt();

    let (pw, po) = (w.as_ptr(), out.as_mut_ptr());
    let vr = _mm256_set1_ps(r);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 values at `i`, `i + 8 <= n`, the shortest of the three; `out` is borrowed
        // mutably.
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(px.add(i)), vr);
            _mm256_storeu_ps(po.add(i), _mm256_mul_ps(_mm256_loadu_ps(pw.add(i)), v));
        }
        i += 8;
    }
    for j in i..n {
        out[j] = w[j] * (x[j] * r);
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rope_neox_avx2(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let n = half.min(cos.len()).min(sin.len());
    let (lo, hi) = x.split_at_mut(half);
    let (pl, ph, pc, ps) = (lo.as_mut_ptr(), hi.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 values at `i` of each slice, `i + 8 <= n <= half <= lo.len(), hi.len()` and
        // `n <= cos.len(), sin.len()`; `lo` and `hi` are disjoint mutable borrows.
        unsafe {
            let (a, b) = (_mm256_loadu_ps(pl.add(i)), _mm256_loadu_ps(ph.add(i)));
            let (c, s) = (_mm256_loadu_ps(pc.add(i)), _mm256_loadu_ps(ps.add(i)));
            // a*c + (-b)*s is a*c - b*s exactly; no FMA, as the reference.
            let l = _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s));
            let h = _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s));
            _mm256_storeu_ps(pl.add(i), l);
            _mm256_storeu_ps(ph.add(i), h);
        }
        i += 8;
    }
    for i in i..n {
        let (a, b) = (lo[i], hi[i]);
        lo[i] = a * cos[i] + (-b) * sin[i];
        hi[i] = b * cos[i] + a * sin[i];
    }
}
