//! IQ3_S weights (super-blocks of 256: groups of four magnitudes from a 512-point grid, one sign bit
//! per value, a 4-bit scale per 32 values; 3.44 bits per value) against Q8_K activations. Ported
//! from llama.cpp's `dequantize_row_iq3_s` and `ggml_vec_dot_iq3_s_q8_K_generic`, bit for bit. No
//! quantiser.

use super::iq2_xxs::{sign_f32, sign_i32};
use super::iq_grids::IQ3S_GRID;
use crate::blocks::{scale, BlockIq3S, BlockQ8K, QK_K};

/// The 4-bit scale of sub-block `ib32`.
#[inline]
fn ls(b: &BlockIq3S, ib32: usize) -> u8 {
    (b.scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf
}

/// The two grid points (four magnitudes each) of group `l` (eight values) of sub-block `ib32`: 8
/// index bits in `qs`, the ninth from `qh[ib32]`, and the group's eight sign bits.
#[inline]
fn group(b: &BlockIq3S, ib32: usize, l: usize) -> ([u8; 4], [u8; 4], u8) {
    let q = &b.qs[8 * ib32 + 2 * l..];
    let qh = b.qh[ib32] as usize;
    (
        IQ3S_GRID[q[0] as usize | ((qh << (8 - 2 * l)) & 256)].to_le_bytes(),
        IQ3S_GRID[q[1] as usize | ((qh << (7 - 2 * l)) & 256)].to_le_bytes(),
        b.signs[4 * ib32 + l],
    )
}

/// ggml's `dequantize_row_iq3_s`: `x = (d * (1 + 2 * ls)) * grid * sign`. `out.len()` must be
/// `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq3S], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db = d * (1 + 2 * ls(b, ib32) as i32) as f32;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let (grid1, grid2, signs) = group(b, ib32, l);
                for j in 0..4 {
                    y[j] = db * grid1[j] as f32 * sign_f32(signs, j);
                    y[j + 4] = db * grid2[j] as f32 * sign_f32(signs, j + 4);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq3_s_q8_K_generic`: per super-block `(d_w * d_a) * sum_ib (2 * ls + 1) *
/// (grid * sign . q_a)`, summed in order.
pub fn dot(w: &[BlockIq3S], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d = scale(x.d) * y.d;
        let mut bsum = 0i32;
        for (ib32, q8) in y.qs.chunks_exact(32).enumerate() {
            let ls = 2 * ls(x, ib32) as i32 + 1;
            let mut sumi = 0i32;
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let (grid1, grid2, signs) = group(x, ib32, l);
                for j in 0..4 {
                    sumi += grid1[j] as i32 * q8[j] as i32 * sign_i32(signs, j);
                    sumi += grid2[j] as i32 * q8[j + 4] as i32 * sign_i32(signs, j + 4);
                }
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    sumf
}
