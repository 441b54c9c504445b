//! Q5_K weights against Q8_K-quantised activations: Q4_K's kernel with a fifth bit per level.

use std::arch::aarch64::*;

use super::q4_k::{mins_dot, scales_mins};
use super::{lane_sums4, s8, scale, scaled_sum8, widen_u8, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ5K, BlockQ8K};

/// `sum d_w * d_a * sc * sum(q_w * q_a) - dmin_w * d_a * m * sum(q_a)` (ggml's
/// `ggml_vec_dot_q5_K_q8_K`) with base NEON, computed as Q4_K's (`super::q4_k::dot`: exact integer
/// sums per super-block, the mins' term from the activations' `bsums`, then two float products),
/// so it differs from the scalar reference by float reassociation only.
pub fn dot(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
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
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let one = vdupq_n_u8(1);
    let two = vdupq_n_u8(2);
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        let (sc, m) = scales_mins(&b.scales);
        // SAFETY (loads): the 32 bytes of `b.qh`, borrowed for the call.
        let (mut qh0, mut qh1) = (vld1q_u8(b.qh.as_ptr()), vld1q_u8(b.qh.as_ptr().add(16)));
        // p[2j]: sub-block 2j (the low nibbles of qs[32j..32j + 32], fifth bits in bit 2j of qh);
        // p[2j + 1]: the high nibbles (bit 2j + 1).
        let mut p = [zero; 8];
        for j in 0..4 {
            // SAFETY (loads): 32 of the 128 bytes of `b.qs` and 64 of the 256 `i8` of `y.qs`, both
            // borrowed for the call; byte pointers need no alignment.
            let q = b.qs.as_ptr().add(32 * j);
            let (q0, q1) = (vld1q_u8(q), vld1q_u8(q.add(16)));
            let x = y.qs.as_ptr().add(64 * j);
            let (x0, x1) = (vld1q_s8(x), vld1q_s8(x.add(16)));
            let (x2, x3) = (vld1q_s8(x.add(32)), vld1q_s8(x.add(48)));
            // Low nibble with bit 0 of qh at bit 4 (`sli` keeps the nibble, inserts the bit);
            // high nibble with bit 1 of qh at bit 4 (`sri` keeps that bit, inserts the nibble).
            let l0 = vsliq_n_u8::<4>(q0, vandq_u8(qh0, one));
            let l1 = vsliq_n_u8::<4>(q1, vandq_u8(qh1, one));
            let h0 = vsriq_n_u8::<4>(vshlq_n_u8::<3>(vandq_u8(qh0, two)), q0);
            let h1 = vsriq_n_u8::<4>(vshlq_n_u8::<3>(vandq_u8(qh1, two)), q1);
            (qh0, qh1) = (vshrq_n_u8::<2>(qh0), vshrq_n_u8::<2>(qh1));
            p[2 * j] = D::dot(D::dot(zero, s8(l0), x0), s8(l1), x1);
            p[2 * j + 1] = D::dot(D::dot(zero, s8(h0), x2), s8(h1), x3);
        }
        let s = [
            lane_sums4([p[0], p[1], p[2], p[3]]),
            lane_sums4([p[4], p[5], p[6], p[7]]),
        ];
        // |sum| <= 8 * 63 * 32 * 31 * 128 < 2^26: exact in i32.
        let isum = vaddvq_s32(scaled_sum8(s, widen_u8(vcreate_u8(sc))));
        let imin = mins_dot(y, widen_u8(vcreate_u8(m)));
        sumf += (scale(b.d) * y.d) * isum as f32 - (scale(b.dmin) * y.d) * imin as f32;
    }
    sumf
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
