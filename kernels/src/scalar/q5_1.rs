//! Q5_1 weights (`x = d * q + m`, 5-bit `q`) against Q8_1-quantised activations.

use super::q4_1::min_max;
use crate::blocks::{scale, to_scale, BlockQ5_1, BlockQ8_1, QK};

/// ggml's `quantize_row_q5_1_ref` (what `quantize_q5_1` writes without an importance matrix):
/// `m = min(x)`, `d = (max - min) / 31`, `q = trunc((x - m) / d + 0.5)`, the low 4 bits in `qs` and
/// bit 4 of value `i` in bit `i` of `qh`. `x.len()` must be `out.len() * 32`.
pub fn quantize(x: &[f32], out: &mut [BlockQ5_1]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (min, max) = min_max(xs);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = to_scale(d);
        b.m = to_scale(min);
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let x0 = (xs[j] - min) * id;
            let x1 = (xs[j + QK / 2] - min) * id;
            // No clamp, as in ggml: (x - min) / d stays within [0, 31] up to rounding.
            let q0 = (x0 + 0.5) as u8;
            let q1 = (x1 + 0.5) as u8;
            b.qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((q0 as u32 & 0x10) >> 4) << j;
            qh |= ((q1 as u32 & 0x10) >> 4) << (j + QK / 2);
        }
        b.qh = qh.to_le_bytes();
    }
}

/// ggml's `dequantize_row_q5_1`: `x = q * d + m`. `out.len()` must be `blocks.len() * 32`.
pub fn dequantize(blocks: &[BlockQ5_1], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (scale(b.d), scale(b.m));
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let (q0, q1) = q5(b.qs[j], qh, j);
            o[j] = q0 as f32 * d + m;
            o[j + QK / 2] = q1 as f32 * d + m;
        }
    }
}

/// The 5-bit values `j` and `j + 16` of a block (0..=31).
#[inline]
fn q5(qs: u8, qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    ((qs & 0x0f) as i32 | h0 as i32, (qs >> 4) as i32 | h1 as i32)
}

/// ggml's `ggml_vec_dot_q5_1_q8_1_generic`: per block `(d_w * d_a) * sum_i q_w[i] * q_a[i] + m_w * s_a`,
/// accumulated in block order.
pub fn dot(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let qh = u32::from_le_bytes(x.qh);
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            let (q0, q1) = q5(x.qs[j], qh, j);
            sumi += q0 * y.qs[j] as i32 + q1 * y.qs[j + QK / 2] as i32;
        }
        sumf += (scale(x.d) * scale(y.d)) * sumi as f32 + scale(x.m) * scale(y.s);
    }
    sumf
}
