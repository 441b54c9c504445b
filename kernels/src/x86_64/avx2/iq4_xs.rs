//! IQ4_XS weights against Q8_K-quantised activations: the non-linear grid looked up with `vpshufb`,
//! signed-by-signed byte products with `vpmaddubsw` on `|w|` and `x` carrying the sign of `w`, exact
//! integer sums per super-block, one FMA by `d_w * d_x` (the reference converts each 32-value
//! block's sum: the results differ by reassociation only).

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::{hsum_ps, prefetch_span, tile_rows, TILE};
use crate::blocks::{scale, BlockIq4Xs, BlockQ8K, KVALUES_IQ4NL};

/// `sum_b d_w * d_x * sum_j (ls_j - 32) * (grid[q] . x)_j`.
pub(crate) fn dot(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_n::<1>(w, [a])[0] }
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]`, bit for bit `dot`.
pub(crate) fn matmul_rows(w: &[u8], x: &[BlockQ8K], n: usize, yt: &mut [f32]) {
    // SAFETY: as for `dot`.
    tile_rows(w, x, n, yt, |w, a| unsafe { dot_n::<TILE>(w, a) }, dot)
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

/// `dot` of `w` against `T` token vectors at once: each super-block's grid values and scales looked
/// up once for all of them, every token's float operations those of `dot` (which is `T = 1`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_n<const T: usize>(w: &[BlockIq4Xs], a: [&[BlockQ8K]; T]) -> [f32; T] {
    let nb = a.iter().fold(w.len(), |n, a| n.min(a.len()));
    // SAFETY: the 16-byte grid; `loadu` has no alignment requirement.
    let grid = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    let mut acc = [_mm256_setzero_ps(); T];
    for (i, b) in w[..nb].iter().enumerate() {
        prefetch_span::<{ std::mem::size_of::<BlockIq4Xs>() }>((b as *const BlockIq4Xs).cast());
        let h = u16::from_le_bytes(b.scales_h);
        let mut sumi = [_mm256_setzero_si256(); T];
        for ib in 0..8 {
            let lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
            let hi = (h >> (2 * ib)) & 3;
            let ls = _mm256_set1_epi16((lo as u16 | hi << 4) as i16 - 32);
            let q = grid32(&b.qs[16 * ib..], grid);
            // |q| signs applied once; the activations take the signs per token.
            let aq = _mm256_sign_epi8(q, q);
            for t in 0..T {
                let x = _mm256_sign_epi8(acts32(&a[t][i], 32 * ib), q);
                // |q|, |x| <= 127: pair sums within 2 * 127^2 < 2^15, no saturation.
                let p = _mm256_maddubs_epi16(aq, x);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, ls));
            }
        }
        let d = scale(b.d);
        for t in 0..T {
            acc[t] = _mm256_fmadd_ps(
                _mm256_set1_ps(d * a[t][i].d),
                _mm256_cvtepi32_ps(sumi[t]),
                acc[t],
            );
        }
    }
    std::array::from_fn(|t| hsum_ps(acc[t]))
}
