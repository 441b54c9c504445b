//! IQ4_XS weights against Q8_K-quantised activations, and the grid lookup IQ4_NL shares.

use std::arch::aarch64::*;

use super::{lane_sums4, scale, scaled_sum8, I8Dot, SDot, Widen};
use crate::blocks::{BlockIq4Xs, BlockQ8K, KVALUES_IQ4NL};

/// `sum d_w * d_a * (ls - 32) * sum(grid[q_w] * q_a)` over the 32-value blocks of the super-blocks
/// (ggml's `ggml_vec_dot_iq4_xs_q8_K`) with base NEON: the 4-bit indices looked up in the grid
/// (`tbl`), the eight block sums exact in `i32` (`smull` + `sadalp`), times their 6-bit scales
/// summed exactly, then one float product per super-block. The reference adds one float product
/// per 32-value block instead, so results differ by float reassociation only.
pub fn dot(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// The IQ4_NL grid in one register, for `tbl`.
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the loads are.
#[inline(always)]
pub(super) unsafe fn grid() -> int8x16_t {
    // SAFETY (load): the 16 `i8` of the grid.
    vld1q_s8(KVALUES_IQ4NL.as_ptr())
}

/// The grid values of the low and high nibbles of `q` (indices 0..16, so `tbl` never reads past the
/// table).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn lookup(grid: int8x16_t, q: uint8x16_t) -> (int8x16_t, int8x16_t) {
    (
        vqtbl1q_s8(grid, vandq_u8(q, vdupq_n_u8(0x0f))),
        vqtbl1q_s8(grid, vshrq_n_u8::<4>(q)),
    )
}

/// The eight 6-bit block scales minus 32, in -32..=31: block `j`'s low 4 bits are nibble `j % 2` of
/// `scales_l[j / 2]`, its top 2 bits bits `2j..2j + 2` of the little-endian `scales_h`.
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the loads are.
#[inline(always)]
unsafe fn block_scales(b: &BlockIq4Xs) -> int16x8_t {
    const SHIFTS: [i16; 8] = [0, -2, -4, -6, -8, -10, -12, -14];
    let h = vdupq_n_u16(u16::from_le_bytes(b.scales_h));
    // SAFETY (load): the eight `i16` of `SHIFTS`.
    let hi = vandq_u16(vshlq_u16(h, vld1q_s16(SHIFTS.as_ptr())), vdupq_n_u16(3));
    let l = vcreate_u8(u32::from_le_bytes(b.scales_l) as u64);
    // [b0 & 15, b0 >> 4, b1 & 15, b1 >> 4, ...]
    let lo = vzip1_u8(vand_u8(l, vdup_n_u8(0x0f)), vshr_n_u8::<4>(l));
    let ls = vorrq_u16(vmovl_u8(lo), vshlq_n_u16::<4>(hi));
    vsubq_s16(vreinterpretq_s16_u16(ls), vdupq_n_s16(32))
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq4Xs], a: &[BlockQ8K]) -> f32 {
    let grid = grid();
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (b, y) in w.iter().zip(a) {
        // p[j]: block j, values 0..16 from the low nibbles of qs[16j..16j + 16], 16..32 the high.
        let mut p = [zero; 8];
        for (j, p) in p.iter_mut().enumerate() {
            // SAFETY (loads): 16 of the 128 bytes of `b.qs` and 32 of the 256 `i8` of `y.qs`, both
            // borrowed for the call; byte pointers need no alignment.
            let (lo, hi) = lookup(grid, vld1q_u8(b.qs.as_ptr().add(16 * j)));
            let x = y.qs.as_ptr().add(32 * j);
            *p = D::dot(D::dot(zero, lo, vld1q_s8(x)), hi, vld1q_s8(x.add(16)));
        }
        let s = [
            lane_sums4([p[0], p[1], p[2], p[3]]),
            lane_sums4([p[4], p[5], p[6], p[7]]),
        ];
        // |sum| <= 8 * 32 * 32 * 127 * 128 < 2^28: exact in i32.
        let isum = vaddvq_s32(scaled_sum8(s, block_scales(b)));
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
            for (case, x) in q8k_blocks(n, 10).into_iter().enumerate() {
                let w: Vec<BlockIq4Xs> =
                    raw_blocks(n, 41 + case as u32, case, |b: &mut BlockIq4Xs| {
                        b.d = to_scale(0.002);
                        if case == 2 {
                            // Scales 0 - 32 (the most negative) with index 0 (-127).
                            b.scales_h = [0; 2];
                            b.scales_l = [0; 4];
                            b.qs = [0; 128];
                        }
                    });
                let bound = |i: usize| 0.002 * 32.0 * 127.0 * x[i].d.abs();
                check_k(
                    &x,
                    bound,
                    scalar::iq4_xs::dot(&w, &x),
                    dot(&w, &x),
                    super::super::dotprod_supported().then(|| dot_dotprod(&w, &x)),
                    &format!("iq4_xs n={n} case={case}"),
                );
            }
        }
    }
}
