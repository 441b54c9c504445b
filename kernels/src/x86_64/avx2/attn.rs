//! Attention over a KV cache (as `scalar::attn`): four keys a step against one query head, and the
//! values mixed with the head's output held in registers. A decode step of a small model calls these
//! once per head instead of a dot product and an `axpy` per cached position (56-value rows: the
//! calls cost more than the arithmetic).

use std::arch::x86_64::*;

use super::{hsum4_ps, hsum_ps};
use crate::scalar::attn::check_rows;

pub(crate) fn attn_scores(q: &[f32], keys: &[f32], stride: usize, scale: f32, scores: &mut [f32]) {
    check_rows("attn_scores", scores.len(), q.len(), keys.len(), stride);
    // SAFETY: reached only through the AVX2 and AVX-512 tables, which are built only where
    // `avx2_supported()` (AVX2, FMA, F16C) holds; the rows were checked to fit in `keys`.
    unsafe { scores_avx2(q, keys, stride, scale, scores) }
}

pub(crate) fn attn_mix(w: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    check_rows("attn_mix", w.len(), out.len(), values.len(), stride);
    // SAFETY: as for `attn_scores`, the rows checked to fit in `values`.
    unsafe { mix_avx2(w, values, stride, out) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `scores.len()` rows of `q.len()` values, `stride`
/// apart, must fit in `keys`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_avx2(q: &[f32], keys: &[f32], stride: usize, scale: f32, scores: &mut [f32]) {
    let (hd, n) = (q.len(), scores.len());
    let body = hd / 8 * 8;
    let (pq, pk) = (q.as_ptr(), keys.as_ptr());
    // The tail of a row (`hd % 8` values), as the reference adds it: after the lanes.
    let tail = |j: usize| -> f32 { (body..hd).fold(0.0, |t, i| t + q[i] * keys[j * stride + i]) };
    let (s4, s1) = scores.as_chunks_mut::<4>();
    for (c, s4) in s4.iter_mut().enumerate() {
        let j = 4 * c;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < body {
            // SAFETY: `i + 8 <= body <= hd`; rows `j..j + 4` (`< n`) of `hd` values fit in `keys`.
            unsafe {
                let qv = _mm256_loadu_ps(pq.add(i));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(pk.add((j + r) * stride + i)), *a);
                }
            }
            i += 8;
        }
        let s = hsum4_ps(acc);
        for r in 0..4 {
            s4[r] = (s[r] + tail(j + r)) * scale;
        }
    }
    let j0 = n - s1.len();
    for (r, s) in s1.iter_mut().enumerate() {
        let j = j0 + r;
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < body {
            // SAFETY: as above, for row `j < n`.
            unsafe {
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pq.add(i)),
                    _mm256_loadu_ps(pk.add(j * stride + i)),
                    acc,
                );
            }
            i += 8;
        }
        *s = (hsum_ps(acc) + tail(j)) * scale;
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `w.len()` rows of `out.len()` values, `stride`
/// apart, must fit in `values`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mix_avx2(w: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    let body = hd / 8 * 8;
    let mut c = 0;
    // Up to eight vectors of the output in registers while every row streams past.
    while c < body {
        // SAFETY (each): columns `c..c + 8 * V <= body <= hd` of every row.
        c += unsafe {
            match (body - c) / 8 {
                1 => mix_cols::<1>(w, values, stride, c, out),
                2 => mix_cols::<2>(w, values, stride, c, out),
                3 => mix_cols::<3>(w, values, stride, c, out),
                4 => mix_cols::<4>(w, values, stride, c, out),
                5 => mix_cols::<5>(w, values, stride, c, out),
                6 => mix_cols::<6>(w, values, stride, c, out),
                7 => mix_cols::<7>(w, values, stride, c, out),
                _ => mix_cols::<8>(w, values, stride, c, out),
            }
        };
    }
    for (i, o) in out.iter_mut().enumerate().skip(body) {
        *o = w
            .iter()
            .enumerate()
            .fold(0.0, |t, (j, &wj)| t + wj * values[j * stride + i]);
    }
}

/// Columns `c..c + 8 * V` of the mix; returns `8 * V`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `c + 8 * V <= out.len()`, and `w.len()` rows of
/// `out.len()` values, `stride` apart, must fit in `values`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mix_cols<const V: usize>(
    w: &[f32],
    values: &[f32],
    stride: usize,
    c: usize,
    out: &mut [f32],
) -> usize {
    let pv = values.as_ptr();
    let mut acc = [_mm256_setzero_ps(); V];
    for (j, &wj) in w.iter().enumerate() {
        let wv = _mm256_set1_ps(wj);
        for (v, a) in acc.iter_mut().enumerate() {
            // SAFETY: row `j < w.len()`, columns `c + 8 v .. c + 8 v + 8 <= out.len()`.
            *a = _mm256_fmadd_ps(
                wv,
                unsafe { _mm256_loadu_ps(pv.add(j * stride + c + 8 * v)) },
                *a,
            );
        }
    }
    for (v, a) in acc.iter().enumerate() {
        // SAFETY: `c + 8 v + 8 <= out.len()`.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * v), *a) };
    }
    8 * V
}
