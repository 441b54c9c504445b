//! Test inputs at the extremes: blocks for the products of the 32-value formats (the largest pair
//! sums of `vpmaddubsw`, the activation byte -128 that its sign tricks must survive), for the
//! two-block loops `q4_1::dot_min` and `q5_0::dot_signed` (scale 1 and small integer mins: every
//! partial sum is an exact small integer, so the kernels must equal the scalar reference bit for
//! bit).

use crate::blocks::{to_scale, BlockQ8_0, BlockQ8_1};

/// Block counts with and without an odd last block (the loops' remainder).
pub(super) const BLOCK_COUNTS: [usize; 10] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 17];

/// The 32 levels (`0..2^bits`) of weight block `b` in element order: every level in turn, all the
/// largest (`b % 3 == 1`) or all 0 (`b % 3 == 2`). With [`acts`], which changes every 4 blocks,
/// 12 blocks pair every kind of weight block with every kind of activation block.
pub(super) fn levels(b: usize, bits: u32) -> [u8; 32] {
    let top = (1u8 << bits) - 1;
    std::array::from_fn(|j| match b % 3 {
        1 => top,
        2 => 0,
        _ => ((j * 7 + b * 5) % (1 << bits)) as u8,
    })
}

/// The low four bits of `q` as Q4_0's `qs` (value `j` in the low nibble of byte `j % 16` for
/// `j < 16`, in the high one for `j >= 16`).
pub(super) fn nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4)
}

/// The fifth bits of `q` as a Q5 block's little-endian `qh` (bit `j` for value `j`).
pub(super) fn fifth_bits(q: &[u8; 32]) -> [u8; 4] {
    let qh = (0..32).fold(0u32, |h, j| h | ((q[j] >> 4) as u32 & 1) << j);
    qh.to_le_bytes()
}

/// The min of weight block `b`: both signs, and zero.
pub(super) fn min(b: usize) -> [u8; 2] {
    to_scale([0.0, 1.0, -2.0, 0.5][b % 4])
}

/// The 32 activation quants of block `b`: -128, 127 and small values mixed, all -128
/// (`b % 4 == 2`) or all 127 (`b % 4 == 3`).
pub(super) fn acts(b: usize) -> [i8; 32] {
    std::array::from_fn(|j| match b % 4 {
        2 => -128,
        3 => 127,
        _ => [-128, 127, -127, 0, 1, -1][(j + b) % 6],
    })
}

/// `nb` Q8_0 blocks of [`acts`], scale 1.
pub(super) fn q8_0_blocks(nb: usize) -> Vec<BlockQ8_0> {
    (0..nb)
        .map(|b| BlockQ8_0 {
            d: to_scale(1.0),
            qs: acts(b),
        })
        .collect()
}

/// `nb` Q8_1 blocks of [`acts`], scale 1, with their sums.
pub(super) fn q8_1_blocks(nb: usize) -> Vec<BlockQ8_1> {
    (0..nb)
        .map(|b| {
            let qs = acts(b);
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            BlockQ8_1 {
                d: to_scale(1.0),
                s: to_scale(sum as f32),
                qs,
            }
        })
        .collect()
}
