//! `f32` weights and activations.

use std::arch::x86_64::*;

use super::hsum_ps;

/// Dot product of two equally long slices (over the shorter, as the reference).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: reached only through the AVX2 table, which is built only where `avx2_supported()`
    // (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(a, b) }
}

/// `y += a * x` (the same rounding as the reference: a product, then a sum, no FMA).
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    // SAFETY: as for `dot`.
    unsafe { axpy_avx2(a, x, y) }
}

/// Four independent 8-lane FMA accumulators over 32 values a step, then 8 a step, then a scalar tail.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut s = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (every load below): it reads 8 values at `i` with `i + 8 <= n <= a.len(), b.len()`.
    while i + 32 <= n {
        for (k, s) in s.iter_mut().enumerate() {
            let j = i + 8 * k;
            *s = unsafe {
                _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(j)), _mm256_loadu_ps(pb.add(j)), *s)
            };
        }
        i += 32;
    }
    while i + 8 <= n {
        s[0] = unsafe {
            _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s[0])
        };
        i += 8;
    }
    let mut sum = hsum_ps(_mm256_add_ps(
        _mm256_add_ps(s[0], s[1]),
        _mm256_add_ps(s[2], s[3]),
    ));
    for j in i..n {
        sum += a[j] * b[j];
    }
    sum
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let va = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 values at `i` with `i + 8 <= n <= x.len(), y.len()`; `y` is borrowed mutably.
        unsafe {
            let v = _mm256_add_ps(
                _mm256_loadu_ps(py.add(i)),
                _mm256_mul_ps(va, _mm256_loadu_ps(px.add(i))),
            );
            _mm256_storeu_ps(py.add(i), v);
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * x[j];
    }
}
