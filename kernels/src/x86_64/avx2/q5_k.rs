//! Q5_K weights against Q8_K-quantised activations: Q4_K's kernel with the fifth bit of each level
//! from `qh` (see `q4_k.rs` for the arithmetic and its order).

use std::arch::x86_64::*;

use super::q4_k::{dot_k, matmul_rows_k, Q4KLayout};
use crate::blocks::{BlockQ5K, BlockQ8K, K_SCALE_SIZE, QK_K};

/// `sum_b d_w * d_x * sum_j sc_j * (q . x)_j - dmin_w * d_x * sum_j m_j * sum(x_j)`.
pub(crate) fn dot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    dot_k(w, a)
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]`, bit for bit `dot`.
pub(crate) fn matmul_rows(w: &[u8], x: &[BlockQ8K], n: usize, yt: &mut [f32]) {
    matmul_rows_k::<BlockQ5K>(w, x, n, yt)
}

impl Q4KLayout for BlockQ5K {
    /// `qh`, shifted down two bits a step: bit 2j of `qh[l]` is the fifth bit of value 64j + l, bit
    /// 2j + 1 that of value 64j + 32 + l.
    type High = __m256i;
    #[inline]
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE], &[u8; QK_K / 2]) {
        (self.d, self.dmin, &self.scales, &self.qs)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn high(&self) -> __m256i {
        // SAFETY: `qh` is 32 readable bytes; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(self.qh.as_ptr().cast()) }
    }
    /// The nibbles with bits 0 and 1 of `h` moved up to bit 4 (16-bit shifts; the mask keeps each
    /// byte's own bit).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn levels(bits: __m256i, h: &mut __m256i) -> [__m256i; 2] {
        let m4 = _mm256_set1_epi8(0x0f);
        let bit4 = _mm256_set1_epi8(0x10);
        let lo = _mm256_or_si256(
            _mm256_and_si256(bits, m4),
            _mm256_and_si256(_mm256_slli_epi16::<4>(*h), bit4),
        );
        let hi = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
            _mm256_and_si256(_mm256_slli_epi16::<3>(*h), bit4),
        );
        *h = _mm256_srli_epi16::<2>(*h);
        [lo, hi]
    }
}
