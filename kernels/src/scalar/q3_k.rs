//! Q3_K weights against Q8_K-quantised activations, bit for bit as llama.cpp's reference C code.
//!
//! Every float expression keeps ggml's operation order (no fused multiply-add), so the blocks, the
//! dequantised values and the dot products equal those of `ggml-quants.c` / `ggml-cpu/quants.c`
//! compiled for x86-64 without FMA.

use super::q4_0::signed_abs_max;
use super::q4_k::nearest_int;
use crate::blocks::{scale, to_scale, BlockQ3K, BlockQ8K, QK_K};

/// ggml's `GROUP_MAX_EPS`: below this largest magnitude a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_q3_quants`: a symmetric scale for levels `L - nmax` in `-nmax..nmax`, starting from
/// `-nmax / max` and, with `do_rmse`, refined one level at a time (up to 5 passes) to minimise the
/// `x^2`-weighted error. Writes `L` (offset by `nmax`, except all-zero groups, left at 0) and returns
/// the scale.
pub(crate) fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8], do_rmse: bool) -> f32 {
    debug_assert_eq!(x.len(), l_out.len());
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let iscale = -nmax as f32 / max;
    if do_rmse {
        let mut sumlx = 0f32;
        let mut suml2 = 0f32;
        for (lo, &v) in l_out.iter_mut().zip(x) {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            *lo = l as i8;
            let (w, l) = (v * v, l as f32);
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for (lo, &v) in l_out.iter_mut().zip(x) {
                let w = v * v;
                let li = *lo as f32;
                let mut slx = sumlx - w * v * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != *lo as i32 {
                        let nl = new_l as f32;
                        slx += w * v * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            *lo = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for lo in l_out.iter_mut() {
            *lo += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for (lo, &v) in l_out.iter_mut().zip(x) {
        *lo = (nearest_int(iscale * v).clamp(-nmax, nmax - 1) + nmax) as i8;
    }
    1.0 / iscale
}

/// The 16 signed 6-bit scales of a block (the low 4 bits of scale `j` in the low nibble of byte `j`
/// for `j < 8`, the high nibble of byte `j - 8` otherwise; the top 2 bits in bits `2 * (j / 4)` of
/// byte `8 + j % 4`), minus 32. The same values ggml's `kmask` shuffle produces.
#[inline]
fn unpack_scales(s: &[u8; 12]) -> [i8; 16] {
    std::array::from_fn(|j| {
        let lo = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
        let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        (lo | (hi << 4)) as i8 - 32
    })
}

/// ggml's `quantize_row_q3_K_ref` (what `quantize_q3_K` does without an importance matrix): per
/// sub-block of 16 a symmetric scale from `make_q3_quants`, the 16 scales quantised to 6 signed bits
/// against the one of largest magnitude, then every value requantised against its stored scale.
/// `x.len()` must be `out.len() * 256`.
pub fn quantize(x: &[f32], out: &mut [BlockQ3K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for (y, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut max_scale = 0f32;
        let mut amax = 0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(
                4,
                &x[16 * j..16 * j + 16],
                &mut l[16 * j..16 * j + 16],
                true,
            );
            let s = scales[j].abs();
            if s > amax {
                amax = s;
                max_scale = scales[j];
            }
        }

        y.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // C assigns the int to an int8_t before clamping: `as i8` truncates the same way.
                let q = nearest_int(iscale * s) as i8;
                let q = (q.clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    y.scales[j] = q & 0xf;
                } else {
                    y.scales[j - 8] |= (q & 0xf) << 4;
                }
                y.scales[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
            }
            y.d = to_scale(1.0 / iscale);
        } else {
            y.d = to_scale(0.0);
        }

        // Requantise against the stored (rounded) scales; a sub-block whose scale is 0 keeps the
        // levels make_q3_quants chose.
        let dg = scale(y.d);
        for (j, &sc) in unpack_scales(&y.scales).iter().enumerate() {
            let d = dg * sc as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (q + 4) as i8;
            }
        }

        // The high bit of value j goes to bit j / 32 of hmask[j % 32].
        y.hmask = [0; QK_K / 8];
        for (j, lv) in l.iter_mut().enumerate() {
            if *lv > 3 {
                y.hmask[j % (QK_K / 8)] |= 1 << (j / (QK_K / 8));
                *lv -= 4;
            }
        }
        for j in (0..QK_K).step_by(128) {
            for i in 0..32 {
                // Levels are 0..=3 here; `as u8` of the i8 is the C `uint8_t` store.
                y.qs[j / 4 + i] = l[j + i] as u8
                    | (l[j + i + 32] as u8) << 2
                    | (l[j + i + 64] as u8) << 4
                    | (l[j + i + 96] as u8) << 6;
            }
        }
    }
}

/// ggml's `dequantize_row_q3_K`: `x = (d * (sc - 32)) * (q - 4 * !h)`, `q` the 2 bits in `qs` and
/// `h` the bit in `hmask`. `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockQ3K], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d_all = scale(b.d);
        let scales = unpack_scales(&b.scales);
        let mut subs = y.chunks_exact_mut(16).zip(scales);
        let mut m = 1u8;
        // 128 values per 32 bytes of qs: four 2-bit planes, each two sub-blocks of 16; plane p of
        // the whole block takes its high bits from bit p of hmask.
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                let halves = q.chunks_exact(16).zip(b.hmask.chunks_exact(16));
                for ((half, hm), (o, sc)) in halves.zip(subs.by_ref()) {
                    let dl = d_all * sc as f32;
                    for (o, (&qv, &h)) in o.iter_mut().zip(half.iter().zip(hm)) {
                        let v = ((qv >> shift) & 3) as i32 - if h & m != 0 { 0 } else { 4 };
                        *o = dl * v as f32;
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q3_K_q8_K_generic`: per super-block eight integer lanes
/// `aux32[l] += (sc_j - 32) * q3[i] * q8[i]` over `i = 8k + l`, then `sums[l] += (d_w * d_a) * aux32[l]`
/// across blocks, and the result `sums[0] + ... + sums[7]` in that order.
pub fn dot(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    let mut sums = [0f32; 8];
    let mut aux8 = [0i8; QK_K];
    for (x, y) in w.iter().zip(a) {
        // The 3-bit values, -4..=3, in order.
        let mut m = 1u8;
        for (q3, av) in x.qs.chunks_exact(32).zip(aux8.chunks_exact_mut(128)) {
            for (shift, av) in [0, 2, 4, 6].into_iter().zip(av.chunks_exact_mut(32)) {
                for ((o, &q), &h) in av.iter_mut().zip(q3).zip(&x.hmask) {
                    *o = ((q >> shift) & 3) as i8 - if h & m != 0 { 0 } else { 4 };
                }
                m = m.wrapping_shl(1);
            }
        }

        let scales = unpack_scales(&x.scales);
        let mut aux32 = [0i32; 8];
        for ((q8, av), &sc) in
            y.qs.chunks_exact(16)
                .zip(aux8.chunks_exact(16))
                .zip(&scales)
        {
            for (q8, av) in q8.chunks_exact(8).zip(av.chunks_exact(8)) {
                for l in 0..8 {
                    // |q8 * a| <= 128 * 4: the C `int16_t` holds it exactly.
                    let p = q8[l] as i16 * av[l] as i16;
                    aux32[l] += sc as i32 * p as i32;
                }
            }
        }
        let d = scale(x.d) * y.d;
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
