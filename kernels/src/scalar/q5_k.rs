//! Q5_K weights against Q8_K-quantised activations: Q4_K with a fifth bit per level (in `qh`), ported
//! from llama.cpp as Q4_K is (see `q4_k.rs`), bit-identical to it.

use super::q4_k::{dot_k_super, get_scale_min_k4, quantize_k_super};
use crate::blocks::{scale, BlockQ5K, BlockQ8K, QK_K};

/// ggml's `quantize_row_q5_K_ref` (what `quantize_q5_K` does without an importance matrix): as Q4_K
/// with 5-bit levels (`nmax` 31, candidate scales from `rmin` -0.5 in 16 steps). The low 4 bits of
/// value `64 * n + j` (`j < 32`) go to the low nibble of `qs[32 * n + j]`, of `64 * n + 32 + j` to its
/// high nibble; their fifth bits to bits `2n` and `2n + 1` of `qh[j]`. `x.len()` must be
/// `out.len() * 256`.
pub fn quantize(x: &[f32], out: &mut [BlockQ5K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut l = [0u8; QK_K];
        let (d, dmin, sc) = quantize_k_super(xs, 31, -0.5, 15, &mut l);
        b.d = d;
        b.dmin = dmin;
        b.scales = sc;
        b.qh = [0; QK_K / 8];
        for (n, (ql, ls)) in
            b.qs.chunks_exact_mut(32)
                .zip(l.chunks_exact(64))
                .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * n), 2u8 << (2 * n));
            for j in 0..32 {
                let (mut l1, mut l2) = (ls[j], ls[j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    b.qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    b.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
        }
    }
}

/// ggml's `dequantize_row_q5_K`: `y = d * sc * q - dmin * m`, `q` the 5-bit level. `out.len()` must
/// be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockQ5K], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        let min = scale(b.dmin);
        for (j, (ql, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let (sc, m) = get_scale_min_k4(2 * j, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * j + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0xf) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q5_K_q8_K_generic`: as Q4_K's (the same accumulation order, see
/// `q4_k::dot_k_super`) with the 5-bit levels. `w` and `a` have the same length.
pub fn dot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    let mut aux8 = [0i8; QK_K];
    for (b, y) in w.iter().zip(a) {
        for (j, (q, ax)) in
            b.qs.chunks_exact(32)
                .zip(aux8.chunks_exact_mut(64))
                .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * j), 2u8 << (2 * j));
            for l in 0..32 {
                ax[l] = ((q[l] & 0xf) + if b.qh[l] & m1 != 0 { 16 } else { 0 }) as i8;
                ax[l + 32] = ((q[l] >> 4) + if b.qh[l] & m2 != 0 { 16 } else { 0 }) as i8;
            }
        }
        dot_k_super(&aux8, &b.scales, b.d, b.dmin, y, &mut sums, &mut sumf);
    }
    for s in sums {
        sumf += s;
    }
    sumf
}
