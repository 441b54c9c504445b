//! bfloat16 weights (the top 16 bits of an `f32`) against f32 activations.

use std::arch::x86_64::*;

use super::first_lanes;

/// Dot product of a bf16 row (little-endian bytes, any alignment) with f32 values.
pub(crate) fn dot(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: reached only through the AVX-512 table, which is built only where
    // `avx512_supported()` (AVX2, FMA, F16C, AVX-512 F/BW/VL) holds.
    unsafe { dot_avx512(row, x) }
}

/// Sixteen bf16 values as f32 (exact: each widened to 32 bits and shifted into the high half).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn widen(h: __m256i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

/// Four 16-lane FMA accumulators over 64 values a step, then 16 a step, then the last `< 16` values
/// with masked loads (masked-off lanes read nothing and are zero: bf16 +0 times +0).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL (and AVX2, FMA, F16C).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn dot_avx512(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(row.len() / 2);
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut s = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (every load below): it reads values `i..i + 16` with `i + 16 <= n`, so bytes
    // `2i..2i + 32` of `row` (`2n <= row.len()`) and values of `x` (`n <= x.len()`); or, masked,
    // values `i..n` only.
    while i + 64 <= n {
        for (k, s) in s.iter_mut().enumerate() {
            let j = i + 16 * k;
            *s = unsafe {
                let w = widen(_mm256_loadu_si256(pw.add(2 * j).cast()));
                _mm512_fmadd_ps(w, _mm512_loadu_ps(px.add(j)), *s)
            };
        }
        i += 64;
    }
    while i + 16 <= n {
        s[0] = unsafe {
            let w = widen(_mm256_loadu_si256(pw.add(2 * i).cast()));
            _mm512_fmadd_ps(w, _mm512_loadu_ps(px.add(i)), s[0])
        };
        i += 16;
    }
    if i < n {
        let k = first_lanes(n - i);
        s[1] = unsafe {
            let w = widen(_mm256_maskz_loadu_epi16(k, pw.add(2 * i).cast()));
            _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(k, px.add(i)), s[1])
        };
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(s[0], s[1]),
        _mm512_add_ps(s[2], s[3]),
    ))
}
