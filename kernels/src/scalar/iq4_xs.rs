//! IQ4_XS weights (super-blocks of 256: eight 32-value IQ4_NL-style blocks with 6-bit scales under
//! one f16 scale) against Q8_K-quantised activations.

use super::iq4_nl::{best_index, block_scale, pack};
use super::q4_k::nearest_int;
use crate::blocks::{scale, to_scale, BlockIq4Xs, BlockQ8K, KVALUES_IQ4NL, QK, QK_K};

/// The 6-bit scale (0..=63, stored `ls - 32`) of block `ib` of a super-block.
#[inline]
fn block_ls(b: &BlockIq4Xs, ib: usize) -> i32 {
    let h = u16::from_le_bytes(b.scales_h);
    (((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) as i32) | ((((h >> (2 * ib)) & 3) as i32) << 4)
}

/// What ggml's `quantize_iq4_xs` writes for a row with no importance matrix
/// (`quantize_row_iq4_nl_impl` with 256-value super-blocks of 32-value blocks, `ntry = 7`): each
/// block's scale searched as IQ4_NL's, the super-block scale `d = -max_scale / 32` (the block scale of
/// largest magnitude maps to -32), block scales `l = clamp(round(scale / d), -32, 31)`, and each
/// value's grid index of `x / (d * l)` (the f32 `d`). `x.len()` must be `out.len() * 256`.
pub fn quantize(x: &[f32], out: &mut [BlockIq4Xs]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    const NB: usize = QK_K / QK;
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut scales = [0f32; NB];
        let (mut max_scale, mut amax_scale) = (0f32, 0f32);
        for (s, xb) in scales.iter_mut().zip(xs.chunks_exact(QK)) {
            *s = block_scale(xb);
            let abs_d = s.abs();
            if abs_d > amax_scale {
                amax_scale = abs_d;
                max_scale = *s;
            }
        }
        // -0.0 (f16 0x8000) when every block is below the threshold, as in ggml.
        let d = -max_scale / 32.0;
        b.d = to_scale(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut scales_h = 0u16;
        for (ib, (&s, xb)) in scales.iter().zip(xs.chunks_exact(QK)).enumerate() {
            let l = nearest_int(id * s).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let mut lb = [0u8; QK];
            for (q, &v) in lb.iter_mut().zip(xb) {
                *q = best_index(idl * v);
            }
            pack(&lb, &mut b.qs[ib * QK / 2..(ib + 1) * QK / 2]);
            let l = (l + 32) as u8;
            if ib % 2 == 0 {
                b.scales_l[ib / 2] = l & 0x0f;
            } else {
                b.scales_l[ib / 2] |= (l & 0x0f) << 4;
            }
            scales_h |= ((l >> 4) as u16) << (2 * ib);
        }
        b.scales_h = scales_h.to_le_bytes();
    }
}

/// ggml's `dequantize_row_iq4_xs`: `x = (d * (ls - 32)) * KVALUES_IQ4NL[q]`. `out.len()` must be
/// `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockIq4Xs], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (ib, (o, qs)) in o
            .chunks_exact_mut(QK)
            .zip(b.qs.chunks_exact(QK / 2))
            .enumerate()
        {
            let dl = d * (block_ls(b, ib) - 32) as f32;
            for j in 0..QK / 2 {
                o[j] = dl * KVALUES_IQ4NL[(qs[j] & 0x0f) as usize] as f32;
                o[j + QK / 2] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// ggml's `ggml_vec_dot_iq4_xs_q8_K_generic`: per block `((d_w * d_a) * (ls - 32)) * sum_i grid[q_w[i]]
/// * q_a[i]`, accumulated block by block in order (the Q8_K `bsums` are not used).
pub fn dot(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d4d8 = scale(x.d) * y.d;
        for (ib, (qs, q8)) in
            x.qs.chunks_exact(QK / 2)
                .zip(y.qs.chunks_exact(QK))
                .enumerate()
        {
            let dl = d4d8 * (block_ls(x, ib) - 32) as f32;
            let mut sumi = 0i32;
            for j in 0..QK / 2 {
                sumi += q8[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0x0f) as usize] as i32;
                sumi += q8[j + QK / 2] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
            }
            sumf += dl * sumi as f32;
        }
    }
    sumf
}
