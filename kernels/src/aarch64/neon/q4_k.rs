//! Q4_K weights against Q8_K-quantised activations, and what Q5_K shares with it (the unpacked
//! 6-bit scales and mins, the mins' term).

use std::arch::aarch64::*;

use super::{lane_sums4, s8, scale, scaled_sum8, widen_u8, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ4K, BlockQ8K, K_SCALE_SIZE};

/// `sum d_w * d_a * sc * sum(q_w * q_a) - dmin_w * d_a * m * sum(q_a)` over the super-blocks
/// (ggml's `ggml_vec_dot_q4_K_q8_K`) with base NEON: per super-block the eight sub-block sums of
/// `q_w * q_a` exact in `i32` (`smull` + `sadalp`), times their 6-bit scales, summed exactly; the
/// mins' term from the activations' `bsums` (which must be the sums of their quants, as the
/// quantiser writes them; the scalar reference reads them too); then two float products per
/// super-block. The reference sums in eight float lanes instead, so results differ by float
/// reassociation only.
pub fn dot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// The 6-bit scales and mins of the eight sub-blocks (ggml's `get_scale_min_k4` for `j` in 0..8),
/// one per byte, little-endian: `(scales, mins)`. Sub-blocks 0..4 are the low 6 bits of bytes
/// 0..4 (scales) and 4..8 (mins); 4..8 take their low 4 bits from the nibbles of bytes 8..12 and
/// their top 2 from the top bits of bytes 0..4 (scales) and 4..8 (mins). A few word operations per
/// super-block.
#[inline(always)]
pub(super) fn scales_mins(s: &[u8; K_SCALE_SIZE]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (w0, w1, w2) = (w(0), w(1), w(2));
    let sc_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let m_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    (
        (w0 & LOW6) as u64 | (sc_hi as u64) << 32,
        (w1 & LOW6) as u64 | (m_hi as u64) << 32,
    )
}

/// `sum_j m[j] * (bsums[2j] + bsums[2j + 1])`: the mins' term of a super-block of eight 32-value
/// sub-blocks, exact (pairs of sums of 16 quants fit `i16`, each product and the total `i32`).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the loads are.
#[inline(always)]
pub(super) unsafe fn mins_dot(a: &BlockQ8K, mins: int16x8_t) -> i32 {
    // SAFETY (loads): 8 + 8 `i16` of the 16 `bsums` of a block borrowed for the call.
    let b = a.bsums.as_ptr();
    let pairs = vpaddq_s16(vld1q_s16(b), vld1q_s16(b.add(8)));
    let p = vmull_s16(vget_low_s16(pairs), vget_low_s16(mins));
    vaddvq_s32(vmlal_high_s16(p, pairs, mins))
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let low = vdupq_n_u8(0x0f);
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        let (sc, m) = scales_mins(&b.scales);
        // p[2j]: sub-block 2j (the low nibbles of qs[32j..32j + 32]); p[2j + 1]: the high nibbles.
        let mut p = [zero; 8];
        for j in 0..4 {
            // SAFETY (loads): 32 of the 128 bytes of `b.qs` and 64 of the 256 `i8` of `y.qs`, both
            // borrowed for the call; byte pointers need no alignment.
            let q = b.qs.as_ptr().add(32 * j);
            let (q0, q1) = (vld1q_u8(q), vld1q_u8(q.add(16)));
            let x = y.qs.as_ptr().add(64 * j);
            let (x0, x1) = (vld1q_s8(x), vld1q_s8(x.add(16)));
            let (x2, x3) = (vld1q_s8(x.add(32)), vld1q_s8(x.add(48)));
            let (l0, l1) = (vandq_u8(q0, low), vandq_u8(q1, low));
            let (h0, h1) = (vshrq_n_u8::<4>(q0), vshrq_n_u8::<4>(q1));
            p[2 * j] = D::dot(D::dot(zero, s8(l0), x0), s8(l1), x1);
            p[2 * j + 1] = D::dot(D::dot(zero, s8(h0), x2), s8(h1), x3);
        }
        let s = [
            lane_sums4([p[0], p[1], p[2], p[3]]),
            lane_sums4([p[4], p[5], p[6], p[7]]),
        ];
        // |sum| <= 8 * 63 * 32 * 15 * 128 < 2^25: exact in i32.
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
    fn scales_mins_match_reference() {
        for seed in 0..200u32 {
            let s: [u8; K_SCALE_SIZE] =
                core::array::from_fn(|i| (seed.wrapping_mul(2_654_435_761) >> (i % 25)) as u8);
            let (sc, m) = scales_mins(&s);
            for j in 0..8 {
                let want = scalar::q4_k::get_scale_min_k4(j, &s);
                assert_eq!(
                    ((sc >> (8 * j)) as u8, (m >> (8 * j)) as u8),
                    want,
                    "{s:?} j={j}"
                );
            }
        }
    }

    #[test]
    fn dot_paths_match_reference() {
        for n in [0, 1, 2, 3, 5, 8] {
            for (case, x) in q8k_blocks(n, 7).into_iter().enumerate() {
                let w: Vec<BlockQ4K> = raw_blocks(n, 11 + case as u32, case, |b: &mut BlockQ4K| {
                    b.d = to_scale(0.01);
                    b.dmin = to_scale(0.002);
                });
                // Bound on |d_w d_a| (sc q) (q_a) and |dmin_w d_a| m (q_a) per value.
                let bound = |i: usize| (0.01 * 63.0 * 15.0 + 0.002 * 63.0) * x[i].d.abs();
                check_k(
                    &x,
                    bound,
                    scalar::q4_k::dot(&w, &x),
                    dot(&w, &x),
                    super::super::dotprod_supported().then(|| dot_dotprod(&w, &x)),
                    &format!("q4_k n={n} case={case}"),
                );
            }
        }
    }
}
