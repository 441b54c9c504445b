//! IQ2_XXS weights (super-blocks of 256: groups of eight magnitudes from a 256-point grid, signs
//! from seven bits per group, a 4-bit scale per 32 values; 2.06 bits per value) against Q8_K
//! activations. Ported from llama.cpp's `dequantize_row_iq2_xxs` and
//! `ggml_vec_dot_iq2_xxs_q8_K_generic`, bit for bit. No quantiser ([`crate::DType::has_quantizer`]).
//!
//! The sign helpers here serve every IQ1/IQ2/IQ3 file.

use super::iq_grids::{IQ2XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};
use crate::blocks::{scale, BlockIq2Xxs, BlockQ8K, QK_K};

/// The little-endian `u16` at byte `i` of `b`.
#[inline]
pub(crate) fn le_u16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// The little-endian `u32` at byte `i` of `b`.
#[inline]
pub(crate) fn le_u32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// ggml's `(signs & kmask_iq2xs[j] ? -1.f : 1.f)`.
#[inline]
pub(crate) fn sign_f32(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// ggml's `(signs & kmask_iq2xs[j] ? -1 : 1)`.
#[inline]
pub(crate) fn sign_i32(signs: u8, j: usize) -> i32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1
    } else {
        1
    }
}

/// The eight signs of group `l` under the sub-block's word `aux` (seven bits per group, the eighth
/// sign the parity of the seven).
#[inline]
pub(crate) fn ksigns(aux: u32, l: usize) -> u8 {
    KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize]
}

/// Sub-block `ib32`'s two words: grid indices (one per byte) and signs with the scale on top.
#[inline]
fn words(b: &BlockIq2Xxs, ib32: usize) -> (u32, u32) {
    (le_u32(&b.qs, 8 * ib32), le_u32(&b.qs, 8 * ib32 + 4))
}

/// ggml's `dequantize_row_iq2_xxs`: `x = (d * (0.5 + ls) * 0.25) * grid * sign`. `out.len()` must
/// be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq2Xxs], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
            let (aux0, aux1) = words(b, ib32);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let grid = IQ2XXS_GRID[aux0.to_le_bytes()[l] as usize].to_le_bytes();
                let signs = ksigns(aux1, l);
                for j in 0..8 {
                    y[j] = db * grid[j] as f32 * sign_f32(signs, j);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq2_xxs_q8_K_generic`: per super-block `(d_w * d_a) * sum_ib (2 * ls + 1) *
/// (grid * sign . q_a)`, summed in order, times 1/8 at the end.
pub fn dot(w: &[BlockIq2Xxs], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d = scale(x.d) * y.d;
        let mut bsum = 0i32;
        for (ib32, q8) in y.qs.chunks_exact(32).enumerate() {
            let (aux0, aux1) = words(x, ib32);
            let ls = (2 * (aux1 >> 28) + 1) as i32;
            let mut sumi = 0i32;
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let grid = IQ2XXS_GRID[aux0.to_le_bytes()[l] as usize].to_le_bytes();
                let signs = ksigns(aux1, l);
                for j in 0..8 {
                    sumi += grid[j] as i32 * q8[j] as i32 * sign_i32(signs, j);
                }
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}
