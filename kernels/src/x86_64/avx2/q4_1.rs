//! Q4_1 weights (`x = d * q + m`, 4-bit `q`) against Q8_1-quantised activations.

use std::arch::x86_64::*;

use super::q4_0::nibbles;
use super::{
    hsum_ps, load32, min_scale_products, mul_sum_u8, prefetch_far, splat0, splat2, sum_lanes_1_3,
};
use crate::blocks::{BlockQ4_1, BlockQ8_1};

/// `sum_b (d_w[b] * d_x[b]) * sum_i q_w[b][i] * q_x[b][i] + m_w[b] * s_x[b]`, the integer sum of
/// each block exact (`scalar::q4_1::dot`, the float sums reassociated).
pub(crate) fn dot(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// [`dot_min`] with the nibbles as the levels.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    dot_min(w, x, |b| (b.d, b.m), |b| nibbles(&b.qs))
}

/// The product of blocks with a minimum (Q4_1, Q5_1) and Q8_1 activations, the blocks' scale and
/// min given by `dm` and their unsigned levels (0..=31, in element order) by `levels`. Two blocks
/// a step into two accumulators: the levels times the activations ([`mul_sum_u8`]: exact for every
/// activation byte, -128 included, so no check for it), the eight lane sums converted to f32
/// (exact: at most `32 * 31 * 128 < 2^24`), times `d_w * d_x`, summed by FMA; the min terms
/// `m_w * s_x` summed apart in two lanes and added at the end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn dot_min<B>(
    w: &[B],
    x: &[BlockQ8_1],
    dm: impl Fn(&B) -> ([u8; 2], [u8; 2]),
    levels: impl Fn(&B) -> __m256i,
) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    // Lanes 1 and 3: the min terms of the first and second block of each step (0 and 2 unused).
    let mut mins = _mm_setzero_ps();
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for (wb, xb) in (&mut wp).zip(&mut xp) {
        prefetch_far(wb.as_ptr());
        let p = min_scale_products(
            dm(&wb[0]),
            dm(&wb[1]),
            (xb[0].d, xb[0].s),
            (xb[1].d, xb[1].s),
        );
        mins = _mm_add_ps(mins, p);
        let s0 = _mm256_cvtepi32_ps(mul_sum_u8(levels(&wb[0]), load32(&xb[0].qs)));
        let s1 = _mm256_cvtepi32_ps(mul_sum_u8(levels(&wb[1]), load32(&xb[1].qs)));
        acc0 = _mm256_fmadd_ps(splat0(p), s0, acc0);
        acc1 = _mm256_fmadd_ps(splat2(p), s1, acc1);
    }
    if let ([wb], [xb]) = (wp.remainder(), xp.remainder()) {
        let zero = ([0; 2], [0; 2]);
        let p = min_scale_products(dm(wb), zero, (xb.d, xb.s), zero);
        mins = _mm_add_ps(mins, p);
        let s0 = _mm256_cvtepi32_ps(mul_sum_u8(levels(wb), load32(&xb.qs)));
        acc0 = _mm256_fmadd_ps(splat0(p), s0, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1)) + sum_lanes_1_3(mins)
}

#[cfg(test)]
mod tests {
    use super::super::extremes::{levels, min, nibbles, q8_1_blocks, BLOCK_COUNTS};
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Every nibble value, the all-15 and all-0 blocks against -128 and 127 activations (the
    /// largest pair sums), mins of both signs, over block counts with and without an odd last block.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in BLOCK_COUNTS {
            let w: Vec<BlockQ4_1> = (0..nb)
                .map(|b| BlockQ4_1 {
                    d: to_scale(1.0),
                    m: min(b),
                    qs: nibbles(&levels(b, 4)),
                })
                .collect();
            let x = q8_1_blocks(nb);
            assert_eq!(dot(&w, &x), scalar::q4_1::dot(&w, &x), "blocks={nb}");
        }
    }
}
