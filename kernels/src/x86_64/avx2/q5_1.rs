//! Q5_1 weights (`x = d * q + m`, 5-bit `q`) against Q8_1-quantised activations.

use std::arch::x86_64::*;

use super::q4_0::nibbles;
use super::q5_0::bit_bytes;
use super::{
    hsum_ps, load32, min_scale_products, mul_sum_u8, prefetch_far, splat0, splat2, sum_lanes_1_3,
};
use crate::blocks::{BlockQ5_1, BlockQ8_1};

/// `sum_b (d_w[b] * d_x[b]) * sum_i q_w[b][i] * q_x[b][i] + m_w[b] * s_x[b]`, the integer sum of
/// each block exact (`scalar::q5_1::dot`, the float sums reassociated).
pub(crate) fn dot(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// The 32 values `q` of a block as unsigned bytes in element order, 0..=31: the nibble, plus 16
/// where the fifth bit is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn levels(b: &BlockQ5_1) -> __m256i {
    let high = _mm256_and_si256(bit_bytes(b.qh), _mm256_set1_epi8(0x10));
    _mm256_or_si256(nibbles(&b.qs), high)
}

/// As `q4_1::dot_avx2` with 5-bit levels: two blocks a step, the unsigned levels times the
/// activations ([`mul_sum_u8`]: exact for every activation byte, -128 included), the lane sums to
/// f32 (exact: at most `32 * 31 * 128 < 2^24`), times `d_w * d_x` by FMA; the min terms
/// `m_w * s_x` summed apart and added at the end.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    // Lanes 1 and 3: the min terms of the first and second block of each step (0 and 2 unused).
    let mut mins = _mm_setzero_ps();
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for (wb, xb) in (&mut wp).zip(&mut xp) {
        prefetch_far(wb.as_ptr());
        let p = min_scale_products(
            (wb[0].d, wb[0].m),
            (wb[1].d, wb[1].m),
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
        let p = min_scale_products((wb.d, wb.m), zero, (xb.d, xb.s), zero);
        mins = _mm_add_ps(mins, p);
        let s0 = _mm256_cvtepi32_ps(mul_sum_u8(levels(wb), load32(&xb.qs)));
        acc0 = _mm256_fmadd_ps(splat0(p), s0, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1)) + sum_lanes_1_3(mins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Every level, the all-31 block against -128 and 127 activations (the largest pair sums),
    /// mins of both signs, over block counts with and without an odd last block.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 17] {
            let w: Vec<BlockQ5_1> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ5_1 {
                        d: to_scale(1.0),
                        m: to_scale([0.0, 1.0, -2.0, 0.5][b % 4]),
                        ..Default::default()
                    };
                    let q: Vec<u8> = (0..32)
                        .map(|j| match b % 3 {
                            2 => 31,
                            _ => ((j * 7 + b * 5) % 32) as u8,
                        })
                        .collect();
                    let mut qh = 0u32;
                    for j in 0..16 {
                        blk.qs[j] = (q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4;
                        qh |= ((q[j] >> 4) as u32) << j | ((q[j + 16] >> 4) as u32) << (j + 16);
                    }
                    blk.qh = qh.to_le_bytes();
                    blk
                })
                .collect();
            let x: Vec<BlockQ8_1> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ8_1 {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = match b % 4 {
                            2 => -128,
                            3 => 127,
                            _ => [-128, 127, -127, 0, 1, -1][(j + b) % 6],
                        };
                    }
                    let sum: i32 = blk.qs.iter().map(|&q| q as i32).sum();
                    blk.s = to_scale(sum as f32);
                    blk
                })
                .collect();
            // Scale 1 and small integer mins: every partial sum is an exact small integer.
            assert_eq!(dot(&w, &x), scalar::q5_1::dot(&w, &x), "blocks={nb}");
        }
    }
}
