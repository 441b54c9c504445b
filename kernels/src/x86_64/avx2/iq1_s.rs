//! IQ1_S weights against Q8_K-quantised activations: the 32 grid indices of a super-block (8 bits in
//! `qs`, 3 in the `qh` words) computed in vectors, four 8-byte grid points of -1, 0, 1 per 32 values
//! set into one register and multiplied into the activations with `vpsignb`, then summed with the
//! sub-block scale by `vpmaddubsw` into i16 lanes (eight sub-blocks fit); the shift's term from the
//! activations' `bsums` with one `vpmaddwd`. Both integer sums of each super-block are exact and
//! converted as the reference converts them, so the result equals the scalar kernel's bit for bit.

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::{f16, prefetch_span};
use crate::blocks::{BlockIq1S, BlockQ8K, IQ1S_DELTA};
use crate::scalar::iq_grids::IQ1S_GRID;

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq1S], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// The sums of the eight i32 lanes of `a` and of `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn hsum2_epi32(a: __m256i, b: __m256i) -> (i32, i32) {
    // Per lane [a0 + a1, a2 + a3, b0 + b1, b2 + b3], then the lanes added.
    let h = _mm256_hadd_epi32(a, b);
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    let t = _mm_hadd_epi32(s, s);
    (_mm_cvtsi128_si32(t), _mm_extract_epi32::<1>(t))
}

/// The grid indices of groups `16 * h .. 16 * h + 16` of `b` as i16: `qs[g] | ((qh[g / 4] >> (3 *
/// (g % 4))) & 7) << 8`, `qh` the eight little-endian words in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn indices16(b: &BlockIq1S, qh: __m256i, h: usize) -> __m256i {
    // SAFETY: `qs[16 * h..16 * h + 16]` (h < 2) is 16 readable bytes; `loadu` has no alignment
    // requirement.
    let lo = unsafe { _mm_loadu_si128(b.qs.as_ptr().add(16 * h).cast()) };
    // Lane g (of 16) takes word 4 * h + g / 4 (bytes 2w and 2w + 1).
    let r = |k: u64| {
        let w = 4 * h as u64 + k;
        (((2 * w) | ((2 * w + 1) << 8)) * 0x0001_0001_0001_0001) as i64
    };
    let words = _mm256_shuffle_epi8(qh, _mm256_set_epi64x(r(3), r(2), r(1), r(0)));
    // Group g % 4's three bits to the top (a product by 1 << (13 - 3 * (g % 4))), then to bits 8..11.
    let top = _mm256_mullo_epi16(words, _mm256_set1_epi64x(0x0010_0080_0400_2000));
    let hi = _mm256_slli_epi16::<8>(_mm256_srli_epi16::<13>(top));
    _mm256_or_si256(_mm256_cvtepu8_epi16(lo), hi)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq1S], a: &[BlockQ8K]) -> f32 {
    // Each sub-block's ls * delta twice (for its two bsums): words 0, 0, 1, 1, ... 3, 3 in the low
    // lane, 4, 4, ... 7, 7 in the high.
    let pairs = _mm256_setr_epi8(
        0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13,
        14, 15, 14, 15,
    );
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq1S>() }>((x as *const BlockIq1S).cast());
        // SAFETY: `x.qh` and `y.bsums` are 16 and 32 readable bytes; `loadu` has no alignment
        // requirement.
        let (qh, bsums) = unsafe {
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(x.qh.as_ptr().cast())),
                _mm256_loadu_si256(y.bsums.as_ptr().cast()),
            )
        };
        let mut idx = [0u16; 32];
        // SAFETY: `idx` is 64 writable bytes; `storeu` has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(idx.as_mut_ptr().cast(), indices16(x, qh, 0));
            _mm256_storeu_si256(idx.as_mut_ptr().add(16).cast(), indices16(x, qh, 1));
        }
        // 2 * ((qh >> 12) & 7) + 1 per word, at most 15.
        let ls = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<11>(qh), _mm256_set1_epi16(0xe)),
            _mm256_set1_epi16(1),
        );
        // i16 lanes: each adds one pair of at most 15 * 2 * 127 per sub-block, 30480 for eight.
        let mut acc = _mm256_setzero_si256();
        for ib in 0..8 {
            // The mask keeps the index in the grid (it is at most 2047) without a bounds check.
            let g = |l: usize| IQ1S_GRID[(idx[4 * ib + l] & 2047) as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            // q8 * grid, exact as Q8_K quants are never -128.
            let p = _mm256_sign_epi8(acts32(y, 32 * ib), grid);
            let l = _mm256_shuffle_epi8(ls, _mm256_set1_epi8(2 * ib as i8));
            acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(l, p));
        }
        let sumi = _mm256_madd_epi16(acc, _mm256_set1_epi16(1));
        // ls, negated where bit 15 (the shift's sign) is set.
        let neg = _mm256_srai_epi16::<15>(qh);
        let lsd = _mm256_sub_epi16(_mm256_xor_si256(ls, neg), neg);
        let sumi1 = _mm256_madd_epi16(bsums, _mm256_shuffle_epi8(lsd, pairs));
        let (sumi, sumi1) = hsum2_epi32(sumi, sumi1);
        sumf += f16(x.d) * y.d * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
    }
    sumf
}
