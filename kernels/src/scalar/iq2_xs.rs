//! IQ2_XS weights (super-blocks of 256: groups of eight magnitudes from a 512-point grid with seven
//! sign bits per group in one `u16`, a 4-bit scale per 16 values; 2.31 bits per value) against Q8_K
//! activations. Ported from llama.cpp's `dequantize_row_iq2_xs` and
//! `ggml_vec_dot_iq2_xs_q8_K_generic`, bit for bit. No quantiser.

use super::iq2_xxs::{le_u16, sign_f32, sign_i32};
use super::iq_grids::{IQ2XS_GRID, KSIGNS_IQ2XS};
use crate::blocks::{scale, BlockIq2Xs, BlockQ8K, QK_K};

/// Group `g`'s (0..32) grid point and signs.
#[inline]
fn group(b: &BlockIq2Xs, g: usize) -> ([u8; 8], u8) {
    let q = le_u16(&b.qs, 2 * g);
    (
        IQ2XS_GRID[(q & 511) as usize].to_le_bytes(),
        KSIGNS_IQ2XS[(q >> 9) as usize],
    )
}

/// ggml's `dequantize_row_iq2_xs`: `x = (d * (0.5 + ls) * 0.25) * grid * sign`, `ls` per 16 values.
/// `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq2Xs], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db = [
                d * (0.5 + (b.scales[ib32] & 0xf) as f32) * 0.25,
                d * (0.5 + (b.scales[ib32] >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let (grid, signs) = group(b, 4 * ib32 + l);
                for j in 0..8 {
                    y[j] = db[l / 2] * grid[j] as f32 * sign_f32(signs, j);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq2_xs_q8_K_generic`: per super-block `(d_w * d_a) * sum (2 * ls + 1) *
/// (grid * sign . q_a)` over the 16-value halves, summed in order, times 1/8 at the end.
pub fn dot(w: &[BlockIq2Xs], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d = scale(x.d) * y.d;
        let mut bsum = 0i32;
        for (ib32, q8) in y.qs.chunks_exact(32).enumerate() {
            let ls = [
                2 * (x.scales[ib32] & 0xf) as i32 + 1,
                2 * (x.scales[ib32] >> 4) as i32 + 1,
            ];
            for (half, q8) in q8.chunks_exact(16).enumerate() {
                let mut sumi = 0i32;
                for (l, q8) in q8.chunks_exact(8).enumerate() {
                    let (grid, signs) = group(x, 4 * ib32 + 2 * half + l);
                    for j in 0..8 {
                        sumi += grid[j] as i32 * q8[j] as i32 * sign_i32(signs, j);
                    }
                }
                bsum += sumi * ls[half];
            }
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}
