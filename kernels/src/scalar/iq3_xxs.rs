//! IQ3_XXS weights (super-blocks of 256: groups of four magnitudes from a 256-point grid, signs from
//! seven bits per eight values, a 4-bit scale per 32 values; 3.06 bits per value) against Q8_K
//! activations. Ported from llama.cpp's `dequantize_row_iq3_xxs` and
//! `ggml_vec_dot_iq3_xxs_q8_K_generic`, bit for bit. No quantiser.

use super::iq2_xxs::{ksigns, le_u32, sign_f32, sign_i32};
use super::iq_grids::IQ3XXS_GRID;
use crate::blocks::{scale, BlockIq3Xxs, BlockQ8K, QK_K};

/// Sub-block `ib32`'s word of signs (seven bits per eight values) with the 4-bit scale on top.
#[inline]
fn scales_and_signs(b: &BlockIq3Xxs, ib32: usize) -> u32 {
    le_u32(&b.qs, QK_K / 4 + 4 * ib32)
}

/// The two grid points (four magnitudes each) of group `l` (eight values) of sub-block `ib32`.
#[inline]
fn grids(b: &BlockIq3Xxs, ib32: usize, l: usize) -> ([u8; 4], [u8; 4]) {
    let q = &b.qs[8 * ib32 + 2 * l..];
    (
        IQ3XXS_GRID[q[0] as usize].to_le_bytes(),
        IQ3XXS_GRID[q[1] as usize].to_le_bytes(),
    )
}

/// ggml's `dequantize_row_iq3_xxs`: `x = (d * (0.5 + ls) * 0.5) * grid * sign`. `out.len()` must be
/// `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq3Xxs], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let aux32 = scales_and_signs(b, ib32);
            let db = d * (0.5 + (aux32 >> 28) as f32) * 0.5;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = ksigns(aux32, l);
                let (grid1, grid2) = grids(b, ib32, l);
                for j in 0..4 {
                    y[j] = db * grid1[j] as f32 * sign_f32(signs, j);
                    y[j + 4] = db * grid2[j] as f32 * sign_f32(signs, j + 4);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq3_xxs_q8_K_generic`: per super-block `(d_w * d_a) * sum_ib (2 * ls + 1) *
/// (grid * sign . q_a)`, summed in order, times 1/4 at the end.
pub fn dot(w: &[BlockIq3Xxs], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d = scale(x.d) * y.d;
        let mut bsum = 0i32;
        for (ib32, q8) in y.qs.chunks_exact(32).enumerate() {
            let aux32 = scales_and_signs(x, ib32);
            let ls = (2 * (aux32 >> 28) + 1) as i32;
            let mut sumi = 0i32;
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let (grid1, grid2) = grids(x, ib32, l);
                let signs = ksigns(aux32, l);
                for j in 0..4 {
                    sumi += grid1[j] as i32 * q8[j] as i32 * sign_i32(signs, j);
                    sumi += grid2[j] as i32 * q8[j + 4] as i32 * sign_i32(signs, j + 4);
                }
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    0.25 * sumf
}
