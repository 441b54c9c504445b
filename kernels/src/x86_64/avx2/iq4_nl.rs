//! IQ4_NL weights (`x = d * KVALUES_IQ4NL[q]`, 4-bit indices into a non-linear grid) against
//! Q8_0-quantised activations.

use std::arch::x86_64::*;

use super::q4_0::nibbles;
use super::{
    hsum_ps, load32, mul_sum_i8_abs_x, prefetch_far, prepared_scale_products, splat0, splat1,
};
use crate::acts::Q8Acts;
use crate::blocks::{BlockIq4Nl, KVALUES_IQ4NL};

/// `sum_b d_w[b] * d_x[b] * sum_i KVALUES_IQ4NL[q_w[b][i]] * q_x[b][i]`, the integer sum of each
/// block exact (`scalar::iq4_nl::dot`, the float sums reassociated).
pub(crate) fn dot(w: &[BlockIq4Nl], x: &Q8Acts<'_>) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// The grid in both 128-bit halves, for `vpshufb` to look the 4-bit indices up in.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn grid() -> __m256i {
    // SAFETY: `KVALUES_IQ4NL` is 16 readable bytes; `loadu` has no alignment requirement.
    let g = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    _mm256_broadcastsi128_si256(g)
}

/// Two blocks a step into two accumulators: the grid values of the nibbles (`vpshufb`, -127..=113)
/// times the activations ([`mul_sum_i8_abs_x`]: exact for every activation byte, -128 included, as
/// no grid value is -128), the eight lane sums converted to f32 (exact: at most `32 * 128 * 127 <
/// 2^24`), times the product of the scales, summed by FMA.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq4Nl], x: &Q8Acts<'_>) -> f32 {
    let n = w.len().min(x.len());
    let (w, x, xd) = (&w[..n], &x.blocks()[..n], &x.d()[..n]);
    let grid = grid();
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for ((wb, xb), xd) in (&mut wp).zip(&mut xp).zip(xd.as_chunks::<2>().0) {
        prefetch_far(wb.as_ptr());
        let d = prepared_scale_products(wb[0].d, wb[1].d, xd);
        let v0 = _mm256_shuffle_epi8(grid, nibbles(&wb[0].qs));
        let v1 = _mm256_shuffle_epi8(grid, nibbles(&wb[1].qs));
        let s0 = _mm256_cvtepi32_ps(mul_sum_i8_abs_x(v0, load32(&xb[0].qs)));
        let s1 = _mm256_cvtepi32_ps(mul_sum_i8_abs_x(v1, load32(&xb[1].qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
        acc1 = _mm256_fmadd_ps(splat1(d), s1, acc1);
    }
    if let ([wb], [xb]) = (wp.remainder(), xp.remainder()) {
        let d = prepared_scale_products(wb.d, [0; 2], &[xd[n - 1], 0.0]);
        let v0 = _mm256_shuffle_epi8(grid, nibbles(&wb.qs));
        let s0 = _mm256_cvtepi32_ps(mul_sum_i8_abs_x(v0, load32(&xb.qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::{to_scale, BlockQ8_0};
    use crate::scalar;

    /// Every grid index, the all-0 (-127) and all-15 (113) blocks against -128 and 127 activations
    /// (the largest pair sums), over block counts with and without an odd last block.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 17] {
            let w: Vec<BlockIq4Nl> = (0..nb)
                .map(|b| {
                    let mut blk = BlockIq4Nl {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = match b % 4 {
                            2 => 0x00,
                            3 => 0xff,
                            _ => ((j + b) % 16) as u8 | ((15 - (j * 3 + b) % 16) as u8) << 4,
                        };
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
                        *q = match b % 3 {
                            1 => -128,
                            2 => [127, -128][b % 2],
                            _ => [-128, 127, -127, 0, 1, -1][(j + b) % 6],
                        };
                    }
                    blk
                })
                .collect();
            // Scale 1: every partial sum is an exact small integer.
            let xa = Q8Prepared::from_blocks(x.clone(), 1);
            assert_eq!(
                dot(&w, &xa.get(0)),
                scalar::iq4_nl::dot(&w, &x),
                "blocks={nb}"
            );
        }
    }
}
