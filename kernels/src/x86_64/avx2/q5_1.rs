//! Q5_1 weights (`x = d * q + m`, 5-bit `q`) against Q8_1-quantised activations.

use std::arch::x86_64::*;

use super::q4_0::nibbles;
use super::q4_1::dot_min;
use super::q5_0::bit_bytes;
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

/// `q4_1::dot_min` with 5-bit levels.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    dot_min(w, x, |b| (b.d, b.m), |b| levels(b))
}

#[cfg(test)]
mod tests {
    use super::super::extremes::{fifth_bits, levels, min, nibbles, q8_1_blocks, BLOCK_COUNTS};
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Every level, the all-31 and all-0 blocks against -128 and 127 activations (the largest pair
    /// sums), mins of both signs, over block counts with and without an odd last block.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in BLOCK_COUNTS {
            let w: Vec<BlockQ5_1> = (0..nb)
                .map(|b| {
                    let q = levels(b, 5);
                    BlockQ5_1 {
                        d: to_scale(1.0),
                        m: min(b),
                        qh: fifth_bits(&q),
                        qs: nibbles(&q),
                    }
                })
                .collect();
            let x = q8_1_blocks(nb);
            assert_eq!(dot(&w, &x), scalar::q5_1::dot(&w, &x), "blocks={nb}");
        }
    }
}
