//! Q6_K weights against Q8_K-quantised activations.

use std::arch::aarch64::*;

use super::{bsums_dot16, lane_sums4, s8, scale, scaled_sum8, I8Dot, SDot, Widen};
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
    unsafe { dot_blocks::<Widen>(w, a) }
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
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let three = vdupq_n_u8(3);
    let bits45 = vdupq_n_u8(0x30);
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        // SAFETY (loads): the 16 `i8` scales of `b`, borrowed for the call.
        let sc = vld1q_s8(b.scales.as_ptr());
        let sc = [vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc)];
        let mut isum = zero;
        for (n, &sc) in sc.iter().enumerate() {
            // One 128-value half: ql[64n..64n + 64], qh[32n..32n + 32]; value i + 32k (i < 32)
            // has its low 4 bits in the low (k = 0, 1) or high (k = 2, 3) nibble of
            // ql[i + 32 * (k % 2)] and its top 2 bits at bit 2k of qh[i].
            // SAFETY (loads): 64 of the 128 bytes of `b.ql`, 32 of the 64 of `b.qh`, borrowed for
            // the call; byte pointers need no alignment.
            let ql = b.ql.as_ptr().add(64 * n);
            let (l0, l1) = (vld1q_u8(ql), vld1q_u8(ql.add(16)));
            let (l2, l3) = (vld1q_u8(ql.add(32)), vld1q_u8(ql.add(48)));
            let qh = b.qh.as_ptr().add(32 * n);
            let (h0, h1) = (vld1q_u8(qh), vld1q_u8(qh.add(16)));
            let (g0, g1) = (vshrq_n_u8::<2>(h0), vshrq_n_u8::<2>(h1));
            // The levels 0..64 of the eight sub-blocks of 16: `sli` inserts the top bits above a
            // low nibble, `sri` a high nibble below top bits already at bits 4 and 5.
            let v = [
                vsliq_n_u8::<4>(l0, vandq_u8(h0, three)),
                vsliq_n_u8::<4>(l1, vandq_u8(h1, three)),
                vsliq_n_u8::<4>(l2, vandq_u8(g0, three)),
                vsliq_n_u8::<4>(l3, vandq_u8(g1, three)),
                vsriq_n_u8::<4>(vandq_u8(h0, bits45), l0),
                vsriq_n_u8::<4>(vandq_u8(h1, bits45), l1),
                vsriq_n_u8::<4>(g0, l2),
                vsriq_n_u8::<4>(g1, l3),
            ];
            // SAFETY (loads): 128 of the 256 `i8` of `y.qs`, borrowed for the call.
            let x = y.qs.as_ptr().add(128 * n);
            let mut p = [zero; 8];
            for (k, (p, &v)) in p.iter_mut().zip(&v).enumerate() {
                *p = D::dot(zero, s8(v), vld1q_s8(x.add(16 * k)));
            }
            let s = [
                lane_sums4([p[0], p[1], p[2], p[3]]),
                lane_sums4([p[4], p[5], p[6], p[7]]),
            ];
            isum = vaddq_s32(isum, scaled_sum8(s, sc));
        }
        // |sum| <= 16 * 128 * 16 * 63 * 128 < 2^28 and |offset| <= 32 * 16 * 128 * 2048 = 2^27:
        // exact in i32.
        let isum = vaddvq_s32(isum) - 32 * bsums_dot16(&y.bsums, sc);
        sumf += (scale(b.d) * y.d) * isum as f32;
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
