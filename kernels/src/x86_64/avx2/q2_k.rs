//! Q2_K weights against Q8_K-quantised activations: 2-bit levels with a 4-bit scale and a 4-bit min
//! per 16 values (Q6_K's sub-block scales, `q6_k.rs`; the min term from the activations' block sums).

use std::arch::x86_64::*;

use super::q4_k::acts32;
use super::q6_k::{pair_scales, scaled_bsums};
use super::{f16, hsum_ps, prefetch_span};
use crate::blocks::{BlockQ2K, BlockQ8K};

/// `sum_b d_w * d_x * sum_j sc_j * (q . x)_j - dmin_w * d_x * sum_j m_j * sum(x_j)`.
pub(crate) fn dot(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, a) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let m2 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm256_setzero_ps();
    for (b, y) in w.iter().zip(a) {
        prefetch_span::<{ std::mem::size_of::<BlockQ2K>() }>((b as *const BlockQ2K).cast());
        // SAFETY: `scales` is 16 readable bytes; `loadu` has no alignment requirement.
        let packed = unsafe { _mm_loadu_si128(b.scales.as_ptr().cast()) };
        let sc = _mm_and_si128(packed, m4);
        let mins = _mm_and_si128(_mm_srli_epi16::<4>(packed), m4);
        acc_m = _mm256_fmadd_ps(
            _mm256_set1_ps(y.d * f16(b.dmin)),
            _mm256_cvtepi32_ps(scaled_bsums(mins, y)),
            acc_m,
        );
        let mut sumi = _mm256_setzero_si256();
        // Value 128n + 32k + l: bits 2k, 2k + 1 of qs[32n + l].
        for n in 0..2 {
            let q = &b.qs[32 * n..32 * n + 32];
            // SAFETY: `q` is 32 readable bytes; `loadu` has no alignment requirement.
            let mut bits = unsafe { _mm256_loadu_si256(q.as_ptr().cast()) };
            for k in 0..4 {
                let q = _mm256_and_si256(bits, m2);
                bits = _mm256_srli_epi16::<2>(bits);
                let p = _mm256_maddubs_epi16(q, acts32(y, 128 * n + 32 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(sc, 4 * n + k)));
            }
        }
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(y.d * f16(b.d)),
            _mm256_cvtepi32_ps(sumi),
            acc,
        );
    }
    hsum_ps(acc) - hsum_ps(acc_m)
}
