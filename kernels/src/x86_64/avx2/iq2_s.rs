//! IQ2_S weights against Q8_K-quantised activations: the 32 grid indices of a super-block (8 bits in
//! `qs`, 2 in `qh`) computed in vectors, four 8-byte grid points per 32 values set into one register,
//! the sign bits (one per value) spread to bytes that negate the activations, `vpmaddubsw`, then
//! `vpmaddwd` with the scales of the two 16-value halves. The integer sum of each super-block is exact
//! and converted as the reference converts it, so the result equals the scalar kernel's bit for bit.

use std::arch::x86_64::*;

use super::iq2_xs::{
    bit_mask, byte_groups, negate_where, nibble_scales, sub_block_scales, value_bits,
};
use super::q4_k::acts32;
use super::{f16, hsum_epi32, prefetch_span};
use crate::blocks::{BlockIq2S, BlockQ8K, QK_K};
use crate::scalar::iq_grids::IQ2S_GRID;

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq2S], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// The grid indices of groups `16 * h .. 16 * h + 16` of `b` as i16: `qs[g] | ((qh[g / 4] << (8 - 2
/// * (g % 4))) & 0x300)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn indices16(b: &BlockIq2S, h: usize) -> __m256i {
    // SAFETY: `qs[16 * h..16 * h + 16]` (h < 2) is 16 readable bytes; `loadu` has no alignment
    // requirement.
    let lo = unsafe { _mm_loadu_si128(b.qs.as_ptr().add(16 * h).cast()) };
    let qh = _mm256_set1_epi64x(u64::from_le_bytes(b.qh) as i64);
    // Lane g (of 16) takes qh[4 * h + g / 4] zero-extended (0x80 writes a zero).
    let r = |k: u64| (((4 * h as u64 + k) * 0x0001_0001_0001_0001) | 0x8000_8000_8000_8000) as i64;
    let hi = _mm256_shuffle_epi8(qh, _mm256_set_epi64x(r(3), r(2), r(1), r(0)));
    // Shift the two bits of group g % 4 to bits 8 and 9: a product by 1 << (8 - 2 * (g % 4)).
    let shift = _mm256_set1_epi64x(0x0004_0010_0040_0100);
    let hi = _mm256_and_si256(_mm256_mullo_epi16(hi, shift), _mm256_set1_epi16(0x300));
    _mm256_or_si256(_mm256_cvtepu8_epi16(lo), hi)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq2S], a: &[BlockQ8K]) -> f32 {
    let bits = value_bits();
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq2S>() }>((x as *const BlockIq2S).cast());
        let mut idx = [0u16; 32];
        // SAFETY: `idx` is 64 writable bytes; `storeu` has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(idx.as_mut_ptr().cast(), indices16(x, 0));
            _mm256_storeu_si256(idx.as_mut_ptr().add(16).cast(), indices16(x, 1));
        }
        // The sign bytes (one per group of 8) of sub-blocks 0..4 and 4..8, each in both 128-bit
        // lanes (`vpshufb` stays in its lane).
        // SAFETY: `qs[QK_K / 8..QK_K / 4]` is 32 readable bytes; `loadu` has no alignment
        // requirement.
        let signs = unsafe {
            let p = x.qs.as_ptr().add(QK_K / 8);
            [
                _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast())),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(16).cast())),
            ]
        };
        let sc = nibble_scales(x.scales);
        let mut sumi = _mm256_setzero_si256();
        for ib32 in 0..8 {
            // The mask keeps the index in the grid (it is at most 1023) without a bounds check.
            let g = |l: usize| IQ2S_GRID[(idx[4 * ib32 + l] & 1023) as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let b = 4 * (ib32 % 4) as u8;
            let m = bit_mask(signs[ib32 / 4], byte_groups([b, b + 1, b + 2, b + 3]), bits);
            // Pairs of at most 2 * 43 * 127 (no saturation), times a scale of at most 31.
            let p = _mm256_maddubs_epi16(grid, negate_where(acts32(y, 32 * ib32), m));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sub_block_scales(sc, ib32)));
        }
        sumf += f16(x.d) * y.d * hsum_epi32(sumi) as f32;
    }
    0.125 * sumf
}
