//! Q5_1 weights against Q8_1-quantised activations.

use std::arch::aarch64::*;

use super::q5_0::fifth_bits;
use super::{s8, scale, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ5_1, BlockQ8_1};

/// `sum_b (d_w * d_a) * sum_i q_w[i] * q_a[i] + m_w * s_a` (ggml's `ggml_vec_dot_q5_1_q8_1`) with
/// base NEON: the 5-bit levels (the nibble with bit 4 from `qh`), exact integer block sums
/// (`smull` + `sadalp`), then the scalar reference's float operations in its order (bit-identical
/// to `scalar::q5_1::dot`).
pub fn dot(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let low = vdupq_n_u8(0x0f);
    let bit4 = vdupq_n_u8(0x10);
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY (loads): the 16 nibble bytes of `x` and the two halves of the 32 `i8` of `y`, both
        // borrowed for the call; byte pointers need no alignment.
        let q = vld1q_u8(x.qs.as_ptr());
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let (h0, h1) = fifth_bits(x.qh);
        let lo = vorrq_u8(vandq_u8(q, low), vandq_u8(h0, bit4));
        let hi = vorrq_u8(vshrq_n_u8::<4>(q), vandq_u8(h1, bit4));
        let s = vaddvq_s32(D::dot(D::dot(zero, s8(lo), y0), s8(hi), y1));
        // |s| <= 32 * 31 * 128, exact in f32; same operations and order as the reference.
        sumf += (scale(x.d) * scale(y.d)) * s as f32 + scale(x.m) * scale(y.s);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::{legacy_acts, raw_blocks, CASES};
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Both paths are bit-identical to the reference, extreme levels and quants included.
    #[test]
    fn dot_paths_match_reference_exactly() {
        for n in [0, 1, 2, 3, 5, 8, 17] {
            for case in 0..CASES {
                let w: Vec<BlockQ5_1> =
                    raw_blocks(n, 91 + case as u32, case, |b: &mut BlockQ5_1| {
                        b.d = to_scale(0.01);
                        b.m = to_scale(-0.15);
                    });
                let x: Vec<BlockQ8_1> = legacy_acts(n, 16, case)
                    .into_iter()
                    .map(|(d, qs)| BlockQ8_1 {
                        d,
                        s: to_scale(qs.iter().map(|&q| q as f32).sum::<f32>() * 0.01),
                        qs,
                    })
                    .collect();
                let want = scalar::q5_1::dot(&w, &x);
                assert_eq!(dot(&w, &x).to_bits(), want.to_bits(), "n={n} case={case}");
                if super::super::dotprod_supported() {
                    assert_eq!(dot_dotprod(&w, &x).to_bits(), want.to_bits(), "sdot n={n}");
                }
            }
        }
    }
}
