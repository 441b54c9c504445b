//! Q8_0 weights against Q8_0-quantised activations.

use crate::blocks::{scale, to_scale, BlockQ8_0, QK};

/// ggml's `quantize_row_q8_0_ref`: `d = max|x| / 127`, `q = round(x / d)` (half away from zero).
/// `x.len()` must be `out.len() * 32`.
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = to_scale(d);
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round() as i8;
        }
    }
}

/// The quantiser of activations (the vector a Q8_0/Q4_0 matrix multiplies), as llama.cpp's x86
/// `quantize_row_q8_0` computes it for its matmuls: `d = max|x| / 127` as above, but
/// `q = round_ties_even(x * (127 / max|x|))`. Every tier reproduces it bit for bit, so cosmoe's Q8_0/Q4_0
/// products equal llama.cpp's on x86. (Weights are quantised with [`quantize_row`], as llama.cpp's
/// `llama-quantize` and converter do.)
pub fn quantize_row_activations(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = to_scale(amax / 127.0);
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
        }
    }
}

pub fn dequantize_row(row: &[BlockQ8_0], out: &mut [f32]) {
    for (b, o) in row.iter().zip(out.chunks_exact_mut(QK)) {
        let d = scale(b.d);
        for (o, &q) in o.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// `sum_b d_w[b] * d_x[b] * sum_i w[b][i] * x[b][i]`, integer sums per block (ggml's
/// `ggml_vec_dot_q8_0_q8_0` generic path).
pub fn dot(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let s: i32 =
            a.qs.iter()
                .zip(&b.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sum += s as f32 * (scale(a.d) * scale(b.d));
    }
    sum
}
