//! IQ2_XXS weights against Q8_K-quantised activations: four 8-byte grid points per 32 values set into
//! one register, the signs applied to the activations (`vpsignb` with a ±1 byte per value from the
//! 7-bit sign index), unsigned-by-signed byte products with `vpmaddubsw`, the sub-block scale with
//! `vpmaddwd`. The integer sum of each super-block is exact and converted as the reference converts
//! it, so the result equals the scalar kernel's bit for bit.

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::{f16, hsum_epi32, prefetch_span};
use crate::blocks::{BlockIq2Xxs, BlockQ8K};
use crate::scalar::iq2_xxs::le_u32;
use crate::scalar::iq_grids::{IQ2XXS_GRID, KSIGNS_IQ2XS};

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq2Xxs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// For each 7-bit sign index, its eight signs as bytes: -1 where `KSIGNS_IQ2XS` has the bit set,
/// else 1 (ggml's `keven_signs_q2xs`), for `vpsignb`.
pub(in crate::x86_64) const KEVEN_SIGNS: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        let mut j = 0;
        while j < 8 {
            let byte: u64 = if KSIGNS_IQ2XS[i] & (1 << j) != 0 {
                0xff
            } else {
                0x01
            };
            t[i] |= byte << (8 * j);
            j += 1;
        }
        i += 1;
    }
    t
};

/// The ±1 bytes of the 32 values whose four 7-bit sign indices `aux` holds (bits 0..28).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn signs32(aux: u32) -> __m256i {
    let s = |l: u32| KEVEN_SIGNS[((aux >> (7 * l)) & 127) as usize] as i64;
    _mm256_set_epi64x(s(3), s(2), s(1), s(0))
}

/// `(grid . (sign * q_a)) * ls` of one 32-value sub-block as eight i32 lanes: `grid` the 32 grid
/// bytes (at most 62), `ls` at most 31, so every step is exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn scaled_products(
    grid: __m256i,
    signs: __m256i,
    q8: __m256i,
    ls: i16,
) -> __m256i {
    let p = _mm256_maddubs_epi16(grid, _mm256_sign_epi8(q8, signs));
    _mm256_madd_epi16(p, _mm256_set1_epi16(ls))
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq2Xxs], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq2Xxs>() }>((x as *const BlockIq2Xxs).cast());
        let mut sumi = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let (idx, aux) = (
                le_u32(&x.qs, 8 * ib32).to_le_bytes(),
                le_u32(&x.qs, 8 * ib32 + 4),
            );
            let g = |l: usize| IQ2XXS_GRID[idx[l] as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let ls = (2 * (aux >> 28) + 1) as i16;
            let p = scaled_products(grid, signs32(aux), acts32(y, 32 * ib32), ls);
            sumi = _mm256_add_epi32(sumi, p);
        }
        sumf += f16(x.d) * y.d * hsum_epi32(sumi) as f32;
    }
    0.125 * sumf
}
