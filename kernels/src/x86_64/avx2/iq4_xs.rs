//! IQ4_XS weights against Q8_K-quantised activations: the non-linear grid looked up with `vpshufb`,
//! signed-by-signed byte products with `vpmaddubsw` on `|w|` and `x` carrying the sign of `w`, exact
//! integer sums per super-block, one FMA by `d_w * d_x` (the reference converts each 32-value
//! block's sum: the results differ by reassociation only).

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::{hsum_ps, prefetch_span};
use crate::blocks::{scale, BlockIq4Xs, BlockQ8K, KVALUES_IQ4NL};

/// `sum_b d_w * d_x * sum_j (ls_j - 32) * (grid[q] . x)_j`.
pub(crate) fn dot(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// The 32 grid values of block `ib` (`qs` its 16 bytes), in value order: the low nibbles' (values
/// 0..16) in the low 128 bits, the high nibbles' in the high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn grid32(qs: &[u8], grid: __m128i) -> __m256i {
    debug_assert!(qs.len() >= 16);
    let m4 = _mm_set1_epi8(0x0f);
    // SAFETY: `qs` holds at least 16 readable bytes; `loadu` has no alignment requirement.
    let v = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    _mm256_set_m128i(
        _mm_shuffle_epi8(grid, _mm_and_si128(_mm_srli_epi16::<4>(v), m4)),
        _mm_shuffle_epi8(grid, _mm_and_si128(v, m4)),
    )
}

/// Pair sums (i16) of the signed products `w * x`: `vpmaddubsw(|w|, sign(w) * x)`, exact for
/// `|w|, |x| <= 127` (Q8_K never holds -128; the grid's extreme is -127): within `2 * 127^2 < 2^15`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn mul_pairs_i8(w: __m256i, x: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the 16-byte grid; `loadu` has no alignment requirement.
    let grid = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    let mut acc = _mm256_setzero_ps();
    for (b, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockIq4Xs>() }>((b as *const BlockIq4Xs).cast());
        let h = u16::from_le_bytes(b.scales_h);
        let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for ib in (0..8).step_by(2) {
            let ls = |ib: usize| {
                let lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
                let hi = (h >> (2 * ib)) & 3;
                ((lo as u16 | hi << 4) as i16) - 32
            };
            let p0 = mul_pairs_i8(grid32(&b.qs[16 * ib..], grid), acts32(y, 32 * ib));
            let p1 = mul_pairs_i8(grid32(&b.qs[16 * ib + 16..], grid), acts32(y, 32 * ib + 32));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, _mm256_set1_epi16(ls(ib))));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, _mm256_set1_epi16(ls(ib + 1))));
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(scale(b.d) * y.d),
            _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)),
            acc,
        );
    }
    hsum_ps(acc)
}
