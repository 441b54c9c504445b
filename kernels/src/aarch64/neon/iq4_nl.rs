//! IQ4_NL weights against Q8_0-quantised activations.

use std::arch::aarch64::*;

use super::iq4_xs::{grid, lookup};
use super::{scale, I8Dot, SDot, Widen};
use crate::blocks::{BlockIq4Nl, BlockQ8_0};

/// `sum_b (d_a * d_w) * sum_i grid[q_w[i]] * q_a[i]` (ggml's `ggml_vec_dot_iq4_nl_q8_0`) with base
/// NEON: the 4-bit indices looked up in the grid (`tbl`), exact integer block sums (`smull` +
/// `sadalp`), then the scalar reference's float operations in its order (bit-identical to
/// `scalar::iq4_nl::dot`).
pub fn dot(w: &[BlockIq4Nl], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockIq4Nl], a: &[BlockQ8_0]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockIq4Nl], a: &[BlockQ8_0]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq4Nl], a: &[BlockQ8_0]) -> f32 {
    let grid = grid();
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY (loads): the 16 index bytes of `x` and the two halves of the 32 `i8` of `y`, both
        // borrowed for the call; byte pointers need no alignment.
        let (lo, hi) = lookup(grid, vld1q_u8(x.qs.as_ptr()));
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let s = vaddvq_s32(D::dot(D::dot(zero, lo, y0), hi, y1));
        // |s| <= 32 * 127 * 128, exact in f32; same operations and order as the reference.
        sumf += (scale(y.d) * scale(x.d)) * s as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::{legacy_acts, raw_blocks, CASES};
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Both paths are bit-identical to the reference, extreme grid values and quants included.
    #[test]
    fn dot_paths_match_reference_exactly() {
        for n in [0, 1, 2, 3, 5, 8, 17] {
            for case in 0..CASES {
                let w: Vec<BlockIq4Nl> =
                    raw_blocks(n, 101 + case as u32, case, |b: &mut BlockIq4Nl| {
                        b.d = to_scale(0.01);
                        if case == 2 {
                            // Index 0 (-127) against -128.
                            b.qs = [0; 16];
                        }
                    });
                let x: Vec<BlockQ8_0> = legacy_acts(n, 17, case)
                    .into_iter()
                    .map(|(d, qs)| BlockQ8_0 { d, qs })
                    .collect();
                let want = scalar::iq4_nl::dot(&w, &x);
                assert_eq!(dot(&w, &x).to_bits(), want.to_bits(), "n={n} case={case}");
                if super::super::dotprod_supported() {
                    assert_eq!(dot_dotprod(&w, &x).to_bits(), want.to_bits(), "sdot n={n}");
                }
            }
        }
    }
}
