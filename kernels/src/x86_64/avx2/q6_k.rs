//! Q6_K weights against Q8_K-quantised activations, and the 16-value sub-block scales Q2_K and Q3_K
//! share with it.
//!
//! Per super-block the integer sum `sum_j s_j * sum_{i in j} (q_i - 32) * x_i` is exact in eight i32
//! lanes: `vpmaddubsw` of the unsigned levels `q` by the activations, `vpmaddwd` by the sub-block
//! scales, and the offset `32 * sum_j s_j * sum(x_j)` once from the activations' block sums; then one
//! conversion and one FMA by `d_w * d_x`. The reference adds the lanes in another order: the results
//! differ by reassociation only.

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::{f16, hsum_ps, prefetch_span, tile_rows, TILE};
use crate::blocks::{BlockQ6K, BlockQ8K};

/// `sum_b d_w * d_x * sum_j s_j * ((q - 32) . x)_j`.
pub(crate) fn dot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_n::<1>(w, [a])[0] }
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]`, bit for bit `dot`.
pub(crate) fn matmul_rows(w: &[u8], x: &[BlockQ8K], n: usize, yt: &mut [f32]) {
    // SAFETY: as for `dot`.
    tile_rows(w, x, n, yt, |w, a| unsafe { dot_n::<TILE>(w, a) }, dot)
}

/// `vpshufb` masks: `PAIR_SHUFFLE[g]` puts byte `2g` in bytes 0..8 and byte `2g + 1` in bytes 8..16.
const PAIR_SHUFFLE: [[u8; 16]; 8] = {
    let mut m = [[0u8; 16]; 8];
    let mut g = 0;
    while g < 8 {
        let mut i = 0;
        while i < 16 {
            m[g][i] = (2 * g + i / 8) as u8;
            i += 1;
        }
        g += 1;
    }
    m
};

/// The scales of sub-blocks `2g` and `2g + 1` (signed bytes of `s`) as i16, eight lanes each: the
/// factors of the `vpmaddubsw` pair sums of values `32g..32g + 32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn pair_scales(s: __m128i, g: usize) -> __m256i {
    // SAFETY: `PAIR_SHUFFLE[g]` is 16 readable bytes; `loadu` has no alignment requirement.
    let m = unsafe { _mm_loadu_si128(PAIR_SHUFFLE[g].as_ptr().cast()) };
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, m))
}

/// `sum_j s_j * sum(x_j)` in eight i32 lanes, for the 16 signed byte scales `s`: the offset of
/// levels stored with a bias.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn scaled_bsums(s: __m128i, a: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` is 16 i16 (32 readable bytes); `loadu` has no alignment requirement.
    let bs = unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) };
    _mm256_madd_epi16(_mm256_cvtepi8_epi16(s), bs)
}

/// `dot` of `w` against `T` token vectors at once: each super-block's levels and scales unpacked once
/// for all of them, every token's float operations those of `dot` (which is `T = 1`), in its order.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_n<const T: usize>(w: &[BlockQ6K], a: [&[BlockQ8K]; T]) -> [f32; T] {
    let nb = a.iter().fold(w.len(), |n, a| n.min(a.len()));
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x30);
    let mut acc = [_mm256_setzero_ps(); T];
    for (i, b) in w[..nb].iter().enumerate() {
        prefetch_span::<{ std::mem::size_of::<BlockQ6K>() }>((b as *const BlockQ6K).cast());
        // SAFETY: `scales` is 16 readable bytes; `loadu` has no alignment requirement.
        let sc = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
        // The bias of the levels: 32 * sum_j s_j * sum(x_j).
        let mut sumi: [__m256i; T] = std::array::from_fn(|t| {
            _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_slli_epi32::<5>(scaled_bsums(sc, &a[t][i])),
            )
        });
        for n in 0..2 {
            let (ql, qh) = (&b.ql[64 * n..64 * n + 64], &b.qh[32 * n..32 * n + 32]);
            // SAFETY: 64 and 32 readable bytes; `loadu` has no alignment requirement.
            let (l0, l1, h) = unsafe {
                (
                    _mm256_loadu_si256(ql.as_ptr().cast()),
                    _mm256_loadu_si256(ql[32..].as_ptr().cast()),
                    _mm256_loadu_si256(qh.as_ptr().cast()),
                )
            };
            // Values 128n + 32k + l: low 4 bits from nibble (k / 2) of ql[32 * (k % 2) + l], high 2
            // bits from bits 2k, 2k + 1 of qh[l], moved to bits 4 and 5 (16-bit shifts; the masks
            // keep each byte's own bits).
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(l0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(h), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(l1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(h), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_and_si256(h, m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(h), m2),
                ),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let s = pair_scales(sc, 4 * n + k);
                for t in 0..T {
                    // Levels <= 63 against |x| <= 127: pair sums within 2^15, no saturation.
                    let p = _mm256_maddubs_epi16(q, acts32(&a[t][i], 128 * n + 32 * k));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, s));
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
