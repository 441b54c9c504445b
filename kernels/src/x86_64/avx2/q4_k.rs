//! Q4_K weights against Q8_K-quantised activations, and the kernel Q5_K shares with it ([`Q4KLayout`]).
//!
//! Per super-block: the integer sum `sum_j sc_j * sum_{i in j} q_i * x_i` exact in eight i32 lanes
//! (`vpmaddubsw` of unsigned levels by signed activations, then `vpmaddwd` by the sub-block scale),
//! one conversion to f32 and one FMA by `d_w * d_x`; the minimum term `dmin_w * d_x * sum_j m_j *
//! sum_{i in j} x_i` from the activations' block sums. The reference adds in another order
//! (`scalar::q4_k::dot_k_super`): the results differ by reassociation only.

use std::arch::x86_64::*;

use super::{f16, hsum_ps, prefetch_block, tile_rows, TILE};
use crate::blocks::{BlockQ4K, BlockQ8K, K_SCALE_SIZE, QK_K};

/// `sum_b d_w * d_x * sum_j sc_j * (q . x)_j - dmin_w * d_x * sum_j m_j * sum(x_j)`.
pub(crate) fn dot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    dot_k(w, a)
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]`, bit for bit `dot`.
pub(crate) fn matmul_rows(w: &[u8], x: &[BlockQ8K], n: usize, yt: &mut [f32]) {
    matmul_rows_k::<BlockQ4K>(w, x, n, yt)
}

/// A super-block with Q4_K's layout, what [`dot_n`] reads of it: f16 `d` and `dmin`, the packed
/// 6-bit scales and mins, and the low four bits of the 256 levels in `qs` (byte `l` of 32-byte
/// step `j` holds value `64j + l` in its low nibble and `64j + 32 + l` in its high one). Q4_K's
/// levels are those nibbles; Q5_K adds a fifth bit from `qh`.
pub(in crate::x86_64) trait Q4KLayout: bytemuck::Pod {
    /// What unpacking the levels carries from one 64-value step to the next (Q5_K: its `qh`).
    type High: Copy;
    /// `(d, dmin, scales, qs)`.
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE], &[u8; QK_K / 2]);
    /// The state [`Self::levels`] starts a super-block with.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    unsafe fn high(&self) -> Self::High;
    /// The unsigned levels of the two 32-value sub-blocks of one step (`[64j..64j + 32, 64j +
    /// 32..64j + 64]`, each below 32) from its 32 bytes of `qs`; `h` moves on to the next step.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    unsafe fn levels(bits: __m256i, h: &mut Self::High) -> [__m256i; 2];
}

impl Q4KLayout for BlockQ4K {
    type High = ();
    #[inline]
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE], &[u8; QK_K / 2]) {
        (self.d, self.dmin, &self.scales, &self.qs)
    }
    #[inline]
    unsafe fn high(&self) {}
    /// The low and the high nibbles.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn levels(bits: __m256i, _: &mut ()) -> [__m256i; 2] {
        let m4 = _mm256_set1_epi8(0x0f);
        [
            _mm256_and_si256(bits, m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
        ]
    }
}

/// [`dot`] of any [`Q4KLayout`] format.
pub(in crate::x86_64) fn dot_k<B: Q4KLayout>(w: &[B], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_n::<B, 1>(w, [a])[0] }
}

/// [`matmul_rows`] of any [`Q4KLayout`] format.
pub(in crate::x86_64) fn matmul_rows_k<B: Q4KLayout>(
    w: &[u8],
    x: &[BlockQ8K],
    n: usize,
    yt: &mut [f32],
) {
    // SAFETY: as for `dot_k`.
    tile_rows(
        w,
        x,
        n,
        yt,
        |w, a| unsafe { dot_n::<B, TILE>(w, a) },
        dot_k::<B>,
    )
}

/// The eight 6-bit scales (i16 lanes 0..8) and eight mins (lanes 8..16) of a Q4_K / Q5_K super-block,
/// unpacked as `get_scale_min_k4` does, four at a time in 32-bit words.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn scales_mins(s: &[u8; K_SCALE_SIZE]) -> __m256i {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (word(0), word(1), word(2));
    // Sub-blocks 0..4 in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8 from the
    // nibbles of bytes 8..12 and the top 2 bits of bytes 0..8.
    let sc_lo = u0 & LOW6;
    let sc_hi = (u2 & LOW4) | (((u0 >> 6) & TOP2) << 4);
    let m_lo = u1 & LOW6;
    let m_hi = ((u2 >> 4) & LOW4) | (((u1 >> 6) & TOP2) << 4);
    _mm256_cvtepu8_epi16(_mm_setr_epi32(
        sc_lo as i32,
        sc_hi as i32,
        m_lo as i32,
        m_hi as i32,
    ))
}

/// `vpshufb` masks: `SCALE_SHUFFLE[j]` puts 16-bit lane `j` of a 128-bit half in all its lanes.
pub(in crate::x86_64) const SCALE_SHUFFLE: [[u8; 32]; 8] = {
    let mut m = [[0u8; 32]; 8];
    let mut j = 0;
    while j < 8 {
        let mut i = 0;
        while i < 32 {
            m[j][i] = (2 * j + i % 2) as u8;
            i += 1;
        }
        j += 1;
    }
    m
};

/// The 16-bit lanes 0..8 of `sm` in both 128-bit halves, for [`scale_of`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn broadcast_scales(sm: __m256i) -> __m256i {
    _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm))
}

/// Scale `j` of [`broadcast_scales`]'s vector in all sixteen i16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn scale_of(scales: __m256i, j: usize) -> __m256i {
    // SAFETY: `SCALE_SHUFFLE[j]` is 32 readable bytes; `loadu` has no alignment requirement.
    let m = unsafe { _mm256_loadu_si256(SCALE_SHUFFLE[j].as_ptr().cast()) };
    _mm256_shuffle_epi8(scales, m)
}

/// `sum_j m_j * sum(x_j)` in four i32 lanes: the sums of 16 activations paired into sums of 32
/// (within `32 * 127`, an i16), times the mins (lanes 8..16 of [`scales_mins`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn min_products(sm: __m256i, a: &BlockQ8K) -> __m128i {
    // SAFETY: `bsums` is 16 i16 (32 readable bytes); `loadu` has no alignment requirement.
    let bs = unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) };
    let sums32 = _mm_hadd_epi16(
        _mm256_castsi256_si128(bs),
        _mm256_extracti128_si256::<1>(bs),
    );
    _mm_madd_epi16(_mm256_extracti128_si256::<1>(sm), sums32)
}

/// 32 activations of a Q8_K block from value `i`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn acts32(a: &BlockQ8K, i: usize) -> __m256i {
    let q = &a.qs[i..i + 32];
    // SAFETY: `q` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// Sum of the four lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn hsum128_ps(v: __m128) -> f32 {
    let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `dot` of `w` against `T` token vectors at once: each super-block's levels and scales unpacked once
/// for all of them, every token's float operations those of `dot` (which is `T = 1`), in its order.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_n<B: Q4KLayout, const T: usize>(w: &[B], a: [&[BlockQ8K]; T]) -> [f32; T] {
    let nb = a.iter().fold(w.len(), |n, a| n.min(a.len()));
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm_setzero_ps(); T];
    for (i, b) in w[..nb].iter().enumerate() {
        prefetch_block(b as *const B);
        let (d, dmin, sc, qs) = b.parts();
        let sm = scales_mins(sc);
        let dmin = f16(dmin);
        for t in 0..T {
            let mins = _mm_cvtepi32_ps(min_products(sm, &a[t][i]));
            acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin * a[t][i].d), mins, acc_m[t]);
        }
        let scales = broadcast_scales(sm);
        // SAFETY: the caller guarantees the CPU features.
        let mut h = unsafe { b.high() };
        let mut sumi = [_mm256_setzero_si256(); T];
        for j in 0..4 {
            let q = &qs[32 * j..32 * j + 32];
            // SAFETY: `q` is 32 readable bytes; `loadu` has no alignment requirement.
            let bits = unsafe { _mm256_loadu_si256(q.as_ptr().cast()) };
            // SAFETY: the caller guarantees the CPU features.
            let [lo, hi] = unsafe { B::levels(bits, &mut h) };
            let (sl, sh) = (scale_of(scales, 2 * j), scale_of(scales, 2 * j + 1));
            for t in 0..T {
                // Levels <= 31 against |x| <= 127: pair sums within 2^15, no saturation.
                let pl = _mm256_maddubs_epi16(lo, acts32(&a[t][i], 64 * j));
                let ph = _mm256_maddubs_epi16(hi, acts32(&a[t][i], 64 * j + 32));
                let p = _mm256_add_epi32(_mm256_madd_epi16(pl, sl), _mm256_madd_epi16(ph, sh));
                sumi[t] = _mm256_add_epi32(sumi[t], p);
            }
        }
        let d = f16(d);
        for t in 0..T {
            acc[t] = _mm256_fmadd_ps(
                _mm256_set1_ps(d * a[t][i].d),
                _mm256_cvtepi32_ps(sumi[t]),
                acc[t],
            );
        }
    }
    std::array::from_fn(|t| hsum_ps(acc[t]) - hsum128_ps(acc_m[t]))
}
