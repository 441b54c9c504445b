//! Q2_K weights against Q8_K-quantised activations, and the 2-bit planes Q3_K shares.

use std::arch::aarch64::*;

use super::{bsums_dot16, lane_sums4, s8, scale, scaled_sum8, widen_u8, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ2K, BlockQ8K};

/// `sum d_a * d_w * (sc & 15) * sum(q_w * q_a) - d_a * dmin_w * (sc >> 4) * sum(q_a)` over the
/// super-blocks (ggml's `ggml_vec_dot_q2_K_q8_K`) with base NEON: the sixteen sub-block sums exact
/// in `i32` (`smull` + `sadalp`) times their 4-bit scales, the mins' term from the activations'
/// `bsums` (as the reference), then the reference's two float products per super-block in its
/// order: bit-identical to `scalar::q2_k::dot`.
pub fn dot(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// The four 2-bit planes of 16 bytes: bits 0-1, 2-3, 4-5 and 6-7 of each, as values 0..4.
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn planes(q: uint8x16_t) -> [uint8x16_t; 4] {
    let three = vdupq_n_u8(3);
    [
        vandq_u8(q, three),
        vandq_u8(vshrq_n_u8::<2>(q), three),
        vandq_u8(vshrq_n_u8::<4>(q), three),
        vshrq_n_u8::<6>(q),
    ]
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        // SAFETY (load): the 16 scale bytes of `b`, borrowed for the call.
        let sm = vld1q_u8(b.scales.as_ptr());
        let (sc, m) = (vandq_u8(sm, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(sm));
        let sc = [widen_u8(vget_low_u8(sc)), widen_u8(vget_high_u8(sc))];
        let m = [widen_u8(vget_low_u8(m)), widen_u8(vget_high_u8(m))];
        let mut isum = zero;
        for (n, &sc) in sc.iter().enumerate() {
            // One 128-value half, qs[32n..32n + 32]: value 32k + l (l < 32) is plane k of qs[l];
            // sub-block 2k + l / 16.
            // SAFETY (loads): 32 of the 64 bytes of `b.qs`, borrowed for the call.
            let q = b.qs.as_ptr().add(32 * n);
            let (q0, q1) = (planes(vld1q_u8(q)), planes(vld1q_u8(q.add(16))));
            // SAFETY (loads): 128 of the 256 `i8` of `y.qs`, borrowed for the call.
            let x = y.qs.as_ptr().add(128 * n);
            let mut p = [zero; 8];
            for (k, (&v0, &v1)) in q0.iter().zip(&q1).enumerate() {
                p[2 * k] = D::dot(zero, s8(v0), vld1q_s8(x.add(32 * k)));
                p[2 * k + 1] = D::dot(zero, s8(v1), vld1q_s8(x.add(32 * k + 16)));
            }
            let s = [
                lane_sums4([p[0], p[1], p[2], p[3]]),
                lane_sums4([p[4], p[5], p[6], p[7]]),
            ];
            isum = vaddq_s32(isum, scaled_sum8(s, sc));
        }
        // |isum| <= 16 * 15 * 16 * 3 * 128 < 2^21: exact in i32; the reference's float operations.
        let isum = vaddvq_s32(isum);
        let summs = bsums_dot16(&y.bsums, m);
        let dall = y.d * scale(b.d);
        let dmin = y.d * scale(b.dmin);
        sumf += dall * isum as f32 - dmin * summs as f32;
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
            for (case, x) in q8k_blocks(n, 12).into_iter().enumerate() {
                let w: Vec<BlockQ2K> = raw_blocks(n, 51 + case as u32, case, |b: &mut BlockQ2K| {
                    b.d = to_scale(0.01);
                    b.dmin = to_scale(0.005);
                });
                let want = scalar::q2_k::dot(&w, &x);
                let got = dot(&w, &x);
                assert_eq!(got.to_bits(), want.to_bits(), "n={n} case={case}");
                let bound = |i: usize| (0.01 * 15.0 * 3.0 + 0.005 * 15.0) * x[i].d.abs();
                check_k(
                    &x,
                    bound,
                    want,
                    got,
                    super::super::dotprod_supported().then(|| dot_dotprod(&w, &x)),
                    &format!("q2_k n={n} case={case}"),
                );
            }
        }
    }
}
