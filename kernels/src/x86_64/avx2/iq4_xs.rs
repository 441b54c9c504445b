//! IQ4_XS weights against Q8_K-quantised activations: the non-linear grid looked up with `vpshufb`,
//! signed-by-signed byte products with `vpmaddubsw` on `|w|` and `x` carrying the sign of `w`, exact
//! integer sums per super-block, one FMA by `d_w * d_x` (the reference converts each 32-value
//! block's sum: the results differ by reassociation only).

use std::arch::x86_64::*;

use super::q4_k::{acts32, scale_of};
use super::{f16, hsum_ps, prefetch_span, tile_rows, TILE};
use crate::blocks::{BlockIq4Xs, BlockQ8K, KVALUES_IQ4NL};

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

/// The grid values of blocks `2p` and `2p + 1` of a super-block (`qs` their 32 bytes), each in value
/// order: values 0..16 of a block are its bytes' low nibbles, 16..32 the high ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn grid_pair(qs: &[u8], grid: __m256i) -> (__m256i, __m256i) {
    debug_assert!(qs.len() >= 32);
    let m4 = _mm256_set1_epi8(0x0f);
    // SAFETY: `qs` holds at least 32 readable bytes; `loadu` has no alignment requirement.
    let v = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
    // [block 2p low | block 2p + 1 low] and [.. high | .. high], then each block's halves together.
    let lo = _mm256_shuffle_epi8(grid, _mm256_and_si256(v, m4));
    let hi = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4));
    (
        _mm256_permute2x128_si256::<0x20>(lo, hi),
        _mm256_permute2x128_si256::<0x31>(lo, hi),
    )
}

/// The eight block scales `ls - 32` of a super-block as i16 lanes 0..8 of both 128-bit halves (for
/// `q4_k::scale_of`): 4-bit low parts in `scales_l`, 2-bit high parts in `scales_h`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_scales(b: &BlockIq4Xs) -> __m256i {
    // Each 4-bit low part to a byte of its own, then each 2-bit high part to bits 4..6 of its byte
    // (bit spreading: a third of the scalar operations of a loop over the eight blocks).
    let mut l = u32::from_le_bytes(b.scales_l) as u64;
    l = (l | l << 16) & 0x0000_ffff_0000_ffff;
    l = (l | l << 8) & 0x00ff_00ff_00ff_00ff;
    l = (l | l << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    let mut h = u16::from_le_bytes(b.scales_h) as u64;
    h = (h | h << 24) & 0x0000_00ff_0000_00ff;
    h = (h | h << 12) & 0x000f_000f_000f_000f;
    h = (h | h << 6) & 0x0303_0303_0303_0303;
    let ls = l | h << 4;
    let v = _mm_sub_epi16(
        _mm_cvtepu8_epi16(_mm_cvtsi64_si128(ls as i64)),
        _mm_set1_epi16(32),
    );
    _mm256_broadcastsi128_si256(v)
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
    let grid =
        _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) });
    let mut acc = [_mm256_setzero_ps(); T];
    for (i, b) in w[..nb].iter().enumerate() {
        prefetch_span::<{ std::mem::size_of::<BlockIq4Xs>() }>((b as *const BlockIq4Xs).cast());
        let scales = block_scales(b);
        let mut sumi = [_mm256_setzero_si256(); T];
        for p in 0..4 {
            let (q0, q1) = grid_pair(&b.qs[32 * p..], grid);
            for (k, q) in [(0, q0), (1, q1)] {
                let ib = 2 * p + k;
                let ls = scale_of(scales, ib);
                // |q| once; the activations take the signs of q per token.
                let aq = _mm256_abs_epi8(q);
                for t in 0..T {
                    let x = _mm256_sign_epi8(acts32(&a[t][i], 32 * ib), q);
                    // |q|, |x| <= 127: pair sums within 2 * 127^2 < 2^15, no saturation.
                    let p = _mm256_maddubs_epi16(aq, x);
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, ls));
                }
            }
        }
        let d = f16(b.d);
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
