//! IQ1_M weights against Q8_K-quantised activations: the 32 grid indices of a super-block (8 bits in
//! `qs`, 3 in a nibble of `qh`), its sixteen 3-bit scales and its 32 shift signs (one per 8 values,
//! as -1 or 1 bytes) computed in vectors; four 8-byte grid points of -1, 0, 1 per 32 values set into
//! one register, and the activations multiplied by them and by the spread shift signs with `vpsignb`.
//! Both products are summed with the scales of the 16-value halves by `vpmaddubsw` into i16 lanes
//! (eight sub-blocks fit). Both integer sums of each super-block are exact and converted as the
//! reference converts them, so the result equals the scalar kernel's bit for bit.

use std::arch::x86_64::*;

use super::iq1_s::hsum2_epi32;
use super::iq2_xs::byte_groups;
use super::q4_k::acts32;
use super::{f16, prefetch_span};
use crate::blocks::{BlockIq1M, BlockQ8K, IQ1S_DELTA};
use crate::scalar::iq_grids::IQ1S_GRID;

/// `dot` of the scalar kernel, bit for bit.
pub(crate) fn dot(w: &[BlockIq1M], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// The grid indices of groups `16 * h .. 16 * h + 16` of `b` as i16: `qs[g] | ((qh[g / 2] >> (4 *
/// (g % 2))) & 7) << 8`, `qh` the sixteen bytes in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn indices16(b: &BlockIq1M, qh: __m256i, h: usize) -> __m256i {
    // SAFETY: `qs[16 * h..16 * h + 16]` (h < 2) is 16 readable bytes; `loadu` has no alignment
    // requirement.
    let lo = unsafe { _mm_loadu_si128(b.qs.as_ptr().add(16 * h).cast()) };
    // Lane g (of 16) takes byte 8 * h + g / 2, zero-extended (0x80 writes a zero).
    let r = |k: u64| {
        let b = 8 * h as u64 + 2 * k;
        ((b * 0x0000_0000_0001_0001 + (b + 1) * 0x0001_0001_0000_0000) | 0x8000_8000_8000_8000)
            as i64
    };
    let bytes = _mm256_shuffle_epi8(qh, _mm256_set_epi64x(r(3), r(2), r(1), r(0)));
    // Bits 0..3 of the low nibble (even g) or of the high one (odd g) to bits 8..11.
    let hi = _mm256_mullo_epi16(bytes, _mm256_set1_epi64x(0x0010_0100_0010_0100));
    let hi = _mm256_and_si256(hi, _mm256_set1_epi16(0x700));
    _mm256_or_si256(_mm256_cvtepu8_epi16(lo), hi)
}

/// The scales `2 * ls + 1` of the sixteen 16-value halves (in order) as bytes, all sixteen in both
/// 128-bit lanes; `s` the four little-endian scale words (half `h`: bits `3 * (h % 4)..` of word
/// `h / 4`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn half_scales(s: u64) -> __m256i {
    // Lane h (of 16) takes word h / 4.
    let r = |k: u64| (((2 * k) | ((2 * k + 1) << 8)) * 0x0001_0001_0001_0001) as i64;
    let words = _mm256_shuffle_epi8(
        _mm256_set1_epi64x(s as i64),
        _mm256_set_epi64x(r(3), r(2), r(1), r(0)),
    );
    // Half h % 4's three bits to the top (a product by 1 << (13 - 3 * (h % 4))), then down.
    let top = _mm256_mullo_epi16(words, _mm256_set1_epi64x(0x0010_0080_0400_2000));
    let ls = _mm256_srli_epi16::<13>(top);
    let ls = _mm256_or_si256(_mm256_add_epi16(ls, ls), _mm256_set1_epi16(1));
    // Bytes [0..8, 0..8 | 8..16, 8..16], then quadwords 0, 2, 0, 2.
    _mm256_permute4x64_epi64::<0b10_00_10_00>(_mm256_packus_epi16(ls, ls))
}

/// The shift's sign of each group (-1 or 1; bit 3 of its nibble of `qh`, the sixteen bytes in both
/// 128-bit lanes) as bytes: groups 0..16 in both lanes of the first register, 16..32 of the second.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shift_signs(qh: __m256i) -> [__m256i; 2] {
    // Bit 3 of each byte to bit 7 (what crosses into the next byte lands below bit 7), then the
    // bytes of the low and high nibbles interleaved: group 2k, 2k + 1 from qh[k].
    let low = _mm256_slli_epi16::<4>(qh);
    let one = _mm256_set1_epi8(1);
    let sign = |v: __m256i| _mm256_or_si256(_mm256_cmpgt_epi8(_mm256_setzero_si256(), v), one);
    [
        sign(_mm256_unpacklo_epi8(low, qh)),
        sign(_mm256_unpackhi_epi8(low, qh)),
    ]
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq1M], a: &[BlockQ8K]) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq1M>() }>((x as *const BlockIq1M).cast());
        let s = u64::from_le_bytes(x.scales);
        // The f16 super-block scale from the words' top nibbles (ggml's `iq1m_scale_t`).
        let word = |k: u32| (s >> (16 * k)) as u16;
        let d_bits = (word(0) >> 12)
            | ((word(1) >> 8) & 0x00f0)
            | ((word(2) >> 4) & 0x0f00)
            | (word(3) & 0xf000);
        // SAFETY: `x.qh` is 16 readable bytes; `loadu` has no alignment requirement.
        let qh = unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(x.qh.as_ptr().cast())) };
        let mut idx = [0u16; 32];
        // SAFETY: `idx` is 64 writable bytes; `storeu` has no alignment requirement.
        unsafe {
            _mm256_storeu_si256(idx.as_mut_ptr().cast(), indices16(x, qh, 0));
            _mm256_storeu_si256(idx.as_mut_ptr().add(16).cast(), indices16(x, qh, 1));
        }
        let ls = half_scales(s);
        let shift = shift_signs(qh);
        // i16 lanes: each adds one pair of at most 15 * 2 * 127 per sub-block, 30480 for eight.
        let (mut acc1, mut acc2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for ib in 0..8 {
            // The mask keeps the index in the grid (it is at most 2047) without a bounds check.
            let g = |l: usize| IQ1S_GRID[(idx[4 * ib + l] & 2047) as usize] as i64;
            let grid = _mm256_set_epi64x(g(3), g(2), g(1), g(0));
            let q8 = acts32(y, 32 * ib);
            // Bytes 0..16 from half 2 * ib, 16..32 from 2 * ib + 1.
            let b = 2 * ib as u8;
            let l = _mm256_shuffle_epi8(ls, byte_groups([b, b, b + 1, b + 1]));
            // Groups 4 * ib .. 4 * ib + 4, from the register of their half of the super-block.
            let b = 4 * (ib % 4) as u8;
            let sign = _mm256_shuffle_epi8(shift[ib / 4], byte_groups([b, b + 1, b + 2, b + 3]));
            // q8 * grid and q8 * the shift's sign, exact as Q8_K quants are never -128.
            acc1 = _mm256_add_epi16(acc1, _mm256_maddubs_epi16(l, _mm256_sign_epi8(q8, grid)));
            acc2 = _mm256_add_epi16(acc2, _mm256_maddubs_epi16(l, _mm256_sign_epi8(q8, sign)));
        }
        let (sumi1, sumi2) =
            hsum2_epi32(_mm256_madd_epi16(acc1, ones), _mm256_madd_epi16(acc2, ones));
        sumf += f16(d_bits.to_le_bytes()) * y.d * (sumi1 as f32 + IQ1S_DELTA * sumi2 as f32);
    }
    sumf
}
