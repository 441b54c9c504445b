//! Q4_K weights against Q8_K-quantised activations, and the helpers Q4_K shares with Q5_K (and that
//! the other K-quants use): `nearest_int`, `make_qkx2_quants`, `get_scale_min_k4`.
//!
//! Everything here is a line-by-line port of llama.cpp's `ggml-quants.c` / `ggml-cpu/quants.c`, float
//! operations in the same order (Rust never contracts `a * b + c` into an FMA, and neither does gcc
//! for x86-64 without `-mfma`), so the blocks, values and products are bit-identical to llama.cpp's.

use crate::blocks::{scale, to_scale, BlockQ4K, BlockQ8K, K_SCALE_SIZE, QK_K};

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5 * 2^23 and reading the low
/// mantissa bits. Exact for `|fval| <= 4194303`; beyond that (only reachable from non-finite or
/// absurd input) it returns the same bits-derived garbage as the C, never panicking.
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12582912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes
/// of Q4_K / Q5_K (sub-blocks 0..4 in the low 6 bits of bytes 0..8; 4..8 split between the nibbles of
/// bytes 8..12 and the top 2 bits of bytes 0..8).
#[inline]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// ggml's `make_qkx2_quants`: fits `x ~ scale * L - the_min` with `L` in `0..=nmax` (and
/// `the_min >= 0`), minimising the `weights`-weighted squared (or absolute, `use_mad`) error over the
/// first guess and `nstep + 1` candidate scales `(rmin + rdelta * is + nmax) / (max - min)`.
/// Returns `(scale, the_min)`; writes the levels into `l`, using `laux` as scratch. All three slices
/// and `weights` have `x.len()` (non-zero) elements.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    debug_assert!(n > 0 && weights.len() == n && l.len() == n && laux.len() == n);
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, lf) = (weights[i], q as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The part of `quantize_row_q4_K_ref` and `quantize_row_q5_K_ref` before the bit packing, for one
/// super-block `x` of `QK_K` values: each sub-block of 32 fitted by [`make_qkx2_quants`] (weights
/// `sqrt(mean(x^2)) + |x|`), the 8 scales and mins quantised to 6 bits against their maxima (the f16
/// `d` and `dmin`), then every level recomputed from the stored scales, `nearest_int((x + dm) / d)`
/// clamped to `0..=nmax`. Returns `(d, dmin, scales)`; the levels go to `l`.
pub(crate) fn quantize_k_super(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
) -> ([u8; 2], [u8; 2], [u8; K_SCALE_SIZE]) {
    debug_assert_eq!(x.len(), QK_K);
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    // Scales are positive as the min is subtracted, hence the 0 start.
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let ls = &mut l[32 * j..32 * j + 32];
        let (s, m) = make_qkx2_quants(nmax, xs, &weights, ls, &mut laux, rmin, 0.1, nstep, false);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sc = [0u8; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        // C stores the int into a uint8_t (mod 256) before the MIN.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            // Sub-blocks 0..4 are written first, so these ORs land on their final bytes.
            sc[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d = to_scale(max_scale / 63.0);
    let dmin = to_scale(max_min / 63.0);

    for j in 0..QK_K / 32 {
        let (s, m) = get_scale_min_k4(j, &sc);
        let dj = scale(d) * s as f32;
        // A sub-block whose 6-bit scale is 0 keeps the levels make_qkx2_quants chose, as in C.
        if dj == 0.0 {
            continue;
        }
        let dm = scale(dmin) * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, sc)
}

/// ggml's `quantize_row_q4_K_ref` (what `quantize_q4_K` does without an importance matrix, i.e. what
/// `llama-quantize` writes then): per 32-value sub-block `x ~ d * sc * q - dmin * m`, 4-bit `q`, 6-bit
/// `sc` and `m`. `x.len()` must be `out.len() * 256`.
pub fn quantize(x: &[f32], out: &mut [BlockQ4K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut l = [0u8; QK_K];
        let (d, dmin, sc) = quantize_k_super(xs, 15, -1.0, 20, &mut l);
        b.d = d;
        b.dmin = dmin;
        b.scales = sc;
        // Each 32 bytes hold 64 values: the first 32 in the low nibbles, the next 32 in the high.
        for (q, ls) in b.qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
            for i in 0..32 {
                q[i] = ls[i] | (ls[i + 32] << 4);
            }
        }
    }
}

/// ggml's `dequantize_row_q4_K`: `y = d * sc * q - dmin * m`. `out.len()` must be
/// `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockQ4K], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = scale(b.d);
        let min = scale(b.dmin);
        for (j, (q, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc, m) = get_scale_min_k4(2 * j, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * j + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xf) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// The arithmetic `ggml_vec_dot_q4_K_q8_K_generic` and `ggml_vec_dot_q5_K_q8_K_generic` share once the
/// levels of one super-block are unpacked into `aux8`: integer sums in 8 lanes (`aux32[l]` gathers the
/// values `i` with `i % 8 == l`, each times its sub-block's 6-bit scale; exact, so their order is
/// free), then, in this order, `sums[l] += (d_w * d_a) * aux32[l]` and
/// `sumf -= (dmin_w * d_a) * sum_j(bsums[j] * m[j / 2])`. The caller adds `sums` to `sumf` at the end.
pub(crate) fn dot_k_super(
    aux8: &[i8; QK_K],
    scales: &[u8; K_SCALE_SIZE],
    d: [u8; 2],
    dmin: [u8; 2],
    a: &BlockQ8K,
    sums: &mut [f32; 8],
    sumf: &mut f32,
) {
    let mut sc = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..8 {
        (sc[j], mins[j]) = get_scale_min_k4(j, scales);
    }
    let mut sumi = 0i32;
    for (j, &s) in a.bsums.iter().enumerate() {
        sumi += s as i32 * mins[j / 2] as i32;
    }
    let mut aux32 = [0i32; 8];
    for (i, (&q, &w)) in a.qs.iter().zip(aux8).enumerate() {
        // |q * w| <= 128 * 31 fits ggml's int16 aux16; lanes stay far below i32 range.
        aux32[i % 8] += sc[i / 32] as i32 * (q as i32 * w as i32);
    }
    let dd = scale(d) * a.d;
    for (s, &v) in sums.iter_mut().zip(&aux32) {
        *s += dd * v as f32;
    }
    let dm = scale(dmin) * a.d;
    *sumf -= dm * sumi as f32;
}

/// ggml's `ggml_vec_dot_q4_K_q8_K_generic`: `sum d_w * d_a * sc * sum(q_w * q_a) - dmin_w * d_a * m *
/// sum(q_a)`, accumulated as the C does it (see [`dot_k_super`]). `w` and `a` have the same length.
pub fn dot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    let mut aux8 = [0i8; QK_K];
    for (b, y) in w.iter().zip(a) {
        for (q, ax) in b.qs.chunks_exact(32).zip(aux8.chunks_exact_mut(64)) {
            for l in 0..32 {
                ax[l] = (q[l] & 0xf) as i8;
                ax[l + 32] = (q[l] >> 4) as i8;
            }
        }
        dot_k_super(&aux8, &b.scales, b.d, b.dmin, y, &mut sums, &mut sumf);
    }
    for s in sums {
        sumf += s;
    }
    sumf
}
