//! IQ2_S weights (super-blocks of 256: groups of eight magnitudes from a 1024-point grid, one sign
//! bit per value, a 4-bit scale per 16 values; 2.56 bits per value) against Q8_K activations.
//! Ported from llama.cpp's `dequantize_row_iq2_s` and `ggml_vec_dot_iq2_s_q8_K_generic`, bit for
//! bit. No quantiser.

use super::iq2_xxs::{sign_f32, sign_i32};
use super::iq_grids::IQ2S_GRID;
use crate::blocks::{scale, BlockIq2S, BlockQ8K, QK_K};

/// Group `l` (0..4) of sub-block `ib32`: its grid point (index: 8 bits in `qs`, 2 in `qh`) and signs.
#[inline]
fn group(b: &BlockIq2S, ib32: usize, l: usize) -> ([u8; 8], u8) {
    let hi = ((b.qh[ib32] as usize) << (8 - 2 * l)) & 0x300;
    (
        IQ2S_GRID[b.qs[4 * ib32 + l] as usize | hi].to_le_bytes(),
        b.qs[QK_K / 8 + 4 * ib32 + l],
    )
}

/// ggml's `dequantize_row_iq2_s`: `x = (d * (0.5 + ls) * 0.25) * grid * sign`, `ls` per 16 values.
/// `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq2S], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let db = [
                d * (0.5 + (b.scales[ib32] & 0xf) as f32) * 0.25,
                d * (0.5 + (b.scales[ib32] >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let dl = db[l / 2];
                let (grid, signs) = group(b, ib32, l);
                for j in 0..8 {
                    y[j] = dl * grid[j] as f32 * sign_f32(signs, j);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq2_s_q8_K_generic`: per super-block `(d_w * d_a) * sum (2 * ls + 1) *
/// (grid * sign . q_a)` over the 16-value halves, summed in order, times 1/8 at the end.
pub fn dot(w: &[BlockIq2S], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d = scale(x.d) * y.d;
        let mut bsum = 0i32;
        for (ib32, q8) in y.qs.chunks_exact(32).enumerate() {
            let ls1 = 1 + 2 * (x.scales[ib32] & 0xf) as i32;
            let ls2 = 1 + 2 * (x.scales[ib32] >> 4) as i32;
            let mut sumi = [0i32; 2];
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let (grid, signs) = group(x, ib32, l);
                for j in 0..8 {
                    sumi[l / 2] += q8[j] as i32 * grid[j] as i32 * sign_i32(signs, j);
                }
            }
            bsum += ls1 * sumi[0] + ls2 * sumi[1];
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}
