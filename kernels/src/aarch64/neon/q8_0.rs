//! Q8_0 weights against Q8_0-quantised activations.

use std::arch::aarch64::*;

use super::{scale, I8Dot, SDot, Widen};
use crate::blocks::{to_scale, BlockQ8_0, QK};

/// `sum_b d_w[b] * d_x[b] * sum_i w[b][i] * x[b][i]` with base NEON (`smull` + `sadalp`): the exact
/// integer block sums, then the scalar reference's float operations in its order, so the result is
/// bit-identical to `scalar::q8_0::dot`.
pub fn dot(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, x) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), x.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, x) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, x) }
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        // SAFETY (loads): each reads 16 of the 32 `i8` of a block borrowed for the call; `i8`
        // pointers need no alignment.
        let (a0, a1) = (vld1q_s8(a.qs.as_ptr()), vld1q_s8(a.qs.as_ptr().add(16)));
        let (b0, b1) = (vld1q_s8(b.qs.as_ptr()), vld1q_s8(b.qs.as_ptr().add(16)));
        let s = vaddvq_s32(D::dot(D::dot(vdupq_n_s32(0), a0, b0), a1, b1));
        // |s| <= 2^19, exact in f32; same operations and order as the reference.
        sum += s as f32 * (scale(a.d) * scale(b.d));
    }
    sum
}

/// The activation quantiser, bit-identical to `scalar::q8_0::quantize_row_activations`:
/// `d = max|x| / 127`, `q = round_ties_even(x * (127 / max|x|))` (`fcvtns`), saturating as `as i8`
/// does.
/// `x.len()` must be `out.len() * 32`.
pub fn quantize_row(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // SAFETY: `xs` holds exactly 32 values; NEON is baseline on aarch64.
        unsafe { quantize_block(xs, b) }
    }
}

/// # Safety
/// `xs.len() == 32`.
#[inline(always)]
unsafe fn quantize_block(xs: &[f32], b: &mut BlockQ8_0) {
    debug_assert_eq!(xs.len(), QK);
    // SAFETY (loads): eight loads of four values cover exactly the 32 values of `xs`.
    let v: [float32x4_t; 8] = core::array::from_fn(|k| vld1q_f32(xs.as_ptr().add(4 * k)));
    // The reference folds `max` from 0 (`fmaxnm`: a NaN loses to a number), in any order: the
    // maximum of non-negative values does not depend on it.
    let mut m = vdupq_n_f32(0.0);
    for v in v {
        m = vmaxnmq_f32(m, vabsq_f32(v));
    }
    let amax = vmaxnmvq_f32(m);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    b.d = to_scale(d);
    // `(v * id).round_ties_even() as i8`: round half to even to i32 (saturating; NaN to 0), then
    // saturating narrows to i16 and i8.
    let q = v.map(|v| vcvtnq_s32_f32(vmulq_n_f32(v, id)));
    let h: [int16x8_t; 4] =
        core::array::from_fn(|k| vcombine_s16(vqmovn_s32(q[2 * k]), vqmovn_s32(q[2 * k + 1])));
    let q0 = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
    let q1 = vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3]));
    // SAFETY (stores): two stores of 16 `i8` fill the block's 32 quants, borrowed mutably.
    vst1q_s8(b.qs.as_mut_ptr(), q0);
    vst1q_s8(b.qs.as_mut_ptr().add(16), q1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar;

    fn blocks(n: usize, seed: u32) -> Vec<BlockQ8_0> {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        (0..n)
            .map(|i| BlockQ8_0 {
                // Scales of assorted sizes, and the extreme quants -128 / 127 in some blocks.
                d: to_scale((next() % 1000) as f32 * 1e-4),
                qs: core::array::from_fn(|j| match (i % 4, j % 3) {
                    (0, _) => -128,
                    (1, 0) => 127,
                    _ => next() as i8,
                }),
            })
            .collect()
    }

    /// Both integer paths are bit-identical to the reference.
    #[test]
    fn dot_paths_match_reference_exactly() {
        for n in [0, 1, 2, 3, 5, 8, 17, 64] {
            let (w, x) = (blocks(n, 1), blocks(n, 2));
            let want = scalar::q8_0::dot(&w, &x);
            assert_eq!(dot(&w, &x).to_bits(), want.to_bits(), "n={n}");
            if super::super::dotprod_supported() {
                assert_eq!(dot_dotprod(&w, &x).to_bits(), want.to_bits(), "sdot n={n}");
            }
        }
    }

    /// Rounding ties, saturation, infinities, NaN and tiny scales (1 / d overflowing to infinity).
    #[test]
    fn quantize_edge_cases_match_reference() {
        let mut cases: Vec<[f32; QK]> = vec![
            [0.0; QK],
            core::array::from_fn(|i| i as f32 - 15.5),
            core::array::from_fn(|i| (i as f32 - 16.0) * 0.5),
            core::array::from_fn(|i| if i == 3 { f32::NAN } else { i as f32 }),
            core::array::from_fn(|i| if i == 3 { f32::INFINITY } else { i as f32 }),
            core::array::from_fn(|i| {
                if i == 5 {
                    f32::NEG_INFINITY
                } else {
                    -(i as f32)
                }
            }),
            core::array::from_fn(|i| (i as f32 - 16.0) * 1e-38),
            core::array::from_fn(|i| (i as f32 - 16.0) * 1e-44),
            core::array::from_fn(|i| (i as f32 - 16.0) * 3e38),
            core::array::from_fn(|i| if i % 2 == 0 { -0.0 } else { 0.0 }),
        ];
        let mut s = 12345u32;
        for _ in 0..200 {
            cases.push(core::array::from_fn(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
            }));
        }
        for xs in cases {
            let (mut a, mut b) = ([BlockQ8_0::default()], [BlockQ8_0::default()]);
            quantize_row(&xs, &mut a);
            scalar::q8_0::quantize_row_activations(&xs, &mut b);
            assert_eq!(a, b, "{xs:?}");
        }
    }
}
