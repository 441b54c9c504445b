//! IQ3_S weights against Q8_K-quantised activations: eight 4-byte grid points (9-bit indices) per 32
//! values set into one register, the 32 sign bits spread to ±1 bytes (`vpshufb` to the byte holding
//! each value's bit, a compare with its mask), `vpmaddubsw` and `vpmaddwd` with the sub-block scale.
//! The integer sum of each super-block is exact and converted as the reference converts it, so the
//! result equals the scalar kernel's bit for bit.

use std::arch::x86_64::*;

use super::iq2_xxs::scaled_products;
use super::q4_k::acts32;
use super::{f16, hsum_epi32, prefetch_span};
use crate::blocks::{BlockIq3S, BlockQ8K};
use crate::scalar::iq2_xxs::le_u32;
use crate::scalar::iq_grids::IQ3S_GRID;

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq3S], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// The ±1 bytes of 32 values whose sign bits are the 32 bits of `bits` (value `k`: bit `k`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sign_bits32(bits: u32) -> __m256i {
    // Byte k takes byte k / 8 of `bits`, then keeps bit k % 8.
    let spread = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let b = _mm256_and_si256(
        _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread),
        bit,
    );
    // -1 (0xff) where the bit is set, then | 1: -1 or 1.
    _mm256_or_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8(1))
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq3S], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq3S>() }>((x as *const BlockIq3S).cast());
        let mut sumi = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let (qs, qh) = (&x.qs[8 * ib32..8 * ib32 + 8], x.qh[ib32] as usize);
            // Index j: 8 bits in qs[j], the ninth bit j of qh.
            let g = |j: usize| IQ3S_GRID[qs[j] as usize | (((qh >> j) & 1) << 8)] as i32;
            let grid = _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0));
            let ls = 2 * ((x.scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf) as i16 + 1;
            let signs = sign_bits32(le_u32(&x.signs, 4 * ib32));
            let p = scaled_products(grid, signs, acts32(y, 32 * ib32), ls);
            sumi = _mm256_add_epi32(sumi, p);
        }
        sumf += f16(x.d) * y.d * hsum_epi32(sumi) as f32;
    }
    sumf
}
