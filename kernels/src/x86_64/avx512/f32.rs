//! `f32` weights and activations.

use std::arch::x86_64::*;

use super::first_lanes;

/// Dot product of two equally long slices (over the shorter, as the reference).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: reached only through the AVX-512 table, which is built only where
    // `avx512_supported()` (AVX2, FMA, F16C, AVX-512 F/BW/VL) holds.
    unsafe { dot_avx512(a, b) }
}

/// `y += a * x` (the same rounding as the reference: a product, then a sum, no FMA).
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    // SAFETY: as for `dot`.
    unsafe { axpy_avx512(a, x, y) }
}

/// Four independent 16-lane FMA accumulators over 64 values a step, then 16 a step, then the last
/// `< 16` values with masked loads (masked-off lanes read nothing and are zero).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL (and AVX2, FMA, F16C).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (every load below): it reads values `i..i + 16` with `i + 16 <= n <= a.len(), b.len()`,
    // or, masked, values `i..n` only.
    while i + 64 <= n {
        for (k, s) in s.iter_mut().enumerate() {
            let j = i + 16 * k;
            *s = unsafe {
                _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(j)), _mm512_loadu_ps(pb.add(j)), *s)
            };
        }
        i += 64;
    }
    while i + 16 <= n {
        s[0] = unsafe {
            _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s[0])
        };
        i += 16;
    }
    if i < n {
        let k = first_lanes(n - i);
        s[1] = unsafe {
            _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(k, pa.add(i)),
                _mm512_maskz_loadu_ps(k, pb.add(i)),
                s[1],
            )
        };
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(s[0], s[1]),
        _mm512_add_ps(s[2], s[3]),
    ))
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL (and AVX2, FMA, F16C).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn axpy_avx512(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let va = _mm512_set1_ps(a);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: 16 values at `i` with `i + 16 <= n <= x.len(), y.len()`; `y` is borrowed mutably.
        unsafe {
            let v = _mm512_add_ps(
                _mm512_loadu_ps(py.add(i)),
                _mm512_mul_ps(va, _mm512_loadu_ps(px.add(i))),
            );
            _mm512_storeu_ps(py.add(i), v);
        }
        i += 16;
    }
    if i < n {
        let k = first_lanes(n - i);
        // SAFETY: the masks read and write values `i..n` only.
        unsafe {
            let v = _mm512_add_ps(
                _mm512_maskz_loadu_ps(k, py.add(i)),
                _mm512_mul_ps(va, _mm512_maskz_loadu_ps(k, px.add(i))),
            );
            _mm512_mask_storeu_ps(py.add(i), k, v);
        }
    }
}
