//! Q4_0 weights against Q8_0-quantised activations.

use std::arch::x86_64::*;

use super::{hsum_ps, load32, prefetch_ahead, scale_products, splat0, splat1};
use crate::blocks::{BlockQ4_0, BlockQ8_0};

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]`, the integer sum of each block exact.
pub(crate) fn dot(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: reached only through the AVX2 table (and the AVX-512 one without VNNI), which are
    // built only where `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// The 32 unsigned 4-bit values of a block as bytes `0..=15` in element order: the low nibbles of
/// `qs` (elements 0..16) in the low 128 bits, the high nibbles (elements 16..32) in the high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; `loadu` has no alignment requirement.
    let v = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    // The 16-bit shift moves each byte's high nibble down (and a neighbour's low nibble into the
    // high half of the byte, which the mask clears).
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(v), v);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// The eight partial sums (i32) of `(q - 8) . x` over one block, exact for every `x`:
/// `vpmaddubsw(q, x) - vpmaddubsw(8, x)`, unsigned `q <= 15` times signed `x`, pair sums within
/// `2 * 15 * 128` (no saturation), then pairs of i16 to i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_q4(q: __m256i, x: __m256i) -> __m256i {
    let p = _mm256_sub_epi16(
        _mm256_maddubs_epi16(q, x),
        _mm256_maddubs_epi16(_mm256_set1_epi8(8), x),
    );
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Two blocks a step into two accumulators, as `q8_0::dot_avx2`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for (wb, xb) in (&mut wp).zip(&mut xp) {
        prefetch_ahead(wb.as_ptr());
        let d = scale_products(wb[0].d, wb[1].d, xb[0].d, xb[1].d);
        let s0 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&wb[0].qs), load32(&xb[0].qs)));
        let s1 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&wb[1].qs), load32(&xb[1].qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
        acc1 = _mm256_fmadd_ps(splat1(d), s1, acc1);
    }
    if let ([wb], [xb]) = (wp.remainder(), xp.remainder()) {
        let d = scale_products(wb.d, [0; 2], xb.d, [0; 2]);
        let s0 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&wb.qs), load32(&xb.qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{to_scale, QK};
    use crate::scalar;

    /// Every nibble value against every extreme activation byte, -128 included.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in [1usize, 2, 3, 4, 7] {
            let w: Vec<BlockQ4_0> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ4_0 {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = ((j + b) % 16) as u8 | ((15 - (j * 3 + b) % 16) as u8) << 4;
                    }
                    blk
                })
                .collect();
            let x: Vec<BlockQ8_0> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ8_0 {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = [-128, 127, -127, 0, 1, -1][(j + b) % 6];
                    }
                    blk
                })
                .collect();
            // Scale 1: exact small integers throughout.
            assert_eq!(dot(&w, &x), scalar::q4_0::dot(&w, &x), "blocks={nb}");
        }
        let _ = QK;
    }
}
