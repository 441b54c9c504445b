//! Q2_K weights against Q8_K-quantised activations, bit for bit as llama.cpp's reference C code.
//!
//! Every float expression keeps ggml's operation order (no fused multiply-add), so the blocks, the
//! dequantised values and the dot products equal those of `ggml-quants.c` / `ggml-cpu/quants.c`
//! compiled for x86-64 without FMA.

use super::q4_k::{make_qkx2_quants, nearest_int};
use crate::blocks::{scale, to_scale, BlockQ2K, BlockQ8K, QK_K};

/// ggml's `quantize_row_q2_K_ref` (what `quantize_q2_K` does without an importance matrix): per
/// sub-block of 16 an affine fit with `make_qkx2_quants` weighted by `|x|`, the 16 scales and mins
/// quantised to 4 bits against their maxima, then every value requantised against its stored
/// scale and min. `x.len()` must be `out.len() * 256`.
pub fn quantize(x: &[f32], out: &mut [BlockQ2K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    const Q4SCALE: f32 = 15.0;
    let mut l = [0u8; QK_K];
    let mut l_aux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    for (y, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        // Scales are positive (the min is subtracted), so the maxima start at 0.
        let mut max_scale = 0f32;
        let mut max_min = 0f32;
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx2_quants(
                3,
                xs,
                &weights,
                &mut l[16 * j..16 * j + 16],
                &mut l_aux,
                -0.5,
                0.1,
                15,
                true,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }

        // C stores the int into a uint8_t: `as u8` truncates the same way.
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (sc, &s) in y.scales.iter_mut().zip(&scales) {
                *sc = nearest_int(iscale * s) as u8;
            }
            y.d = to_scale(max_scale / Q4SCALE);
        } else {
            y.scales = [0; QK_K / 16];
            y.d = to_scale(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (sc, &m) in y.scales.iter_mut().zip(&mins) {
                *sc |= (nearest_int(iscale * m) << 4) as u8;
            }
            y.dmin = to_scale(max_min / Q4SCALE);
        } else {
            y.dmin = to_scale(0.0);
        }

        // Requantise against the stored (rounded) scales; a sub-block whose scale is 0 keeps the
        // levels make_qkx2_quants chose.
        let (dg, mg) = (scale(y.d), scale(y.dmin));
        for j in 0..QK_K / 16 {
            let d = dg * (y.scales[j] & 0xf) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = mg * (y.scales[j] >> 4) as f32;
            for ii in 0..16 {
                let q = nearest_int((x[16 * j + ii] + dm) / d);
                l[16 * j + ii] = q.clamp(0, 3) as u8;
            }
        }

        for j in (0..QK_K).step_by(128) {
            for i in 0..32 {
                y.qs[j / 4 + i] =
                    l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
            }
        }
    }
}

/// ggml's `dequantize_row_q2_K`: `x = d * (sc & 15) * q - dmin * (sc >> 4)`, each sub-block's two
/// products rounded once before the subtraction. `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockQ2K], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        let min = scale(b.dmin);
        // Sub-blocks of 16 in order; their scales are bytes 0..16 of `scales`.
        let mut subs = y.chunks_exact_mut(16).zip(&b.scales);
        // 128 values per 32 bytes of qs: four 2-bit planes, each two sub-blocks of 16.
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (half, (o, &sc)) in q.chunks_exact(16).zip(subs.by_ref()) {
                    let dl = d * (sc & 0xf) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for (o, &qv) in o.iter_mut().zip(half) {
                        *o = dl * ((qv >> shift) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q2_K_q8_K_generic`: per super-block the integer sums `isum = sum_j
/// (sc_j & 15) * sum q2 * q8` and `summs = sum_j bsums_j * (sc_j >> 4)`, then
/// `sum += (d_a * d_w) * isum - (d_a * dmin_w) * summs`, in block order.
pub fn dot(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let summs: i32 = y
            .bsums
            .iter()
            .zip(&x.scales)
            .map(|(&s, &sc)| s as i32 * (sc >> 4) as i32)
            .sum();
        let dall = y.d * scale(x.d);
        let dmin = y.d * scale(x.dmin);

        let mut isum = 0i32;
        let mut is = 0;
        let mut q8 = y.qs.chunks_exact(16);
        for q2 in x.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (half, q8) in q2.chunks_exact(16).zip(q8.by_ref()) {
                    let d = (x.scales[is] & 0xf) as i32;
                    is += 1;
                    let isuml: i32 = half
                        .iter()
                        .zip(q8)
                        .map(|(&q, &v)| v as i32 * ((q >> shift) & 3) as i32)
                        .sum();
                    isum += d * isuml;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}
