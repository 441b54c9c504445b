//! `f32` weights and activations.

use std::arch::aarch64::*;

/// Dot product of two equally long slices: fused multiply-adds into four accumulators of four lanes
/// (16 values a step), then four at a time, then a scalar tail.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    // SAFETY: both slices hold at least `n` values; NEON is baseline on aarch64.
    unsafe { dot_neon(&a[..n], &b[..n]) }
}

/// # Safety
/// `a.len() == b.len()`.
#[inline(always)]
unsafe fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    // SAFETY (all loads below): `i + 16 <= n` or `i + 4 <= n`, so every lane read is in bounds.
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let j = i + 4 * k;
            *acc = vfmaq_f32(*acc, vld1q_f32(pa.add(j)), vld1q_f32(pb.add(j)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
        i += 4;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v);
    for j in i..n {
        sum += a[j] * b[j];
    }
    sum
}

/// `y += a * x`: a multiply then an add per value, as the scalar loop (bit-identical results).
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    let n = x.len().min(y.len());
    // SAFETY: both slices hold at least `n` values; NEON is baseline on aarch64.
    unsafe { axpy_neon(a, &x[..n], &mut y[..n]) }
}

/// # Safety
/// `x.len() == y.len()`.
#[inline(always)]
unsafe fn axpy_neon(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len();
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    let va = vdupq_n_f32(a);
    let mut i = 0;
    // SAFETY (all loads and stores below): `i + 8 <= n` or `i + 4 <= n`, in bounds of both slices;
    // `y` is borrowed mutably, so nothing else reads it meanwhile.
    while i + 8 <= n {
        let y0 = vaddq_f32(vld1q_f32(py.add(i)), vmulq_f32(va, vld1q_f32(px.add(i))));
        let y1 = vaddq_f32(
            vld1q_f32(py.add(i + 4)),
            vmulq_f32(va, vld1q_f32(px.add(i + 4))),
        );
        vst1q_f32(py.add(i), y0);
        vst1q_f32(py.add(i + 4), y1);
        i += 8;
    }
    while i + 4 <= n {
        let y0 = vaddq_f32(vld1q_f32(py.add(i)), vmulq_f32(va, vld1q_f32(px.add(i))));
        vst1q_f32(py.add(i), y0);
        i += 4;
    }
    for j in i..n {
        y[j] += a * x[j];
    }
}
