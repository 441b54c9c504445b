//! Q4_0 weights against Q8_0-quantised activations.

use std::arch::aarch64::*;

use super::{scale, I8Dot, SDot, Widen};
use crate::acts::Q8Acts;
use crate::blocks::{BlockQ4_0, BlockQ8_0};

/// `y[r] = w[r] . x` for the `y.len()` rows of `x.len()` blocks stored back to back in `w`.
pub fn dot_rows(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    crate::scalar::q4_0::rows_with(dot, w, x, y)
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]` (`scalar::q4_0::matmul_rows`).
pub fn matmul_rows(w: &[BlockQ4_0], x: &crate::acts::Q8Prepared, yt: &mut [f32]) {
    crate::scalar::q4_0::matmul_rows_with(dot, w, x, yt)
}

/// [`matmul_rows`] with the dot-product instructions.
pub(super) fn matmul_rows_dotprod(w: &[BlockQ4_0], x: &crate::acts::Q8Prepared, yt: &mut [f32]) {
    crate::scalar::q4_0::matmul_rows_with(dot_dotprod, w, x, yt)
}

/// [`dot_rows`] with the dot-product instructions.
pub(super) fn dot_rows_dotprod(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    crate::scalar::q4_0::rows_with(dot_dotprod, w, x, y)
}

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]` (ggml's `ggml_vec_dot_q4_0_q8_0`)
/// with base NEON: nibbles unpacked to `i8` in -8..=7, exact integer block sums (`smull` +
/// `sadalp`), then the scalar reference's float operations in its order (bit-identical to
/// `scalar::q4_0::dot`; the activation scales come from `x.d()`, the same values).
pub fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, x.blocks(), x.d()) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), x.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, x.blocks(), x.d()) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ4_0], x: &[BlockQ8_0], xd: &[f32]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, x, xd) }
}

/// `xd[b]` is `scale(x[b].d)`.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ4_0], x: &[BlockQ8_0], xd: &[f32]) -> f32 {
    let low = vdupq_n_u8(0x0f);
    let eight = vdupq_n_s8(8);
    let mut sum = 0f32;
    for ((a, b), &db) in w.iter().zip(x).zip(xd) {
        // SAFETY (loads): the 16 nibble bytes of `a` and the two halves of the 32 `i8` of `b`, both
        // borrowed for the call; byte pointers need no alignment.
        let q = vld1q_u8(a.qs.as_ptr());
        let (b0, b1) = (vld1q_s8(b.qs.as_ptr()), vld1q_s8(b.qs.as_ptr().add(16)));
        // Values 0..16 (the low nibbles) and 16..32 (the high nibbles), each minus 8.
        let a0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, low)), eight);
        let a1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
        let s = vaddvq_s32(D::dot(D::dot(vdupq_n_s32(0), a0, b0), a1, b1));
        // |s| <= 2^17, exact in f32; same operations and order as the reference.
        sum += s as f32 * (scale(a.d) * db);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Both integer paths are bit-identical to the reference, extreme nibbles and quants included.
    #[test]
    fn dot_paths_match_reference_exactly() {
        let mut s = 99u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for n in [0, 1, 2, 3, 5, 8, 17, 64] {
            let w: Vec<BlockQ4_0> = (0..n)
                .map(|i| BlockQ4_0 {
                    d: to_scale((next() % 1000) as f32 * 1e-4),
                    qs: core::array::from_fn(|_| match i % 3 {
                        0 => 0x00,
                        1 => 0xf0,
                        _ => next() as u8,
                    }),
                })
                .collect();
            let x: Vec<BlockQ8_0> = (0..n)
                .map(|i| BlockQ8_0 {
                    d: to_scale((next() % 1000) as f32 * 1e-3),
                    qs: core::array::from_fn(|_| if i % 2 == 0 { -128 } else { next() as i8 }),
                })
                .collect();
            let x = Q8Prepared::from_blocks(x, 1);
            let x = x.get(0);
            let want = scalar::q4_0::dot(&w, &x);
            assert_eq!(dot(&w, &x).to_bits(), want.to_bits(), "n={n}");
            if super::super::dotprod_supported() {
                assert_eq!(dot_dotprod(&w, &x).to_bits(), want.to_bits(), "sdot n={n}");
            }
        }
    }
}
