//! The Q8_1 activation quantiser (the vector Q4_1 / Q5_1 weights multiply).

use std::arch::x86_64::*;

use super::q8_0::f16_bits;
use crate::blocks::{BlockQ8_1, QK};
use crate::scalar;

/// Bit-identical to `scalar::q8_1::quantize_row_activations` (ggml's `quantize_row_q8_1_ref`:
/// `1 / d` and rounding half away from zero, unlike llama.cpp's x86 `quantize_row_q8_1`, which
/// takes `127 / amax` and rounds half to even).
pub(crate) fn quantize_row(x: &[f32], out: &mut [BlockQ8_1]) {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { quantize_row_avx2(x, out) }
}

/// `r.round()` (half away from zero), then Rust's saturating `as i8` (NaN to 0, beyond the range
/// to -128/127), as i32 lanes. Clamping first gives the same: rounding is monotone and keeps the
/// bounds. Then `t = trunc(r)` and `r - t` (exact: the fraction of a float is one), `t` moved one
/// away from zero where that fraction is at least one half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_away_to_i8_lanes(r: __m256) -> __m256i {
    let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
    let r = _mm256_min_ps(
        _mm256_max_ps(r, _mm256_set1_ps(-128.0)),
        _mm256_set1_ps(127.0),
    );
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(r);
    let sign = _mm256_set1_ps(-0.0);
    let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(r, t));
    let half = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5));
    // +-1 with the sign of `r` where the fraction is at least one half, 0 elsewhere.
    let step = _mm256_and_ps(
        half,
        _mm256_or_ps(_mm256_and_ps(r, sign), _mm256_set1_ps(1.0)),
    );
    _mm256_cvttps_epi32(_mm256_add_ps(t, step))
}

/// Per block: `amax` by `vmaxps`, then the scale in scalar code exactly as the reference, then
/// `x * id` and the reference's rounding on 32 lanes, and `s` from the exact integer sum. A block
/// with a NaN (where the reference's running `a > b ? a : b` depends on the order) or an infinity
/// (`d` infinite, `s` possibly NaN) goes to the reference.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_avx2(x: &[f32], out: &mut [BlockQ8_1]) {
    let sign = _mm256_set1_ps(-0.0);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let p = xs.as_ptr();
        // SAFETY: `xs` is 32 values.
        let v = unsafe {
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        };
        let (mut m, mut nan) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for v in v {
            m = _mm256_max_ps(_mm256_andnot_ps(sign, v), m);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        }
        // Without NaNs every lane is >= 0, so the order of the reduction does not matter.
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let amax = _mm_cvtss_f32(m);
        if _mm256_movemask_ps(nan) != 0 || amax == f32::INFINITY {
            scalar::q8_1::quantize_row_activations(xs, std::slice::from_mut(b));
            continue;
        }

        // As the reference: `id = 1 / d`, not `127 / amax`. `amax` is finite, so `d` is, and so is
        // `sum * d` (or infinite, never NaN), which `f16_bits` then converts as `to_scale` does.
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16_bits(d);

        let vid = _mm256_set1_ps(id);
        let q = [
            round_away_to_i8_lanes(_mm256_mul_ps(v[0], vid)),
            round_away_to_i8_lanes(_mm256_mul_ps(v[1], vid)),
            round_away_to_i8_lanes(_mm256_mul_ps(v[2], vid)),
            round_away_to_i8_lanes(_mm256_mul_ps(v[3], vid)),
        ];
        // The sum of the 32 quants, exact in i32.
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
        let sum = _mm_cvtsi128_si32(s);
        b.s = f16_bits(sum as f32 * d);

        // As `q8_0::quantize_row`: packs within 128-bit halves, then the permute restores the order.
        let q16a = _mm256_packs_epi32(q[0], q[1]);
        let q16b = _mm256_packs_epi32(q[2], q[3]);
        let q8 = _mm256_packs_epi16(q16a, q16b);
        let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `qs` is 32 writable bytes.
        unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), q8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact ties and their neighbours, huge, tiny, subnormal, infinite and NaN inputs, bit for bit.
    #[test]
    fn quantize_row_rounding_is_bit_identical() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        let mut x = Vec::new();
        // amax 127 makes d = 1 and id = 1: x * id is x, so these are exact ties.
        let mut b: Vec<f32> = (0..31).map(|i| i as f32 * 8.0 - 120.5).collect();
        b.push(127.0);
        x.extend(&b);
        x.extend(b.iter().map(|v| -v));
        // Neighbours of ties.
        let mut b: Vec<f32> = (0..31)
            .map(|i| {
                let t = i as f32 * 4.0 - 60.5;
                if i % 2 == 0 {
                    f32::from_bits(t.to_bits() + 1)
                } else {
                    f32::from_bits(t.to_bits() - 1)
                }
            })
            .collect();
        b.push(-127.0);
        x.extend(&b);
        // Halves and their neighbours below one: 0.5, 0.49999997, 0.50000006.
        let mut b: Vec<f32> = (0..31)
            .map(|i| {
                let h = 0.5f32 + (i / 3) as f32;
                let h = if i % 2 == 0 { h } else { -h };
                match i % 3 {
                    0 => h,
                    1 => f32::from_bits(h.to_bits() - 1),
                    _ => f32::from_bits(h.to_bits() + 1),
                }
            })
            .collect();
        b.push(127.0);
        x.extend(&b);
        // Inexact scales.
        x.extend((0..32).map(|i| (i as f32 - 16.0) * 0.05));
        x.extend((0..32).map(|i| (i as f32 - 3.0) * 1.7e5));
        // Subnormal and tiny blocks (id overflows to inf or d rounds to 0), huge and infinite ones.
        for &v in &[1e-45f32, 1e-43, 3e-39, 1e-38, 1e30, f32::MAX, f32::INFINITY] {
            let b: Vec<f32> = (0..32)
                .map(|i| match i % 5 {
                    0 => v,
                    1 => -v,
                    2 => v * 0.5,
                    3 => 0.0,
                    _ => -v * 0.3,
                })
                .collect();
            x.extend(&b);
        }
        // NaNs first, in the middle and last in a block.
        for at in [0usize, 3, 31] {
            let mut b: Vec<f32> = (0..32).map(|i| i as f32 - 10.3).collect();
            b[at] = f32::NAN;
            b[(at + 17) % 32] = -f32::NAN;
            x.extend(&b);
        }
        let mut b: Vec<f32> = (0..32).map(|i| i as f32 - 10.3).collect();
        b[20] = f32::NEG_INFINITY;
        x.extend(&b);
        x.extend([0f32; 32]);
        x.extend([-0.0f32; 32]);
        x.extend((0..32 * 64).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.0137));

        let nb = x.len() / QK;
        let mut a = vec![BlockQ8_1::default(); nb];
        let mut r = vec![BlockQ8_1::default(); nb];
        quantize_row(&x, &mut a);
        scalar::q8_1::quantize_row_activations(&x, &mut r);
        for (i, (a, r)) in a.iter().zip(&r).enumerate() {
            assert_eq!(a, r, "block {i}: {:?}", &x[i * QK..(i + 1) * QK]);
        }
    }
}
