//! IQ1_S weights (super-blocks of 256: groups of eight values in -1, 0, 1 from a 2048-point grid,
//! shifted by +-1/8 and scaled per 32 values with 3 bits; 1.56 bits per value) against Q8_K
//! activations. Ported from llama.cpp's `dequantize_row_iq1_s` and
//! `ggml_vec_dot_iq1_s_q8_K_generic`, bit for bit. No quantiser.

use super::iq2_xxs::le_u16;
use super::iq_grids::IQ1S_GRID;
use crate::blocks::{scale, BlockIq1S, BlockQ8K, IQ1S_DELTA, QK_K};

/// The grid point (eight values in -1, 0, 1) of group `l` of sub-block `ib` (`qh` its word).
#[inline]
fn grid(b: &BlockIq1S, ib: usize, qh: u16, l: usize) -> [i8; 8] {
    let idx = b.qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
    IQ1S_GRID[idx].to_le_bytes().map(|v| v as i8)
}

/// ggml's `dequantize_row_iq1_s`: `x = (d * (2 * ls + 1)) * (grid + delta)`, `delta = +-1/8`.
/// `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq1S], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = le_u16(&b.qh, 2 * ib);
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let grid = grid(b, ib, qh, l);
                for j in 0..8 {
                    y[j] = dl * (grid[j] as f32 + delta);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq1_s_q8_K_generic`: per super-block `d_w * d_a * (sumi + 1/8 * sumi1)`,
/// `sumi` the scaled grid products, `sumi1` the scaled, signed sums of the activations (from their
/// `bsums`).
pub fn dot(w: &[BlockIq1S], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let (mut sumi, mut sumi1) = (0i32, 0i32);
        for (ib, q8) in y.qs.chunks_exact(32).enumerate() {
            let qh = le_u16(&x.qh, 2 * ib);
            let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            let mut lsum = 0i32;
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let grid = grid(x, ib, qh, l);
                for j in 0..8 {
                    lsum += q8[j] as i32 * grid[j] as i32;
                }
            }
            sumi += ls * lsum;
            sumi1 += ls * delta * (y.bsums[2 * ib] as i32 + y.bsums[2 * ib + 1] as i32);
        }
        sumf += scale(x.d) * y.d * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
    }
    sumf
}
