//! Q3_K weights against Q8_K-quantised activations: Q6_K's arithmetic (`q6_k.rs`) with 3-bit levels
//! stored with a bias of 4 (the low 2 bits in `qs`, the high bit in `hmask`) and 6-bit scales stored
//! with a bias of 32.

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::q6_k::{pair_scales, scaled_bsums};
use super::{f16, hsum_ps, prefetch_span};
use crate::blocks::{BlockQ3K, BlockQ8K};

/// `sum_b d_w * d_x * sum_j (sc_j - 32) * ((q - 4) . x)_j`.
pub(crate) fn dot(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// The 16 signed scales `sc_j - 32` of a block (`scalar::q3_k::unpack_scales`), four at a time in
/// 32-bit words: the low 4 bits of scale `j` in nibble `j / 8` of byte `j % 8`, the high 2 bits in
/// bits `2 * (j / 4)` of byte `8 + j % 4`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scales(s: &[u8; 12]) -> __m128i {
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, hi) = (word(0), word(1), word(2));
    let sc = _mm_setr_epi32(
        ((u0 & LOW4) | ((hi & LOW2) << 4)) as i32,
        ((u1 & LOW4) | (((hi >> 2) & LOW2) << 4)) as i32,
        (((u0 >> 4) & LOW4) | (((hi >> 4) & LOW2) << 4)) as i32,
        (((u1 >> 4) & LOW4) | (((hi >> 6) & LOW2) << 4)) as i32,
    );
    _mm_sub_epi8(sc, _mm_set1_epi8(32))
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    let m2 = _mm256_set1_epi8(3);
    let bit2 = _mm256_set1_epi8(4);
    let mut acc = _mm256_setzero_ps();
    for (b, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockQ3K>() }>((b as *const BlockQ3K).cast());
        let sc = scales(&b.scales);
        // The bias: 4 * sum_j s_j * sum(x_j).
        let mut sumi = _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_slli_epi32::<2>(scaled_bsums(sc, y)),
        );
        // Value 128n + 32k + l: bits 2k, 2k + 1 of qs[32n + l], and bit 4n + k of hmask[l] (moved to
        // bit 2). Both are shifted down a step at a time (16-bit shifts: a neighbour's bits enter a
        // byte only from the top, above the bits read).
        // SAFETY: `hmask` is 32 readable bytes; `loadu` has no alignment requirement.
        let mut h = unsafe { _mm256_loadu_si256(b.hmask.as_ptr().cast()) };
        for n in 0..2 {
            let q = &b.qs[32 * n..32 * n + 32];
            // SAFETY: `q` is 32 readable bytes; `loadu` has no alignment requirement.
            let mut bits = unsafe { _mm256_loadu_si256(q.as_ptr().cast()) };
            for k in 0..4 {
                let q = _mm256_or_si256(
                    _mm256_and_si256(bits, m2),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(h), bit2),
                );
                bits = _mm256_srli_epi16::<2>(bits);
                h = _mm256_srli_epi16::<1>(h);
                // Levels <= 7: no saturation.
                let p = _mm256_maddubs_epi16(q, acts32(y, 128 * n + 32 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(sc, 4 * n + k)));
            }
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(f16(b.d) * y.d),
            _mm256_cvtepi32_ps(sumi),
            acc,
        );
    }
    hsum_ps(acc)
}
