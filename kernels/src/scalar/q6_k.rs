//! Q6_K weights against Q8_K-quantised activations, ported from llama.cpp's `ggml-quants.c` /
//! `ggml-cpu/quants.c` float operation for float operation (see `q4_k.rs`), bit-identical to it.

use super::q4_0::signed_abs_max;
use super::q4_k::nearest_int;
use crate::blocks::{scale, to_scale, BlockQ6K, BlockQ8K, QK_K};

/// ggml's `GROUP_MAX_EPS`: below this largest magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qx_quants` as `quantize_row_q6_K_ref` calls it (`rmse_type` 1, no importance
/// weights): `x ~ scale * (L - nmax)` with `L` in `0..2 * nmax`, the value of largest magnitude mapped
/// to `-nmax`, then the best of 18 nearby scales by the `x^2`-weighted least squares. Returns the
/// scale; an all-zero group gets scale 0 and `L` 0 (not `nmax`), as in C.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    debug_assert_eq!(x.len(), l.len());
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let iscale = -nmax_f / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (q, &v) in l.iter_mut().zip(x) {
        let li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *q = (li + nmax) as i8;
        let (w, lf) = (v * v, li as f32);
        sumlx += w * v * lf;
        suml2 += w * lf * lf;
    }
    // `suml2 ? ... : 0` in C: NaN counts as non-zero, as with `!=` here.
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax_f + 0.1 * is as f32) / max;
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let lf = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in l.iter_mut().zip(x) {
                *q = (nmax + nearest_int(iscale * v).clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `quantize_row_q6_K_ref` (what `quantize_q6_K` does without an importance matrix): per
/// 16-value sub-block `x ~ d * sc * (q - 32)`, 6-bit `q`, 8-bit signed `sc` (the sub-block scale of
/// largest magnitude maps to -128). Value `128 * n + 32 * k + l` (`k < 4`, `l < 32`) has its low 4
/// bits in the low (`k` 0, 1) or high (`k` 2, 3) nibble of `ql[64 * n + 32 * (k % 2) + l]` and its top
/// 2 bits at bit `2k` of `qh[32 * n + l]`. `x.len()` must be `out.len() * 256`.
pub fn quantize(x: &[f32], out: &mut [BlockQ6K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for (ib, s) in scales.iter_mut().enumerate() {
            *s = make_qx_quants(
                32,
                &xs[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
            );
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = *s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }

        let iscale = -128.0 / max_scale;
        b.d = to_scale(1.0 / iscale);
        for (q, &s) in b.scales.iter_mut().zip(&scales) {
            // C stores the int into an int8_t (mod 256) after the MIN.
            *q = nearest_int(iscale * s).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = scale(b.d) * b.scales[j] as f32;
            // A sub-block whose scale rounds to 0 keeps make_qx_quants' levels, as in C.
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xs[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }

        for (n, (ql, qh)) in
            b.ql.chunks_exact_mut(64)
                .zip(b.qh.chunks_exact_mut(32))
                .enumerate()
        {
            let l = &l[128 * n..128 * n + 128];
            for i in 0..32 {
                let (q1, q2, q3, q4) = (
                    l[i] as u8,
                    l[i + 32] as u8,
                    l[i + 64] as u8,
                    l[i + 96] as u8,
                );
                ql[i] = (q1 & 0xf) | ((q3 & 0xf) << 4);
                ql[i + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
                qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

/// The four signed levels (`q - 32`) that share `ql[i]`, `ql[i + 32]` and `qh[i]` of one 128-value
/// half: values `i`, `i + 32`, `i + 64`, `i + 96` of it.
#[inline]
fn levels(ql: &[u8], qh: &[u8], i: usize) -> [i8; 4] {
    let h = qh[i];
    [
        ((ql[i] & 0xf) | ((h & 3) << 4)) as i8 - 32,
        ((ql[i + 32] & 0xf) | (((h >> 2) & 3) << 4)) as i8 - 32,
        ((ql[i] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32,
        ((ql[i + 32] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32,
    ]
}

/// ggml's `dequantize_row_q6_K`: `y = (d * sc) * (q - 32)`. `out.len()` must be
/// `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockQ6K], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let (ql, qh) = (&b.ql[64 * n..64 * n + 64], &b.qh[32 * n..32 * n + 32]);
            let sc = &b.scales[8 * n..8 * n + 8];
            for i in 0..32 {
                let is = i / 16;
                for (k, q) in levels(ql, qh, i).into_iter().enumerate() {
                    y[i + 32 * k] = d * sc[is + 2 * k] as f32 * q as f32;
                }
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q6_K_q8_K_generic`: integer sums in 8 lanes (`aux32[l]` gathers the values `i`
/// with `i % 8 == l`, each times its 16-value sub-block's scale; exact, so their order is free), then
/// per super-block `sums[l] += (d_w * d_a) * aux32[l]`, and finally `sumf = sum_l sums[l]` in lane
/// order, as the C does. `w` and `a` have the same length.
pub fn dot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sums = [0f32; 8];
    let mut aux8 = [0i8; QK_K];
    for (b, y) in w.iter().zip(a) {
        for (n, ax) in aux8.chunks_exact_mut(128).enumerate() {
            let (ql, qh) = (&b.ql[64 * n..64 * n + 64], &b.qh[32 * n..32 * n + 32]);
            for i in 0..32 {
                for (k, q) in levels(ql, qh, i).into_iter().enumerate() {
                    ax[i + 32 * k] = q;
                }
            }
        }
        let mut aux32 = [0i32; 8];
        for (i, (&q, &v)) in y.qs.iter().zip(&aux8).enumerate() {
            // |q * v| <= 128 * 32 fits ggml's int16 aux16; lanes stay far below i32 range.
            aux32[i % 8] += b.scales[i / 16] as i32 * (q as i32 * v as i32);
        }
        let d = scale(b.d) * y.d;
        for (s, &v) in sums.iter_mut().zip(&aux32) {
            *s += d * v as f32;
        }
    }
    let mut sumf = 0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}
