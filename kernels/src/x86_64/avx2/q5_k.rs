//! Q5_K weights against Q8_K-quantised activations: Q4_K's kernel with the fifth bit of each level
//! from `qh` (see `q4_k.rs` for the arithmetic and its order).

use std::arch::x86_64::*;

use super::q4_k::{acts32, broadcast_scales, hsum128_ps, min_products, scale_of, scales_mins};
use super::{f16, hsum_ps, prefetch_span, tile_rows, TILE};
use crate::blocks::{BlockQ5K, BlockQ8K};

/// `sum_b d_w * d_x * sum_j sc_j * (q . x)_j - dmin_w * d_x * sum_j m_j * sum(x_j)`.
pub(crate) fn dot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_n::<1>(w, [a])[0] }
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]`, bit for bit `dot`.
pub(crate) fn matmul_rows(w: &[u8], x: &[BlockQ8K], n: usize, yt: &mut [f32]) {
    // SAFETY: as for `dot`.
    tile_rows(w, x, n, yt, |w, a| unsafe { dot_n::<TILE>(w, a) }, dot)
}

/// `dot` of `w` against `T` token vectors at once (as `q4_k::dot_n`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_n<const T: usize>(w: &[BlockQ5K], a: [&[BlockQ8K]; T]) -> [f32; T] {
    let nb = a.iter().fold(w.len(), |n, a| n.min(a.len()));
    let m4 = _mm256_set1_epi8(0x0f);
    let bit4 = _mm256_set1_epi8(0x10);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm_setzero_ps(); T];
    for (i, b) in w[..nb].iter().enumerate() {
        prefetch_span::<{ std::mem::size_of::<BlockQ5K>() }>((b as *const BlockQ5K).cast());
        let sm = scales_mins(&b.scales);
        let dmin = f16(b.dmin);
        for t in 0..T {
            let mins = _mm_cvtepi32_ps(min_products(sm, &a[t][i]));
            acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin * a[t][i].d), mins, acc_m[t]);
        }
        let scales = broadcast_scales(sm);
        // Bit 2j of qh[l] is the fifth bit of value 64j + l, bit 2j + 1 that of value 64j + 32 + l:
        // `h` is shifted down two bits a step, its bits 0 and 1 moved up to bit 4 (16-bit shifts; the
        // mask keeps each byte's own bit).
        // SAFETY: `qh` is 32 readable bytes; `loadu` has no alignment requirement.
        let mut h = unsafe { _mm256_loadu_si256(b.qh.as_ptr().cast()) };
        let mut sumi = [_mm256_setzero_si256(); T];
        for j in 0..4 {
            let q = &b.qs[32 * j..32 * j + 32];
            // SAFETY: `q` is 32 readable bytes; `loadu` has no alignment requirement.
            let bits = unsafe { _mm256_loadu_si256(q.as_ptr().cast()) };
            let lo = _mm256_or_si256(
                _mm256_and_si256(bits, m4),
                _mm256_and_si256(_mm256_slli_epi16::<4>(h), bit4),
            );
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
                _mm256_and_si256(_mm256_slli_epi16::<3>(h), bit4),
            );
            h = _mm256_srli_epi16::<2>(h);
            let (sl, sh) = (scale_of(scales, 2 * j), scale_of(scales, 2 * j + 1));
            for t in 0..T {
                // Levels <= 31 against |x| <= 127: pair sums within 2^15, no saturation.
                let pl = _mm256_maddubs_epi16(lo, acts32(&a[t][i], 64 * j));
                let ph = _mm256_maddubs_epi16(hi, acts32(&a[t][i], 64 * j + 32));
                let p = _mm256_add_epi32(_mm256_madd_epi16(pl, sl), _mm256_madd_epi16(ph, sh));
                sumi[t] = _mm256_add_epi32(sumi[t], p);
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
    std::array::from_fn(|t| hsum_ps(acc[t]) - hsum128_ps(acc_m[t]))
}
