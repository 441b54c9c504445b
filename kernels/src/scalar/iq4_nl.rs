//! IQ4_NL weights (`x = d * KVALUES_IQ4NL[q]`, 4-bit indices into a non-linear grid) against
//! Q8_0-quantised activations, and the scale search IQ4_XS shares.

use crate::blocks::{scale, to_scale, BlockIq4Nl, BlockQ8_0, KVALUES_IQ4NL, QK};

/// ggml's `GROUP_MAX_EPS`: a block whose largest magnitude is below it gets scale 0.
const GROUP_MAX_EPS: f32 = 1e-15;

/// The scales each side of `max / -127` that ggml's search tries (`ntry` of `quantize_iq4_nl` and
/// `quantize_iq4_xs`).
const NTRY: i32 = 7;

/// ggml's `best_index_int8` over [`KVALUES_IQ4NL`]: the index of the grid value nearest `x` (the
/// upper one on a tie), by bisection, comparisons as in C (a NaN lands on 15).
#[inline]
pub(crate) fn best_index(x: f32) -> u8 {
    let val = |i: usize| KVALUES_IQ4NL[i] as f32;
    if x <= val(0) {
        return 0;
    }
    if x >= val(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < val(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - val(mu - 1) < val(mu) - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// The scale of one 32-value block as the first loop of ggml's `quantize_row_iq4_nl_impl` finds it
/// with no importance matrix (weights `x^2`) and `ntry = 7`: indices for `d = max / 127` (`max` the
/// value of largest magnitude, with its sign) refitted by least squares, then indices for
/// `1 / d = (itry - 127) / max`, `itry` in -7..=7 (`max` near the grid's -127 end), each refitted, keeping
/// the fit that explains most of `sum w x^2`. 0 for a block below [`GROUP_MAX_EPS`]. Float sums in
/// ggml's order, for bit-exact scales.
pub(crate) fn block_scale(xb: &[f32]) -> f32 {
    let (amax, max) = super::q4_0::signed_abs_max(xb);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = KVALUES_IQ4NL[0] as f32;
    // The sums of w*q*x and w*q*q over the block for the inverse scale `id`.
    let fit = |id: f32| {
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for &v in xb {
            let q = KVALUES_IQ4NL[best_index(id * v) as usize] as f32;
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let (sumqx, sumq2) = fit(1.0 / (-max / v0));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let (sumqx, sumq2) = fit((itry + KVALUES_IQ4NL[0] as i32) as f32 / max);
        // sumqx^2 / sumq2 > best, without the division.
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs 32 grid indices of a block as ggml does: value `j` in the low nibble of byte `j`, value
/// `j + 16` in its high nibble.
#[inline]
pub(crate) fn pack(l: &[u8; QK], qs: &mut [u8]) {
    for j in 0..QK / 2 {
        qs[j] = l[j] | (l[j + QK / 2] << 4);
    }
}

/// What ggml's `quantize_iq4_nl` writes for a row with no importance matrix
/// (`quantize_row_iq4_nl_impl` with one 32-value block per super-block, `ntry = 7`): the searched
/// scale `d` stored as f16, and each value's nearest grid index of `x / d` (with the f32 `d`).
/// `x.len()` must be `out.len() * 32`.
pub fn quantize(x: &[f32], out: &mut [BlockIq4Nl]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let d = block_scale(xs);
        b.d = to_scale(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut l = [0u8; QK];
        for (l, &v) in l.iter_mut().zip(xs) {
            *l = best_index(id * v);
        }
        pack(&l, &mut b.qs);
    }
}

/// ggml's `dequantize_row_iq4_nl`: `x = d * KVALUES_IQ4NL[q]`. `out.len()` must be `blocks.len() * 32`.
pub fn dequantize(blocks: &[BlockIq4Nl], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK);
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = scale(b.d);
        for j in 0..QK / 2 {
            o[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0x0f) as usize] as f32;
            o[j + QK / 2] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// ggml's `ggml_vec_dot_iq4_nl_q8_0_generic`: per block `(d_a * d_w) * sum_i grid[q_w[i]] * q_a[i]`,
/// accumulated in block order.
pub fn dot(w: &[BlockIq4Nl], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let d = scale(y.d) * scale(x.d);
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            sumi += y.qs[j] as i32 * KVALUES_IQ4NL[(x.qs[j] & 0x0f) as usize] as i32;
            sumi += y.qs[j + QK / 2] as i32 * KVALUES_IQ4NL[(x.qs[j] >> 4) as usize] as i32;
        }
        sumf += d * sumi as f32;
    }
    sumf
}
