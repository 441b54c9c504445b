//! Q4_1 weights (`x = d * q + m`, 4-bit `q`) against Q8_1-quantised activations.

use crate::blocks::{scale, to_scale, BlockQ4_1, BlockQ8_1, QK};

/// The smallest and largest of `xs`, as ggml's `_ref` quantisers find them (a NaN is never taken).
pub(crate) fn min_max(xs: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in xs {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// ggml's `quantize_row_q4_1_ref` (what `quantize_q4_1` writes without an importance matrix):
/// `m = min(x)`, `d = (max - min) / 15`, `q = min(15, trunc((x - m) / d + 0.5))`, with the f32 `d`
/// and `m` (not their f16 roundings). `x.len()` must be `out.len() * 32`.
pub fn quantize(x: &[f32], out: &mut [BlockQ4_1]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (min, max) = min_max(xs);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = to_scale(d);
        b.m = to_scale(min);
        for j in 0..QK / 2 {
            let x0 = (xs[j] - min) * id;
            let x1 = (xs[j + QK / 2] - min) * id;
            // C's `(int8_t)` truncation; `as` saturates where C would be undefined (never for finite x).
            let q0 = ((x0 + 0.5) as i8).min(15) as u8;
            let q1 = ((x1 + 0.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// ggml's `dequantize_row_q4_1`: `x = q * d + m`. `out.len()` must be `blocks.len() * 32`.
pub fn dequantize(blocks: &[BlockQ4_1], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (scale(b.d), scale(b.m));
        for j in 0..QK / 2 {
            o[j] = (b.qs[j] & 0x0f) as f32 * d + m;
            o[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// ggml's `ggml_vec_dot_q4_1_q8_1_generic`: per block `(d_w * d_a) * sum_i q_w[i] * q_a[i] + m_w * s_a`
/// (the min times the activations' `d * sum(q)`), accumulated in block order.
pub fn dot(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            sumi += (x.qs[j] & 0x0f) as i32 * y.qs[j] as i32;
            sumi += (x.qs[j] >> 4) as i32 * y.qs[j + QK / 2] as i32;
        }
        sumf += (scale(x.d) * scale(y.d)) * sumi as f32 + scale(x.m) * scale(y.s);
    }
    sumf
}
