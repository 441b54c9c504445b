//! Test inputs at the extremes: blocks for the products of the 32-value formats (the largest pair
//! sums of `vpmaddubsw`, the activation byte -128 that its sign tricks must survive), for the
//! two-block loops `q4_1::dot_min` and `q5_0::dot_signed` (scale 1 and small integer mins: every
//! partial sum is an exact small integer, so the kernels must equal the scalar reference bit for
//! bit); and values for the activation quantisers' rounding.

use std::fmt::Debug;

use crate::blocks::{to_scale, BlockQ8_0, BlockQ8_1, QK};

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

/// Rows for the activation quantisers: exact ties and their neighbours, halves, inexact scales,
/// huge, tiny, subnormal and infinite blocks, NaNs first, in the middle and last in a block, zeros
/// of both signs, and an ordinary row; 32 values a block.
fn quantizer_cases() -> Vec<f32> {
    let mut x = Vec::new();
    // amax 127 makes d = 1 and id = 1: x * id is x, so these are exact ties.
    let mut b: Vec<f32> = (0..31).map(|i| i as f32 * 8.0 - 120.5).collect();
    b.push(127.0);
    x.extend(&b);
    x.extend(b.iter().map(|v| -v));
    // Neighbours of ties.
    let mut b: Vec<f32> = (0..31)
        .map(|i| {
            let t = i as f32 * 4.0 - 60.5;
            if i % 2 == 0 {
                f32::from_bits(t.to_bits() + 1)
            } else {
                f32::from_bits(t.to_bits() - 1)
            }
        })
        .collect();
    b.push(-127.0);
    x.extend(&b);
    // Halves and their neighbours below one: 0.5, 0.49999997, 0.50000006.
    let mut b: Vec<f32> = (0..31)
        .map(|i| {
            let h = 0.5f32 + (i / 3) as f32;
            let h = if i % 2 == 0 { h } else { -h };
            match i % 3 {
                0 => h,
                1 => f32::from_bits(h.to_bits() - 1),
                _ => f32::from_bits(h.to_bits() + 1),
            }
        })
        .collect();
    b.push(127.0);
    x.extend(&b);
    // Inexact scales.
    x.extend((0..32).map(|i| (i as f32 - 16.0) * 0.05));
    x.extend((0..32).map(|i| (i as f32 - 3.0) * 1.7e5));
    // Subnormal and tiny blocks (id overflows to inf or d rounds to 0), huge and infinite ones.
    for &v in &[1e-45f32, 1e-43, 3e-39, 1e-38, 1e30, f32::MAX, f32::INFINITY] {
        x.extend((0..32).map(|i| match i % 5 {
            0 => v,
            1 => -v,
            2 => v * 0.5,
            3 => 0.0,
            _ => -v * 0.3,
        }));
    }
    // NaNs first, in the middle and last in a block, one beside an infinity.
    for at in [0usize, 3, 31] {
        let mut b: Vec<f32> = (0..32).map(|i| i as f32 - 10.3).collect();
        b[at] = f32::NAN;
        b[(at + 17) % 32] = -f32::NAN;
        if at == 3 {
            b[25] = f32::NEG_INFINITY;
        }
        x.extend(&b);
    }
    let mut b: Vec<f32> = (0..32).map(|i| i as f32 - 10.3).collect();
    b[20] = f32::NEG_INFINITY;
    x.extend(&b);
    x.extend([0f32; 32]);
    x.extend([-0.0f32; 32]);
    x.extend((0..32 * 64).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.0137));
    x
}

/// `quantize` gives the blocks `reference` gives on every row of [`quantizer_cases`].
pub(super) fn assert_quantizes_as<B: Clone + Debug + Default + PartialEq>(
    quantize: fn(&[f32], &mut [B]),
    reference: fn(&[f32], &mut [B]),
) {
    let x = quantizer_cases();
    let nb = x.len() / QK;
    let mut a = vec![B::default(); nb];
    let mut r = vec![B::default(); nb];
    quantize(&x, &mut a);
    reference(&x, &mut r);
    for (i, (a, r)) in a.iter().zip(&r).enumerate() {
        assert_eq!(a, r, "block {i}: {:?}", &x[i * QK..(i + 1) * QK]);
    }
}
