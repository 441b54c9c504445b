//! IQ2_XS weights against Q8_K-quantised activations: four 8-byte grid points (9-bit indices) per 32
//! values set into one register; the eight signs of each group rebuilt in vectors (the seven stored
//! bits and their parity, sixteen groups at a time) and spread to bytes, which negate the
//! activations; `vpmaddubsw`, then `vpmaddwd` with the scales of the two 16-value halves. The integer
//! sum of each super-block is exact and converted as the reference converts it, so the result equals
//! the scalar kernel's bit for bit.
//!
//! The helpers below serve IQ2_S, IQ1_S and IQ1_M too.

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::{f16, hsum_epi32, prefetch_span};
use crate::blocks::{BlockIq2Xs, BlockQ8K};
use crate::scalar::iq2_xxs::le_u16;
use crate::scalar::iq_grids::{IQ2XS_GRID, KSIGNS_IQ2XS};

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq2Xs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// A `vpshufb` control: bytes `8k..8k + 8` of the result take byte `b[k]` of their 128-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn byte_groups(b: [u8; 4]) -> __m256i {
    let r = |k: usize| (b[k] as u64 * 0x0101_0101_0101_0101) as i64;
    _mm256_set_epi64x(r(3), r(2), r(1), r(0))
}

/// `bits` with byte `k` of each 8 set to `1 << k`: bit `k` of a sign byte is value `k`'s.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn value_bits() -> __m256i {
    _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64)
}

/// -1 in each byte whose bit in `bits` is set in the byte of `src` that `ctrl` selects
/// ([`byte_groups`]), else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn bit_mask(src: __m256i, ctrl: __m256i, bits: __m256i) -> __m256i {
    _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(src, ctrl), bits), bits)
}

/// `q8` negated in the bytes where `m` is -1 (0 elsewhere): exact, as Q8_K quants are never -128
/// (`scalar::q8_k::quantize_row_activations` keeps them in -127..=127).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn negate_where(q8: __m256i, m: __m256i) -> __m256i {
    _mm256_sub_epi8(_mm256_xor_si256(q8, m), m)
}

/// The scales `2 * ls + 1` of IQ2_XS and IQ2_S as i16: the low 128-bit lane the low nibbles of
/// `scales` (the first 16 values of sub-blocks 0..8), the high lane the high nibbles (the second
/// 16), which is where `vpmaddubsw` leaves the products of those halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn nibble_scales(scales: [u8; 8]) -> __m256i {
    let s = u64::from_le_bytes(scales);
    let n = _mm_and_si128(
        _mm_set_epi64x((s >> 4) as i64, s as i64),
        _mm_set1_epi8(0xf),
    );
    _mm256_cvtepu8_epi16(_mm_or_si128(_mm_add_epi8(n, n), _mm_set1_epi8(1)))
}

/// Sub-block `ib`'s two scales of [`nibble_scales`] in all eight i16 of their lanes, for
/// `vpmaddwd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn sub_block_scales(sc: __m256i, ib: usize) -> __m256i {
    let w = (2 * ib as i16) | ((2 * ib as i16 + 1) << 8);
    _mm256_shuffle_epi8(sc, _mm256_set1_epi16(w))
}

/// Bit 7 of `KSIGNS_IQ2XS[n]` for `n < 16` (the parity of `n`), in both 128-bit lanes: a
/// `vpshufb` table.
const PARITY: [u8; 32] = {
    let mut t = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        t[i] = KSIGNS_IQ2XS[i % 16] & 0x80;
        i += 1;
    }
    t
};

/// `KSIGNS_IQ2XS[q >> 9]` in the low byte of each 16-bit lane (high byte 0), for the sixteen group
/// words `q`: the seven stored sign bits with their parity as bit 7.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn full_signs(q: __m256i) -> __m256i {
    let s7 = _mm256_srli_epi16::<9>(q);
    // The low nibble of s7 ^ (s7 >> 4) has the parity of the seven bits; every byte is below 128, so
    // `vpshufb` looks it up (the high bytes, 0, look up PARITY[0] = 0).
    let fold = _mm256_xor_si256(s7, _mm256_srli_epi16::<13>(q));
    // SAFETY: `PARITY` is 32 readable bytes; `loadu` has no alignment requirement.
    let parity = unsafe { _mm256_loadu_si256(PARITY.as_ptr().cast()) };
    _mm256_or_si256(s7, _mm256_shuffle_epi8(parity, fold))
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq2Xs], a: &[BlockQ8K]) -> f32 {
    let bits = value_bits();
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq2Xs>() }>((x as *const BlockIq2Xs).cast());
        // SAFETY: `x.qs` is 64 readable bytes; `loadu` has no alignment requirement.
        let (q0, q1) = unsafe {
            let p = x.qs.as_ptr();
            (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(32).cast()),
            )
        };
        let (f0, f1) = (full_signs(q0), full_signs(q1));
        // Each 128-bit lane of sign words in both lanes (`vpshufb` stays in its lane): two
        // sub-blocks' per register.
        let signs = [
            _mm256_permute4x64_epi64::<0b01_00_01_00>(f0),
            _mm256_permute4x64_epi64::<0b11_10_11_10>(f0),
            _mm256_permute4x64_epi64::<0b01_00_01_00>(f1),
            _mm256_permute4x64_epi64::<0b11_10_11_10>(f1),
        ];
        let sc = nibble_scales(x.scales);
        let mut sumi = _mm256_setzero_si256();
        for ib32 in 0..8 {
            let g = |l: usize| IQ2XS_GRID[(le_u16(&x.qs, 8 * ib32 + 2 * l) & 511) as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            // Group l's sign byte: the low byte of word l (of 8 in the lane) from 4 * (ib32 % 2).
            let b = 8 * (ib32 % 2) as u8;
            let m = bit_mask(signs[ib32 / 2], byte_groups([b, b + 2, b + 4, b + 6]), bits);
            // Pairs of at most 2 * 43 * 127 (no saturation), times a scale of at most 31.
            let p = _mm256_maddubs_epi16(grid, negate_where(acts32(y, 32 * ib32), m));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sub_block_scales(sc, ib32)));
        }
        sumf += f16(x.d) * y.d * hsum_epi32(sumi) as f32;
    }
    0.125 * sumf
}
