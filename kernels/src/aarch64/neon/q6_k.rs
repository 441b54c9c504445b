//! Q6_K weights against Q8_K-quantised activations: Q3_K's kernel with 6-bit levels (see `q3_k.rs`).

use std::arch::aarch64::*;

use super::q3_k::{dot_blocks, OffsetLevels};
use super::{SDot, Widen};
use crate::blocks::{BlockQ6K, BlockQ8K};

/// `sum d_w * d_a * sc * sum((q_w - 32) * q_a)` over the super-blocks (ggml's
/// `ggml_vec_dot_q6_K_q8_K`) with base NEON: the unsigned 6-bit levels multiplied as they are
/// (`smull` + `sadalp`), the sixteen sub-block sums times their 8-bit scales summed exactly in
/// `i32`, the offset 32 taken off once per super-block as `32 * sum_j sc[j] * bsums[j]` (the
/// activations' `bsums` must be the sums of their quants, as the quantiser writes them), then one
/// float product per super-block. The reference sums in eight float lanes instead, so results
/// differ by float reassociation only.
pub fn dot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen, _>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot, _>(w, a) }
}

impl OffsetLevels for BlockQ6K {
    const OFFSET: i32 = 32;
    type High = ();
    #[inline(always)]
    fn d(&self) -> [u8; 2] {
        self.d
    }
    #[inline(always)]
    unsafe fn signed_scales(&self) -> int8x16_t {
        // SAFETY (loads): the 16 `i8` scales, borrowed for the call.
        vld1q_s8(self.scales.as_ptr())
    }
    #[inline(always)]
    unsafe fn high(&self) {}
    /// Value i + 32k (i < 32) of the half has its low 4 bits in the low (k = 0, 1) or high (k = 2,
    /// 3) nibble of ql[64n + i + 32 * (k % 2)] and its top 2 bits at bit 2k of qh[32n + i].
    #[inline(always)]
    unsafe fn levels(&self, n: usize, _: &()) -> [uint8x16_t; 8] {
        let three = vdupq_n_u8(3);
        let bits45 = vdupq_n_u8(0x30);
        // SAFETY (loads): 64 of the 128 bytes of `ql`, 32 of the 64 of `qh` (`n < 2`), borrowed
        // for the call; byte pointers need no alignment.
        let ql = self.ql.as_ptr().add(64 * n);
        let (l0, l1) = (vld1q_u8(ql), vld1q_u8(ql.add(16)));
        let (l2, l3) = (vld1q_u8(ql.add(32)), vld1q_u8(ql.add(48)));
        let qh = self.qh.as_ptr().add(32 * n);
        let (h0, h1) = (vld1q_u8(qh), vld1q_u8(qh.add(16)));
        let (g0, g1) = (vshrq_n_u8::<2>(h0), vshrq_n_u8::<2>(h1));
        // `sli` inserts the top bits above a low nibble, `sri` a high nibble below top bits
        // already at bits 4 and 5.
        [
            vsliq_n_u8::<4>(l0, vandq_u8(h0, three)),
            vsliq_n_u8::<4>(l1, vandq_u8(h1, three)),
            vsliq_n_u8::<4>(l2, vandq_u8(g0, three)),
            vsliq_n_u8::<4>(l3, vandq_u8(g1, three)),
            vsriq_n_u8::<4>(vandq_u8(h0, bits45), l0),
            vsriq_n_u8::<4>(vandq_u8(h1, bits45), l1),
            vsriq_n_u8::<4>(g0, l2),
            vsriq_n_u8::<4>(g1, l3),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_k, q8k_blocks, raw_blocks};
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    #[test]
    fn dot_paths_match_reference() {
        for n in [0, 1, 2, 3, 5, 8] {
            for (case, x) in q8k_blocks(n, 9).into_iter().enumerate() {
                let w: Vec<BlockQ6K> = raw_blocks(n, 31 + case as u32, case, |b: &mut BlockQ6K| {
                    b.d = to_scale(0.0005);
                    if case == 2 {
                        // The most negative scales with the largest levels.
                        b.scales = [-128; 16];
                    }
                });
                let bound = |i: usize| 0.0005 * 128.0 * 32.0 * x[i].d.abs();
                check_k(
                    &x,
                    bound,
                    scalar::q6_k::dot(&w, &x),
                    dot(&w, &x),
                    super::super::dotprod_supported().then(|| dot_dotprod(&w, &x)),
                    &format!("q6_k n={n} case={case}"),
                );
            }
        }
    }
}
