//! IQ4_NL weights (`x = d * KVALUES_IQ4NL[q]`, 4-bit indices into a non-linear grid) against
//! Q8_0-quantised activations.

use std::arch::x86_64::*;

use super::q4_0::nibbles;
use super::q5_0::dot_signed;
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

/// `q5_0::dot_signed` with the grid values of the nibbles (`vpshufb`, -127..=113) as the levels.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq4Nl], x: &Q8Acts<'_>) -> f32 {
    let grid = grid();
    dot_signed(w, x, |b| b.d, |b| _mm256_shuffle_epi8(grid, nibbles(&b.qs)))
}

#[cfg(test)]
mod tests {
    use super::super::extremes::{levels, nibbles, q8_0_blocks, BLOCK_COUNTS};
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Every grid index, the all-0 (-127) and all-15 (113) blocks against -128 and 127 activations
    /// (the largest pair sums), over block counts with and without an odd last block.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in BLOCK_COUNTS {
            let w: Vec<BlockIq4Nl> = (0..nb)
                .map(|b| BlockIq4Nl {
                    d: to_scale(1.0),
                    qs: nibbles(&levels(b, 4)),
                })
                .collect();
            let x = q8_0_blocks(nb);
            let xa = Q8Prepared::from_blocks(x.clone(), 1);
            assert_eq!(
                dot(&w, &xa.get(0)),
                scalar::iq4_nl::dot(&w, &x),
                "blocks={nb}"
            );
        }
    }
}
