//! IQ1_M weights (super-blocks of 256: IQ1_S's ternary grid with a shift sign per eight values and a
//! 3-bit scale per 16, the f16 super-block scale spread over the scales' top nibbles; 1.75 bits per
//! value) against Q8_K activations. Ported from llama.cpp's `dequantize_row_iq1_m` and
//! `ggml_vec_dot_iq1_m_q8_K_generic`, bit for bit. No quantiser.

use super::iq2_xxs::le_u16;
use super::iq_grids::IQ1S_GRID;
use crate::blocks::{BlockIq1M, BlockQ8K, IQ1S_DELTA, QK_K};

/// The four little-endian `u16` scale words.
#[inline]
fn scale_words(b: &BlockIq1M) -> [u16; 4] {
    [0, 1, 2, 3].map(|k| le_u16(&b.scales, 2 * k))
}

/// The f16 super-block scale: the top nibbles of the four words (ggml's `iq1m_scale_t`).
#[inline]
fn super_scale(sc: &[u16; 4]) -> f32 {
    let bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    half::f16::from_bits(bits).to_f32()
}

/// The 3-bit scales (as `2 * s + 1`) of the two 16-value halves of sub-block `ib`.
#[inline]
fn half_scales(sc: &[u16; 4], ib: usize) -> (i32, i32) {
    let w = sc[ib / 2];
    (
        2 * ((w >> (6 * (ib % 2))) & 0x7) as i32 + 1,
        2 * ((w >> (6 * (ib % 2) + 3)) & 0x7) as i32 + 1,
    )
}

/// The grid point of group `l` (0..4) of sub-block `ib`, and whether its shift is negative.
#[inline]
fn group(b: &BlockIq1M, ib: usize, l: usize) -> ([i8; 8], bool) {
    let qh = b.qh[2 * ib + l / 2] as usize;
    let idx = b.qs[4 * ib + l] as usize | ((qh << (8 - 4 * (l % 2))) & 0x700);
    let negative = qh & (0x08 << (4 * (l % 2))) != 0;
    (IQ1S_GRID[idx].to_le_bytes().map(|v| v as i8), negative)
}

/// ggml's `dequantize_row_iq1_m`: `x = (d * (2 * ls + 1)) * (grid + delta)`, `ls` per 16 values,
/// `delta = +-1/8` per 8. `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq1M], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let sc = scale_words(b);
        let d = super_scale(&sc);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let (ls1, ls2) = half_scales(&sc, ib);
            let dl = [d * ls1 as f32, d * ls2 as f32];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let (grid, negative) = group(b, ib, l);
                let delta = if negative { -IQ1S_DELTA } else { IQ1S_DELTA };
                for j in 0..8 {
                    y[j] = dl[l / 2] * (grid[j] as f32 + delta);
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq1_m_q8_K_generic`: per super-block `d_w * d_a * (sumi1 + 1/8 * sumi2)`,
/// `sumi1` the scaled grid products, `sumi2` the scaled, signed sums of the activations.
pub fn dot(w: &[BlockIq1M], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let sc = scale_words(x);
        let (mut sumi1, mut sumi2) = (0i32, 0i32);
        for (ib, q8) in y.qs.chunks_exact(32).enumerate() {
            let (mut sum1, mut sum2) = ([0i32; 2], [0i32; 2]);
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let (grid, negative) = group(x, ib, l);
                let (mut lsum1, mut lsum2) = (0i32, 0i32);
                for j in 0..8 {
                    lsum1 += q8[j] as i32 * grid[j] as i32;
                    lsum2 += q8[j] as i32;
                }
                sum1[l / 2] += lsum1;
                sum2[l / 2] += if negative { -lsum2 } else { lsum2 };
            }
            let (ls1, ls2) = half_scales(&sc, ib);
            sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
            sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
        }
        sumf += super_scale(&sc) * y.d * (sumi1 as f32 + IQ1S_DELTA * sumi2 as f32);
    }
    sumf
}
