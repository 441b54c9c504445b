//! Q5_0 weights (`x = d * (q - 16)`, 5-bit `q`) against Q8_0-quantised activations.

use std::arch::x86_64::*;

use super::q4_0::nibbles;
use super::{
    hsum_ps, load32, mul_sum_i8_abs_x, prefetch_far, prepared_scale_products, splat0, splat1,
};
use crate::acts::Q8Acts;
use crate::blocks::BlockQ5_0;

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 16) * q_x[b][i]`, the integer sum of each block exact
/// (`scalar::q5_0::dot`, the float sums reassociated).
pub(crate) fn dot(w: &[BlockQ5_0], x: &Q8Acts<'_>) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// Bit `i` of the little-endian `qh` as byte `i` of the result, `0xff` where set and 0 where clear:
/// the fifth bits of a Q5 block's 32 values in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn bit_bytes(qh: [u8; 4]) -> __m256i {
    let v = _mm256_set1_epi32(i32::from_le_bytes(qh));
    // Byte `i` takes byte `i / 8` of `qh` (the shuffle indexes within each 128-bit half, and both
    // halves hold all four bytes).
    let spread = _mm256_shuffle_epi8(
        v,
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    // Byte `i` keeps bit `i % 8`.
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// The 32 values `q - 16` of a block as signed bytes in element order, -16..=15: the nibble alone
/// where the fifth bit is set (`q - 16 = nibble`), the nibble with its high four bits set where it
/// is clear (`nibble - 16`, as ggml's AVX2 kernel).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn levels(b: &BlockQ5_0) -> __m256i {
    let high = _mm256_andnot_si256(bit_bytes(b.qh), _mm256_set1_epi8(0xf0_u8 as i8));
    _mm256_or_si256(nibbles(&b.qs), high)
}

/// [`dot_signed`] with the levels `q - 16`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ5_0], x: &Q8Acts<'_>) -> f32 {
    dot_signed(w, x, |b| b.d, |b| levels(b))
}

/// The product of blocks of signed levels (Q5_0, IQ4_NL) and Q8_0 activations, the blocks' scale
/// given by `scale` and their levels (in element order, none -128) by `levels`. Two blocks a step into
/// two accumulators: the levels times the activations ([`mul_sum_i8_abs_x`]: exact for every
/// activation byte, -128 included, as no level is -128), the eight lane sums converted to f32
/// (exact: at most `32 * 128 * 127 < 2^24`), times the product of the scales, summed by FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn dot_signed<B>(
    w: &[B],
    x: &Q8Acts<'_>,
    scale: impl Fn(&B) -> [u8; 2],
    levels: impl Fn(&B) -> __m256i,
) -> f32 {
    let n = w.len().min(x.len());
    let (w, x, xd) = (&w[..n], &x.blocks()[..n], &x.d()[..n]);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for ((wb, xb), xd) in (&mut wp).zip(&mut xp).zip(xd.as_chunks::<2>().0) {
        prefetch_far(wb.as_ptr());
        let d = prepared_scale_products(scale(&wb[0]), scale(&wb[1]), xd);
        let s0 = _mm256_cvtepi32_ps(mul_sum_i8_abs_x(levels(&wb[0]), load32(&xb[0].qs)));
        let s1 = _mm256_cvtepi32_ps(mul_sum_i8_abs_x(levels(&wb[1]), load32(&xb[1].qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
        acc1 = _mm256_fmadd_ps(splat1(d), s1, acc1);
    }
    if let ([wb], [xb]) = (wp.remainder(), xp.remainder()) {
        let d = prepared_scale_products(scale(wb), [0; 2], &[xd[n - 1], 0.0]);
        let s0 = _mm256_cvtepi32_ps(mul_sum_i8_abs_x(levels(wb), load32(&xb.qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::super::extremes::{fifth_bits, levels, nibbles, q8_0_blocks, BLOCK_COUNTS};
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Every level (all 32 fifth-bit patterns' positions), the all-0 (-16) and all-31 (15) blocks
    /// against -128 and 127 activations (the largest pair sums), over block counts with and
    /// without an odd last block.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in BLOCK_COUNTS {
            let w: Vec<BlockQ5_0> = (0..nb)
                .map(|b| {
                    let q = levels(b, 5);
                    BlockQ5_0 {
                        d: to_scale(1.0),
                        qh: fifth_bits(&q),
                        qs: nibbles(&q),
                    }
                })
                .collect();
            let x = q8_0_blocks(nb);
            let xa = Q8Prepared::from_blocks(x.clone(), 1);
            assert_eq!(
                dot(&w, &xa.get(0)),
                scalar::q5_0::dot(&w, &x),
                "blocks={nb}"
            );
        }
    }

    #[test]
    fn bit_bytes_spreads_every_bit() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for qh in [0u32, u32::MAX, 0x8000_0001, 0x1234_5678, 0xa5a5_5a5a] {
            let mut out = [0u8; 32];
            // SAFETY: AVX2 checked above; `out` is 32 writable bytes.
            unsafe {
                _mm256_storeu_si256(out.as_mut_ptr().cast(), bit_bytes(qh.to_le_bytes()));
            }
            for (i, &o) in out.iter().enumerate() {
                assert_eq!(
                    o,
                    if qh >> i & 1 == 1 { 0xff } else { 0 },
                    "qh={qh:#x} i={i}"
                );
            }
        }
    }
}
