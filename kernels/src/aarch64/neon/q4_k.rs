//! Q4_K weights against Q8_K-quantised activations, and the kernel Q5_K shares with it
//! ([`Q4KLayout`]).

use std::arch::aarch64::*;

use super::{lane_sums4, s8, scale, scaled_sum8, widen_u8, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ4K, BlockQ8K, K_SCALE_SIZE, QK_K};

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
    unsafe { dot_blocks::<Widen, _>(w, a) }
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
    unsafe { dot_blocks::<SDot, _>(w, a) }
}

/// The 6-bit scales and mins of the eight sub-blocks (ggml's `get_scale_min_k4` for `j` in 0..8),
/// one per byte, little-endian: `(scales, mins)`. Sub-blocks 0..4 are the low 6 bits of bytes
/// 0..4 (scales) and 4..8 (mins); 4..8 take their low 4 bits from the nibbles of bytes 8..12 and
/// their top 2 from the top bits of bytes 0..4 (scales) and 4..8 (mins). A few word operations per
/// super-block.
#[inline(always)]
fn scales_mins(s: &[u8; K_SCALE_SIZE]) -> (u64, u64) {
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
unsafe fn mins_dot(a: &BlockQ8K, mins: int16x8_t) -> i32 {
    // SAFETY (loads): 8 + 8 `i16` of the 16 `bsums` of a block borrowed for the call.
    let b = a.bsums.as_ptr();
    let pairs = vpaddq_s16(vld1q_s16(b), vld1q_s16(b.add(8)));
    let p = vmull_s16(vget_low_s16(pairs), vget_low_s16(mins));
    vaddvq_s32(vmlal_high_s16(p, pairs, mins))
}

/// A super-block with Q4_K's layout, what [`dot_blocks`] reads of it: f16 `d` and `dmin`, the packed
/// 6-bit scales and mins, and the low four bits of the 256 levels in `qs` (byte `l` of 32-byte step
/// `j` holds value `64j + l` in its low nibble and `64j + 32 + l` in its high one). Q4_K's levels
/// are those nibbles; Q5_K adds a fifth bit from `qh`.
pub(super) trait Q4KLayout {
    /// What unpacking the levels carries from one 64-value step to the next (Q5_K: its `qh`).
    type High;
    /// `(d, dmin, scales, qs)`.
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE], &[u8; QK_K / 2]);
    /// The state [`Self::levels`] starts a super-block with.
    ///
    /// # Safety
    /// None beyond NEON (baseline on aarch64); `unsafe` as the loads and intrinsics are.
    unsafe fn high(&self) -> Self::High;
    /// The unsigned levels (below 32) of one step from its 32 bytes of `qs` (`q`, two halves):
    /// `[l0, l1, h0, h1]`, values `64j + 0..16`, `64j + 16..32`, `64j + 32..48`, `64j + 48..64`;
    /// `h` moves on to the next step.
    ///
    /// # Safety
    /// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are.
    unsafe fn levels(q: [uint8x16_t; 2], h: &mut Self::High) -> [uint8x16_t; 4];
}

impl Q4KLayout for BlockQ4K {
    type High = ();
    #[inline(always)]
    fn parts(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE], &[u8; QK_K / 2]) {
        (self.d, self.dmin, &self.scales, &self.qs)
    }
    #[inline(always)]
    unsafe fn high(&self) {}
    /// The low and the high nibbles.
    #[inline(always)]
    unsafe fn levels([q0, q1]: [uint8x16_t; 2], _: &mut ()) -> [uint8x16_t; 4] {
        let low = vdupq_n_u8(0x0f);
        [
            vandq_u8(q0, low),
            vandq_u8(q1, low),
            vshrq_n_u8::<4>(q0),
            vshrq_n_u8::<4>(q1),
        ]
    }
}

/// The product of any [`Q4KLayout`] format (see [`dot`]).
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
pub(super) unsafe fn dot_blocks<D: I8Dot, B: Q4KLayout>(w: &[B], a: &[BlockQ8K]) -> f32 {
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        let (d, dmin, scales, qs) = b.parts();
        let (sc, m) = scales_mins(scales);
        let mut h = b.high();
        // p[2j]: sub-block 2j (values 64j..64j + 32); p[2j + 1]: sub-block 2j + 1.
        let mut p = [zero; 8];
        for j in 0..4 {
            // SAFETY (loads): 32 of the 128 bytes of `b.qs` and 64 of the 256 `i8` of `y.qs`, both
            // borrowed for the call; byte pointers need no alignment.
            let q = qs.as_ptr().add(32 * j);
            let [l0, l1, h0, h1] = B::levels([vld1q_u8(q), vld1q_u8(q.add(16))], &mut h);
            let x = y.qs.as_ptr().add(64 * j);
            let (x0, x1) = (vld1q_s8(x), vld1q_s8(x.add(16)));
            let (x2, x3) = (vld1q_s8(x.add(32)), vld1q_s8(x.add(48)));
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
        sumf += (scale(d) * y.d) * isum as f32 - (scale(dmin) * y.d) * imin as f32;
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
