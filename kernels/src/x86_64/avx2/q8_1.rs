//! The Q8_1 activation quantiser (the vector Q4_1 / Q5_1 weights multiply).

use std::arch::x86_64::*;

use super::q8_0::{abs_max, f16_bits, load_block, saturate_i8, store_i8};
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
/// to -128/127), as i32 lanes: [`saturate_i8`] first (alike, see there), then `t = trunc(r)` and
/// `r - t` (exact: the fraction of a float is one), `t` moved one away from zero where that fraction
/// is at least one half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_away_to_i8_lanes(r: __m256) -> __m256i {
    let r = saturate_i8(r);
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
    for (b, xs) in out.iter_mut().zip(x.as_chunks::<QK>().0) {
        let v = load_block(xs);
        let nan = v.iter().fold(_mm256_setzero_ps(), |n, &v| {
            _mm256_or_ps(n, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
        });
        let amax = abs_max(&v);
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
        let q = v.map(|v| round_away_to_i8_lanes(_mm256_mul_ps(v, vid)));
        // The sum of the 32 quants, exact in i32.
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
        let sum = _mm_cvtsi128_si32(s);
        b.s = f16_bits(sum as f32 * d);
        store_i8(q, &mut b.qs);
    }
}

#[cfg(test)]
mod tests {
    use super::super::extremes::assert_quantizes_as;
    use super::*;

    /// Exact ties and their neighbours, huge, tiny, subnormal, infinite and NaN inputs, bit for bit.
    #[test]
    fn quantize_row_rounding_is_bit_identical() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        assert_quantizes_as(quantize_row, scalar::q8_1::quantize_row_activations);
    }
}
