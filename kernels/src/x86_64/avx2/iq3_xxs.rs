//! IQ3_XXS weights against Q8_K-quantised activations: eight 4-byte grid points per 32 values set
//! into one register, the signs applied to the activations as for IQ2_XXS, `vpmaddubsw` and
//! `vpmaddwd` with the sub-block scale. The integer sum of each super-block is exact and converted as
//! the reference converts it, so the result equals the scalar kernel's bit for bit.

use std::arch::x86_64::*;

use super::iq2_xxs::{scaled_products, signs32};
use super::q4_k::acts32;
use super::{f16, hsum_epi32, prefetch_span};
use crate::blocks::{BlockIq3Xxs, BlockQ8K, QK_K};
use crate::scalar::iq2_xxs::le_u32;
use crate::scalar::iq_grids::IQ3XXS_GRID;

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq3Xxs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq3Xxs], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq3Xxs>() }>((x as *const BlockIq3Xxs).cast());
        let mut sumi = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let q3 = &x.qs[8 * ib32..8 * ib32 + 8];
            let g = |j: usize| IQ3XXS_GRID[q3[j] as usize] as i32;
            let grid = _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0));
            let aux = le_u32(&x.qs, QK_K / 4 + 4 * ib32);
            let ls = (2 * (aux >> 28) + 1) as i16;
            let p = scaled_products(grid, signs32(aux), acts32(y, 32 * ib32), ls);
            sumi = _mm256_add_epi32(sumi, p);
        }
        sumf += f16(x.d) * y.d * hsum_epi32(sumi) as f32;
    }
    0.25 * sumf
}
