//! Q4_0 weights against Q8_0-quantised activations.

use crate::acts::{Q8Acts, Q8Prepared};
use crate::blocks::{scale, to_scale, BlockQ4_0, QK};

/// `(max |x|, the x that has it)`: the first value of largest magnitude, with its sign, as ggml's
/// quantisers scan for it (`amax < |x|`, so a NaN is never taken).
pub(crate) fn signed_abs_max(xs: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in xs {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// ggml's `quantize_row_q4_0_ref`: the value of largest magnitude `m` (with its sign) maps to -8,
/// `d = m / -8`, `q = min(15, trunc(x / d + 8.5))`.
pub fn quantize_row(x: &[f32], out: &mut [BlockQ4_0]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (_, max) = signed_abs_max(xs);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = to_scale(d);
        for j in 0..QK / 2 {
            let x0 = xs[j] * id + 8.5;
            let x1 = xs[j + QK / 2] * id + 8.5;
            let q0 = (x0 as i8).min(15) as u8;
            let q1 = (x1 as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

pub fn dequantize_row(row: &[BlockQ4_0], out: &mut [f32]) {
    for (b, o) in row.iter().zip(out.chunks_exact_mut(QK)) {
        let d = scale(b.d);
        for j in 0..QK / 2 {
            o[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            o[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]` (ggml's `ggml_vec_dot_q4_0_q8_0`),
/// in block order, from the quantised blocks alone (`x.blocks()`; the prepared terms are for the SIMD
/// tiers).
pub fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    let x = x.blocks();
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            let lo = (a.qs[j] & 0x0f) as i32 - 8;
            let hi = (a.qs[j] >> 4) as i32 - 8;
            s += lo * b.qs[j] as i32 + hi * b.qs[j + QK / 2] as i32;
        }
        sum += s as f32 * (scale(a.d) * scale(b.d));
    }
    sum
}

/// `y[r] = w[r] . x` for the `y.len()` rows of `x.len()` blocks stored back to back in `w`, with `dot`
/// (a tier's row kernel; the tiers without a rows kernel of their own pass theirs here).
#[inline]
pub fn rows_with(
    dot: impl Fn(&[BlockQ4_0], &Q8Acts<'_>) -> f32,
    w: &[BlockQ4_0],
    x: &Q8Acts<'_>,
    y: &mut [f32],
) {
    match x.len() {
        0 => y.fill(0.0),
        nb => {
            for (yv, row) in y.iter_mut().zip(w.chunks_exact(nb)) {
                *yv = dot(row, x);
            }
        }
    }
}

/// [`rows_with`] the reference [`dot`].
pub fn dot_rows(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    rows_with(dot, w, x, y)
}

/// `yt[r * n + t] = w[r] . x[t]` for the `yt.len() / n` rows of `x`'s block count stored back to back in
/// `w` and the `n` vectors of `x` (prefill), with `dot` (a tier's row kernel).
#[inline]
pub fn matmul_rows_with(
    dot: impl Fn(&[BlockQ4_0], &Q8Acts<'_>) -> f32,
    w: &[BlockQ4_0],
    x: &Q8Prepared,
    yt: &mut [f32],
) {
    let n = x.n();
    if n == 0 {
        return;
    }
    let acts: Vec<Q8Acts<'_>> = (0..n).map(|t| x.get(t)).collect();
    match acts[0].len() {
        0 => yt.fill(0.0),
        nb => {
            for (ys, row) in yt.chunks_exact_mut(n).zip(w.chunks_exact(nb)) {
                for (y, a) in ys.iter_mut().zip(&acts) {
                    *y = dot(row, a);
                }
            }
        }
    }
}

/// [`matmul_rows_with`] the reference [`dot`].
pub fn matmul_rows(w: &[BlockQ4_0], x: &Q8Prepared, yt: &mut [f32]) {
    matmul_rows_with(dot, w, x, yt)
}
