//! IQ2_XXS weights against Q8_K-quantised activations, and the lattice helpers every IQ1/IQ2/IQ3
//! file shares.
//!
//! Those formats are all multiplied the same way: the grid points of a 32-value sub-block looked up
//! one by one (scalar loads from the grid tables) and set into two registers, the signs applied to
//! the grid values (magnitudes below 64, so negating them is exact, where negating an activation of
//! -128 would not be), the products of each 16-value half summed exactly in `i32` ([`half_sums`]),
//! times the scales summed exactly ([`scaled_sum16`]). The reference sums the same integers, so the
//! one conversion per super-block and the float operations after it, written in its order, give its
//! result bit for bit.

use std::arch::aarch64::*;

use super::{lane_sums4, scale, scaled_sum8, I8Dot};
use crate::blocks::{BlockIq2Xxs, BlockQ8K, QK_K};
use crate::scalar::iq2_xxs::{ksigns, le_u32};
use crate::scalar::iq_grids::IQ2XXS_GRID;

super::q8k_dots!(BlockIq2Xxs);

/// The products of a super-block's weights and activations, summed per 16-value half: lane `j` of
/// `s[k]` is half `4k + j`. `w(ib32)` gives sub-block `ib32`'s 32 weights as `i8`. Exact: each sum
/// is at most 16 * 128 * 128 = 2^18 in magnitude.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
pub(super) unsafe fn half_sums<D: I8Dot>(
    q8: &[i8; QK_K],
    mut w: impl FnMut(usize) -> [int8x16_t; 2],
) -> [int32x4_t; 4] {
    let zero = vdupq_n_s32(0);
    let mut s = [zero; 4];
    for (k, s) in s.iter_mut().enumerate() {
        let mut p = [zero; 4];
        for (i, p) in p.chunks_exact_mut(2).enumerate() {
            let ib32 = 2 * k + i;
            let [w0, w1] = w(ib32);
            // SAFETY (loads): 32 of the 256 `i8` of `q8`, borrowed for the call.
            let x = q8.as_ptr().add(32 * ib32);
            p[0] = D::dot(zero, w0, vld1q_s8(x));
            p[1] = D::dot(zero, w1, vld1q_s8(x.add(16)));
        }
        *s = lane_sums4([p[0], p[1], p[2], p[3]]);
    }
    s
}

/// `sum_j s[j] * ls[j]` over the sixteen half sums of [`half_sums`] and their scales: exact where the
/// total of the magnitudes fits `i32` (the callers bound it).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the loads are.
#[inline(always)]
pub(super) unsafe fn scaled_sum16(s: [int32x4_t; 4], ls: &[i16; 16]) -> i32 {
    // SAFETY (loads): 8 + 8 `i16` of the 16 borrowed.
    let lo = scaled_sum8([s[0], s[1]], vld1q_s16(ls.as_ptr()));
    let hi = scaled_sum8([s[2], s[3]], vld1q_s16(ls.as_ptr().add(8)));
    vaddvq_s32(vaddq_s32(lo, hi))
}

/// The sixteen half scales of eight sub-block scales (each half takes its sub-block's).
#[inline(always)]
pub(super) fn per_half(ls: [i16; 8]) -> [i16; 16] {
    core::array::from_fn(|j| ls[j / 2])
}

/// `2 * ls + 1` for the sixteen 4-bit half scales of IQ2_XS and IQ2_S: the low nibble of
/// `scales[ib32]` for the first half of sub-block `ib32`, the high nibble for the second.
#[inline(always)]
pub(super) fn nibble_scales(scales: &[u8; QK_K / 32]) -> [i16; 16] {
    core::array::from_fn(|j| 2 * ((scales[j / 2] >> (4 * (j % 2))) & 0xf) as i16 + 1)
}

/// Four 8-byte grid points (as the grid tables hold them, little-endian) as 32 bytes.
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn grid8x4(g: [u64; 4]) -> [uint8x16_t; 2] {
    [
        vcombine_u8(vcreate_u8(g[0]), vcreate_u8(g[1])),
        vcombine_u8(vcreate_u8(g[2]), vcreate_u8(g[3])),
    ]
}

/// Eight 4-byte grid points as 32 bytes.
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn grid4x8(g: [u32; 8]) -> [uint8x16_t; 2] {
    let pair = |i: usize| g[i] as u64 | (g[i + 1] as u64) << 32;
    grid8x4([pair(0), pair(2), pair(4), pair(6)])
}

/// The four sign bytes of a sub-block's seven-bit sign indices (bits `7l..7l + 7` of `aux`, the
/// eighth sign their parity), as one word: value `k`'s sign is bit `k`.
#[inline(always)]
pub(super) fn ksigns32(aux: u32) -> u32 {
    u32::from_le_bytes([0, 1, 2, 3].map(|l| ksigns(aux, l)))
}

/// `grid` with value `k` negated where bit `k` of `signs` is set: `(g ^ m) - m`, `m` 0xff at the set
/// bits (`tbl` takes each value's byte of `signs`, `cmtst` its bit). Grid magnitudes are below 64,
/// so the results are exact in `i8`.
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn apply_signs(grid: [uint8x16_t; 2], signs: u32) -> [int8x16_t; 2] {
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(signs));
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    // Values 0..16 take bytes 0 and 1 of `signs`, values 16..32 bytes 2 and 3.
    let pick = [
        vcombine_u8(vdup_n_u8(0), vdup_n_u8(1)),
        vcombine_u8(vdup_n_u8(2), vdup_n_u8(3)),
    ];
    let sign = |g: uint8x16_t, pick: uint8x16_t| {
        let m = vtstq_u8(vqtbl1q_u8(bytes, pick), bit);
        vreinterpretq_s8_u8(vsubq_u8(veorq_u8(g, m), m))
    };
    [sign(grid[0], pick[0]), sign(grid[1], pick[1])]
}

/// ggml's `ggml_vec_dot_iq2_xxs_q8_K`: per super-block `(d_w * d_a) * sum (2 * ls + 1) * (grid *
/// sign . q_a)`, summed in order, times 1/8 at the end.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq2Xxs], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let mut ls = [0i16; 8];
        let s = half_sums::<D>(&y.qs, |ib32| {
            // Four grid indices, then four 7-bit sign indices with the scale on top.
            let idx = le_u32(&x.qs, 8 * ib32).to_le_bytes();
            let aux = le_u32(&x.qs, 8 * ib32 + 4);
            ls[ib32] = 2 * (aux >> 28) as i16 + 1;
            apply_signs(grid8x4(idx.map(|i| IQ2XXS_GRID[i as usize])), ksigns32(aux))
        });
        // |bsum| <= 256 * 43 * 128 * 31 < 2^26.
        let bsum = scaled_sum16(s, &per_half(ls));
        sumf += (scale(x.d) * y.d) * bsum as f32;
    }
    0.125 * sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_iq;
    use super::*;
    use crate::{scalar, DType};

    #[test]
    fn dot_paths_equal_reference() {
        check_iq(DType::IQ2_XXS, scalar::iq2_xxs::dot, dot, dot_dotprod);
    }
}
