//! Q3_K weights against Q8_K-quantised activations, and the kernel Q6_K shares with it
//! ([`OffsetLevels`]).

use std::arch::aarch64::*;

use super::q2_k::planes;
use super::{bsums_dot16, lane_sums4, s8, scale, scaled_sum8, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ3K, BlockQ8K};

/// `sum d_w * d_a * (sc - 32) * sum(q_w * q_a)` over the super-blocks, `q_w` the 3-bit level
/// `q + 4 * h - 4` in -4..=3 (ggml's `ggml_vec_dot_q3_K_q8_K`), with base NEON: the unsigned levels
/// `q + 4 * h` multiplied as they are (`smull` + `sadalp`), the sixteen sub-block sums times their
/// 6-bit signed scales summed exactly in `i32`, the offset 4 taken off once per super-block as
/// `4 * sum_j sc[j] * bsums[j]` (the activations' `bsums` must be the sums of their quants, as the
/// quantiser writes them), then one float product per super-block. The reference sums in eight
/// float lanes instead, so results differ by float reassociation only.
pub fn dot(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen, _>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot, _>(w, a) }
}

/// The sixteen 6-bit scales minus 32, one per byte: scale `j`'s low 4 bits are the low (`j < 8`) or
/// high nibble of byte `j % 8`, its top 2 bits bits `2 * (j / 4)` of byte `8 + j % 4` (ggml's
/// `kmask` shuffle, a few word operations per super-block).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
unsafe fn scales(s: &[u8; 12]) -> int8x16_t {
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, t) = (w(0), w(1), w(2));
    let r0 = (a0 & LOW4) | ((t & LOW2) << 4);
    let r1 = (a1 & LOW4) | (((t >> 2) & LOW2) << 4);
    let r2 = ((a0 >> 4) & LOW4) | (((t >> 4) & LOW2) << 4);
    let r3 = ((a1 >> 4) & LOW4) | (((t >> 6) & LOW2) << 4);
    let lo = vcreate_u8(r0 as u64 | (r1 as u64) << 32);
    let hi = vcreate_u8(r2 as u64 | (r3 as u64) << 32);
    vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(lo, hi)), vdupq_n_s8(32))
}

/// The high bits of the four planes of a half, at bit 2 (4 or 0): bits 0..4 of `hm` (already
/// shifted down by 4 for the second half).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
unsafe fn high_bits(hm: uint8x16_t) -> [uint8x16_t; 4] {
    [
        vshlq_n_u8::<2>(vandq_u8(hm, vdupq_n_u8(1))),
        vshlq_n_u8::<1>(vandq_u8(hm, vdupq_n_u8(2))),
        vandq_u8(hm, vdupq_n_u8(4)),
        vshrq_n_u8::<1>(vandq_u8(hm, vdupq_n_u8(8))),
    ]
}

/// A super-block of sixteen 16-value sub-blocks with signed scales whose levels are unsigned bytes
/// less a fixed offset (Q3_K: `q + 4 * h - 4`; Q6_K: `q - 32`), what [`dot_blocks`] reads of it.
pub(super) trait OffsetLevels {
    /// What every level is less.
    const OFFSET: i32;
    /// What unpacking the levels of both halves reads once (Q3_K: `hmask`).
    type High;
    fn d(&self) -> [u8; 2];
    /// The sixteen scales, one per sub-block.
    ///
    /// # Safety
    /// None beyond NEON (baseline on aarch64); `unsafe` as the loads and intrinsics are.
    unsafe fn signed_scales(&self) -> int8x16_t;
    /// # Safety
    /// None beyond NEON (baseline on aarch64); `unsafe` as the loads and intrinsics are.
    unsafe fn high(&self) -> Self::High;
    /// The unsigned levels of half `n` (values `128n..128n + 128`), sixteen a vector in order.
    ///
    /// # Safety
    /// `n < 2`; beyond that NEON (baseline on aarch64); `unsafe` as the loads and intrinsics are.
    unsafe fn levels(&self, n: usize, h: &Self::High) -> [uint8x16_t; 8];
}

impl OffsetLevels for BlockQ3K {
    const OFFSET: i32 = 4;
    /// `hmask` in two halves.
    type High = [uint8x16_t; 2];
    #[inline(always)]
    fn d(&self) -> [u8; 2] {
        self.d
    }
    #[inline(always)]
    unsafe fn signed_scales(&self) -> int8x16_t {
        scales(&self.scales)
    }
    #[inline(always)]
    unsafe fn high(&self) -> [uint8x16_t; 2] {
        // SAFETY (loads): the 32 bytes of `hmask`, borrowed for the call.
        [
            vld1q_u8(self.hmask.as_ptr()),
            vld1q_u8(self.hmask.as_ptr().add(16)),
        ]
    }
    /// Value 32k + l (l < 32) of the half is plane k of qs[32n + l] with bit 4n + k of hmask[l]
    /// above it.
    #[inline(always)]
    unsafe fn levels(&self, n: usize, hm: &[uint8x16_t; 2]) -> [uint8x16_t; 8] {
        // SAFETY (loads): 32 of the 64 bytes of `qs` (`n < 2`), borrowed for the call.
        let q = self.qs.as_ptr().add(32 * n);
        let (q0, q1) = (planes(vld1q_u8(q)), planes(vld1q_u8(q.add(16))));
        let (h0, h1) = match n {
            0 => (high_bits(hm[0]), high_bits(hm[1])),
            _ => (
                high_bits(vshrq_n_u8::<4>(hm[0])),
                high_bits(vshrq_n_u8::<4>(hm[1])),
            ),
        };
        [
            vorrq_u8(q0[0], h0[0]),
            vorrq_u8(q1[0], h1[0]),
            vorrq_u8(q0[1], h0[1]),
            vorrq_u8(q1[1], h1[1]),
            vorrq_u8(q0[2], h0[2]),
            vorrq_u8(q1[2], h1[2]),
            vorrq_u8(q0[3], h0[3]),
            vorrq_u8(q1[3], h1[3]),
        ]
    }
}

/// The product of any [`OffsetLevels`] format (see [`dot`]).
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
pub(super) unsafe fn dot_blocks<D: I8Dot, B: OffsetLevels>(w: &[B], a: &[BlockQ8K]) -> f32 {
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        let sc = b.signed_scales();
        let sc = [vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc)];
        let h = b.high();
        let mut isum = zero;
        for (n, &sc) in sc.iter().enumerate() {
            let v = b.levels(n, &h);
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
        // Q3_K: |sum| <= 16 * 32 * 16 * 7 * 128 < 2^23 and |offset| <= 4 * 16 * 32 * 2048 = 2^22;
        // Q6_K: |sum| <= 16 * 128 * 16 * 63 * 128 < 2^28 and |offset| <= 32 * 16 * 128 * 2048 =
        // 2^27: exact in i32.
        let isum = vaddvq_s32(isum) - B::OFFSET * bsums_dot16(&y.bsums, sc);
        sumf += (scale(b.d()) * y.d) * isum as f32;
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
            for (case, x) in q8k_blocks(n, 13).into_iter().enumerate() {
                let w: Vec<BlockQ3K> = raw_blocks(n, 61 + case as u32, case, |b: &mut BlockQ3K| {
                    b.d = to_scale(0.003);
                    if case == 2 {
                        // Scales 0 - 32 (the most negative) with the level -4 (no bit set).
                        b.scales = [0; 12];
                        b.qs = [0; 64];
                        b.hmask = [0; 32];
                    }
                });
                let bound = |i: usize| 0.003 * 32.0 * 4.0 * x[i].d.abs();
                check_k(
                    &x,
                    bound,
                    scalar::q3_k::dot(&w, &x),
                    dot(&w, &x),
                    super::super::dotprod_supported().then(|| dot_dotprod(&w, &x)),
                    &format!("q3_k n={n} case={case}"),
                );
            }
        }
    }
}
