//! Q5_0 weights (`x = d * (q - 16)`, 5-bit `q`) against Q8_0-quantised activations.

use super::q4_0::signed_abs_max;
use crate::blocks::{scale, to_scale, BlockQ5_0, BlockQ8_0, QK};

/// ggml's `quantize_row_q5_0_ref` (what `quantize_q5_0` writes without an importance matrix): the
/// value of largest magnitude `m` (with its sign) maps to -16, `d = m / -16`,
/// `q = min(31, trunc(x / d + 16.5))`. `x.len()` must be `out.len() * 32`.
pub fn quantize(x: &[f32], out: &mut [BlockQ5_0]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (_, max) = signed_abs_max(xs);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = to_scale(d);
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = xs[j] * id;
            let x1 = xs[j + QK / 2] * id;
            // C's `(int8_t)` truncation; `as` saturates where C would be undefined (never for finite x).
            let q0 = ((x0 + 16.5) as i8).min(31) as u8;
            let q1 = ((x1 + 16.5) as i8).min(31) as u8;
            b.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK / 2);
        }
        b.qh = qh.to_le_bytes();
    }
}

/// The values `j` and `j + 16` of a block, `q - 16` (-16..=15).
#[inline]
fn q5(qs: u8, qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (
        ((qs & 0x0f) as u32 | h0) as i32 - 16,
        ((qs >> 4) as u32 | h1) as i32 - 16,
    )
}

/// ggml's `dequantize_row_q5_0`: `x = (q - 16) * d`. `out.len()` must be `blocks.len() * 32`.
pub fn dequantize(blocks: &[BlockQ5_0], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = scale(b.d);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let (q0, q1) = q5(b.qs[j], qh, j);
            o[j] = q0 as f32 * d;
            o[j + QK / 2] = q1 as f32 * d;
        }
    }
}

/// ggml's `ggml_vec_dot_q5_0_q8_0_generic`: per block `(d_w * d_a) * sum_i (q_w[i] - 16) * q_a[i]`,
/// accumulated in block order.
pub fn dot(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let qh = u32::from_le_bytes(x.qh);
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            let (q0, q1) = q5(x.qs[j], qh, j);
            sumi += q0 * y.qs[j] as i32 + q1 * y.qs[j + QK / 2] as i32;
        }
        sumf += (scale(x.d) * scale(y.d)) * sumi as f32;
    }
    sumf
}
