//! Q5_K weights against Q8_K-quantised activations: Q4_K's kernel with a fifth bit per level.

use std::arch::aarch64::*;

use super::q4_k::{dot_blocks, Q4KLayout};
use super::{SDot, Widen};
use crate::blocks::{BlockQ5K, BlockQ8K, K_SCALE_SIZE, QK_K};

/// `sum d_w * d_a * sc * sum(q_w * q_a) - dmin_w * d_a * m * sum(q_a)` (ggml's
/// `ggml_vec_dot_q5_K_q8_K`) with base NEON, computed as Q4_K's (`super::q4_k::dot`: exact integer
/// sums per super-block, the mins' term from the activations' `bsums`, then two float products),
/// so it differs from the scalar reference by float reassociation only.
pub fn dot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen, _>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot, _>(w, a) }
}

impl Q4KLayout for BlockQ5K {
    /// `qh` in two halves, shifted down two bits a step: bit 2j of `qh[l]` is the fifth bit of value
    /// 64j + l, bit 2j + 1 that of value 64j + 32 + l.
    type High = [uint8x16_t; 2];
    #[inline(always)]
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE], &[u8; QK_K / 2]) {
        (self.d, self.dmin, &self.scales, &self.qs)
    }
    #[inline(always)]
    unsafe fn high(&self) -> [uint8x16_t; 2] {
        // SAFETY (loads): the 32 bytes of `qh`, borrowed for the call.
        [
            vld1q_u8(self.qh.as_ptr()),
            vld1q_u8(self.qh.as_ptr().add(16)),
        ]
    }
    /// Low nibble with bit 0 of qh at bit 4 (`sli` keeps the nibble, inserts the bit); high nibble
    /// with bit 1 of qh at bit 4 (`sri` keeps that bit, inserts the nibble).
    #[inline(always)]
    unsafe fn levels([q0, q1]: [uint8x16_t; 2], h: &mut [uint8x16_t; 2]) -> [uint8x16_t; 4] {
        let one = vdupq_n_u8(1);
        let two = vdupq_n_u8(2);
        let [qh0, qh1] = *h;
        let l0 = vsliq_n_u8::<4>(q0, vandq_u8(qh0, one));
        let l1 = vsliq_n_u8::<4>(q1, vandq_u8(qh1, one));
        let h0 = vsriq_n_u8::<4>(vshlq_n_u8::<3>(vandq_u8(qh0, two)), q0);
        let h1 = vsriq_n_u8::<4>(vshlq_n_u8::<3>(vandq_u8(qh1, two)), q1);
        *h = [vshrq_n_u8::<2>(qh0), vshrq_n_u8::<2>(qh1)];
        [l0, l1, h0, h1]
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
            for (case, x) in q8k_blocks(n, 8).into_iter().enumerate() {
                let w: Vec<BlockQ5K> = raw_blocks(n, 21 + case as u32, case, |b: &mut BlockQ5K| {
                    b.d = to_scale(0.004);
                    b.dmin = to_scale(0.003);
                });
                let bound = |i: usize| (0.004 * 63.0 * 31.0 + 0.003 * 63.0) * x[i].d.abs();
                check_k(
                    &x,
                    bound,
                    scalar::q5_k::dot(&w, &x),
                    dot(&w, &x),
                    super::super::dotprod_supported().then(|| dot_dotprod(&w, &x)),
                    &format!("q5_k n={n} case={case}"),
                );
            }
        }
    }
}
