//! IEEE half-precision (`f16`) weights against f32 activations.

use std::arch::x86_64::*;

use super::hsum_ps;

/// Dot product of an f16 row (little-endian bytes, any alignment) with f32 values.
pub(crate) fn dot(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: reached only through the AVX2 table, which is built only where `avx2_supported()`
    // (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(row, x) }
}

/// Eight f16 values (16 bytes at `p`, any alignment) as f32 (exact).
///
/// # Safety
/// `p` must point to 16 readable bytes; the CPU must support AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(p: *const u8) -> __m256 {
    // SAFETY: the caller's contract.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// Four 8-lane FMA accumulators over 32 values a step, then 8 a step; the last `< 8` values are copied
/// into zero-padded buffers and take one more step (`0 * 0` adds nothing).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(row.len() / 2);
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut s = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (every load below): it reads values `i..i + 8` with `i + 8 <= n`, so bytes
    // `2i..2i + 16` of `row` (`2n <= row.len()`) and values `i..i + 8` of `x` (`n <= x.len()`).
    while i + 32 <= n {
        for (k, s) in s.iter_mut().enumerate() {
            let j = i + 8 * k;
            *s = unsafe { _mm256_fmadd_ps(load8(pw.add(2 * j)), _mm256_loadu_ps(px.add(j)), *s) };
        }
        i += 32;
    }
    while i + 8 <= n {
        s[0] = unsafe { _mm256_fmadd_ps(load8(pw.add(2 * i)), _mm256_loadu_ps(px.add(i)), s[0]) };
        i += 8;
    }
    if i < n {
        let mut wb = [0u8; 16];
        let mut xb = [0f32; 8];
        wb[..2 * (n - i)].copy_from_slice(&row[2 * i..2 * n]);
        xb[..n - i].copy_from_slice(&x[i..n]);
        // SAFETY: the buffers are 16 bytes and 8 values.
        s[1] = unsafe { _mm256_fmadd_ps(load8(wb.as_ptr()), _mm256_loadu_ps(xb.as_ptr()), s[1]) };
    }
    hsum_ps(_mm256_add_ps(
        _mm256_add_ps(s[0], s[1]),
        _mm256_add_ps(s[2], s[3]),
    ))
}
