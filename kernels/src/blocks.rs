//! GGML's quantisation blocks, byte-identical to the `block_*` structs of ggml (`ggml-common.h`), so
//! tensors of GGUF files can be used in place: the 32-value legacy blocks, the 256-value K-quant
//! super-blocks, the IQ4 non-linear ones, the IQ1/IQ2/IQ3 lattice ones (their grids in
//! `scalar::iq_grids`), and the Q8 activation blocks products quantise to.
//!
//! f16 scales (and ggml's `uint16_t` fields of the IQ blocks) are stored as little-endian bytes
//! rather than integers, which makes the weight blocks' alignment 1: a row of blocks can be viewed
//! in place at any byte offset of a file. (Q8_K, an activation block that only lives in our own
//! buffers, keeps ggml's `f32` and `i16` fields.)

/// Values per block.
pub const QK: usize = 32;

/// Q8_0: `x[i] = d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, IEEE f16, little-endian.
    pub d: [u8; 2],
    pub qs: [i8; QK],
}

/// Q4_0: `x[i] = d * (q[i] - 8)`, with `q[i]` in the low nibble of `qs[i]` for `i < 16` and in the
/// high nibble of `qs[i - 16]` for `i >= 16`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, IEEE f16, little-endian.
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}

/// Values per K-quant super-block (`QK_K`).
pub const QK_K: usize = 256;

/// Bytes of the packed 6-bit scales and mins of Q4_K and Q5_K (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// Q4_1: `x[i] = d * q[i] + m`, nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}

/// Q5_0: `x[i] = d * (q[i] - 16)`, the low 4 bits as Q4_0's nibbles, bit 4 of value i in bit i of
/// the little-endian `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// Q5_1: `x[i] = d * q[i] + m`, 5-bit `q` as in Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// Q8_1, the activations of Q4_1 and Q5_1 products: Q8_0 plus `s = d * sum(qs)` (as f16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; QK],
}

/// Q2_K: 16 sub-blocks of 16 values, `x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4)`, 2-bit `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}

/// Q3_K: 16 sub-blocks of 16 values, 3-bit `q` (low 2 bits in `qs`, the high bit in `hmask`), 6-bit
/// signed scales packed in `scales`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}

/// Q4_K: 8 sub-blocks of 32 values, `x = d * sc[j] * q - dmin * m[j]`, 6-bit `sc`/`m` packed in
/// `scales`, 4-bit `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: Q4_K with a fifth bit of each `q` in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: 16 sub-blocks of 16 values, `x = d * scales[j] * (q - 32)`, 6-bit `q` (low 4 bits in `ql`,
/// high 2 in `qh`), 8-bit signed scales.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}

/// Q8_K, the activations of K-quant and IQ4_XS products: 256 `i8` with an `f32` scale and the sums
/// of each 16 values.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// IQ4_NL: `x[i] = d * KVALUES_IQ4NL[q[i]]`, nibbles as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq4Nl {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}

/// IQ4_XS: 8 sub-blocks of 32 values, `x = d * (ls[j] - 32) * KVALUES_IQ4NL[q]`, 6-bit `ls` (low 4
/// bits in `scales_l`, high 2 in the little-endian `scales_h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq4Xs {
    pub d: [u8; 2],
    pub scales_h: [u8; 2],
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

/// The non-linear 4-bit grid of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ3_XXS: 8 sub-blocks of 32 values, each 8 groups of 4 magnitudes from `IQ3XXS_GRID` (one byte
/// each in `qs[..64]`), then per sub-block a little-endian `u32` in `qs[64..]`: four 7-bit sign
/// indices (`KSIGNS_IQ2XS`) and a 4-bit scale `ls` on top, `x = d * (0.5 + ls) * 0.5 * grid * sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq3Xxs {
    pub d: [u8; 2],
    pub qs: [u8; 3 * QK_K / 8],
}

/// IQ3_S: 8 sub-blocks of 32, groups of 4 magnitudes from `IQ3S_GRID` (9-bit indices: the low 8
/// bits in `qs`, the ninth in `qh`), one sign bit per value in `signs`, 4-bit scales per sub-block
/// (two to a byte of `scales`): `x = d * (1 + 2 * ls) * grid * sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq3S {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub signs: [u8; QK_K / 8],
    pub scales: [u8; QK_K / 64],
}

/// IQ2_XXS: 8 sub-blocks of 32, each two little-endian `u32` in `qs` (ggml's 32 `uint16_t`): the
/// first holds four 8-bit indices into `IQ2XXS_GRID` (8 magnitudes each), the second four 7-bit
/// sign indices and a 4-bit scale on top: `x = d * (0.5 + ls) * 0.25 * grid * sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq2Xxs {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
}

/// IQ2_XS: 32 little-endian `u16` in `qs`, each a 9-bit index into `IQ2XS_GRID` and a 7-bit sign
/// index above it, and a 4-bit scale per 16 values (two to a byte of `scales`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq2Xs {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; QK_K / 32],
}

/// IQ2_S: 10-bit indices into `IQ2S_GRID` (the low 8 bits in `qs[..32]`, two more per group in
/// `qh`), one sign bit per value in `qs[32..]`, a 4-bit scale per 16 values.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq2S {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 4],
    pub qh: [u8; QK_K / 32],
    pub scales: [u8; QK_K / 32],
}

/// IQ1_S: 11-bit indices into the ternary `IQ1S_GRID` (the low 8 bits in `qs`, 3 more per group in
/// the little-endian `u16`s of `qh`, which also hold a 3-bit scale and the sign of the shift per
/// sub-block of 32): `x = d * (2 * ls + 1) * (grid +- 1/8)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq1S {
    pub d: [u8; 2],
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
}

/// IQ1_M: IQ1_S's grid with 3 high index bits and a shift sign per group of 8 (a nibble of `qh`),
/// 3-bit scales per 16 values in the four little-endian `u16`s of `scales`, whose top nibbles
/// together hold the f16 super-block scale (no `d` field).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIq1M {
    pub qs: [u8; QK_K / 8],
    pub qh: [u8; QK_K / 16],
    pub scales: [u8; QK_K / 32],
}

/// IQ1_S's and IQ1_M's shift of every grid value (ggml's `IQ1S_DELTA` and `IQ1M_DELTA`).
pub const IQ1S_DELTA: f32 = 0.125;

const _: () = {
    use std::mem::{align_of, size_of};
    // ggml-common.h's static_asserts.
    assert!(size_of::<BlockIq3Xxs>() == 2 + 3 * (QK_K / 8) && align_of::<BlockIq3Xxs>() == 1);
    assert!(size_of::<BlockIq3S>() == 2 + 13 * (QK_K / 32) + QK_K / 64);
    assert!(size_of::<BlockIq2Xxs>() == 2 + QK_K / 8 * 2 && align_of::<BlockIq2Xxs>() == 1);
    assert!(size_of::<BlockIq2Xs>() == 2 + QK_K / 8 * 2 + QK_K / 32);
    assert!(size_of::<BlockIq2S>() == 2 + QK_K / 4 + QK_K / 16);
    assert!(size_of::<BlockIq1S>() == 2 + QK_K / 8 + QK_K / 16);
    assert!(size_of::<BlockIq1M>() == QK_K / 8 + QK_K / 16 + QK_K / 32);
    assert!(size_of::<BlockIq3S>() == 110 && size_of::<BlockIq2Xs>() == 74);
    assert!(size_of::<BlockIq2S>() == 82 && size_of::<BlockIq1S>() == 50);
    assert!(size_of::<BlockIq1M>() == 56);
    assert!(align_of::<BlockIq3S>() == 1 && align_of::<BlockIq2Xs>() == 1);
    assert!(align_of::<BlockIq2S>() == 1 && align_of::<BlockIq1S>() == 1);
    assert!(align_of::<BlockIq1M>() == 1);
    assert!(size_of::<BlockQ4_1>() == 20 && align_of::<BlockQ4_1>() == 1);
    assert!(size_of::<BlockQ5_0>() == 22 && align_of::<BlockQ5_0>() == 1);
    assert!(size_of::<BlockQ5_1>() == 24 && align_of::<BlockQ5_1>() == 1);
    assert!(size_of::<BlockQ8_1>() == 36);
    assert!(size_of::<BlockQ2K>() == 84 && align_of::<BlockQ2K>() == 1);
    assert!(size_of::<BlockQ3K>() == 110 && align_of::<BlockQ3K>() == 1);
    assert!(size_of::<BlockQ4K>() == 144 && align_of::<BlockQ4K>() == 1);
    assert!(size_of::<BlockQ5K>() == 176 && align_of::<BlockQ5K>() == 1);
    assert!(size_of::<BlockQ6K>() == 210 && align_of::<BlockQ6K>() == 1);
    assert!(size_of::<BlockQ8K>() == 292);
    assert!(size_of::<BlockIq4Nl>() == 18 && align_of::<BlockIq4Nl>() == 1);
    assert!(size_of::<BlockIq4Xs>() == 136 && align_of::<BlockIq4Xs>() == 1);
};

/// Views bytes as blocks of `T` (the whole blocks they hold; `T` has alignment 1).
pub fn as_blocks<T: bytemuck::Pod>(bytes: &[u8]) -> &[T] {
    let n = bytes.len() / std::mem::size_of::<T>() * std::mem::size_of::<T>();
    bytemuck::cast_slice(&bytes[..n])
}

/// Views bytes as blocks of `T` to write (the whole blocks they hold; `T` has alignment 1).
pub fn as_blocks_mut<T: bytemuck::Pod>(bytes: &mut [u8]) -> &mut [T] {
    let n = bytes.len() / std::mem::size_of::<T>() * std::mem::size_of::<T>();
    bytemuck::cast_slice_mut(&mut bytes[..n])
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ4_0>() == 1);

/// The scale of a block as f32: the IEEE f16 widened exactly, as `half::f16::to_f32` and F16C's
/// `vcvtph2ps` widen it (NaNs keep their payload and come out quiet), for every bit pattern.
///
/// In plain integer and float operations rather than through `half`, whose run-time detection of
/// F16C on every call measured a third of a Q4_K super-block's time in the scalar kernels. Branches
/// only on the kind of value (finite normal scales take the same one every time); subnormals are
/// one exact product of normal numbers, so a CPU that flushes subnormals to zero (FTZ/DAZ, set by
/// some C hosts) converts them all the same.
#[inline]
pub fn scale(d: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(d);
    let sign = ((h & 0x8000) as u32) << 16;
    // Exponent and mantissa.
    let em = (h & 0x7fff) as u32;
    let bits = if (0x0400..0x7c00).contains(&em) {
        // Normal: the exponent rebiased from 15 to 127, the mantissa widened by 13 bits.
        (em << 13) + ((127 - 15) << 23)
    } else if em >= 0x7c00 {
        // Infinity, or NaN with its payload and the quiet bit set.
        0x7f80_0000 | (em & 0x3ff) << 13 | ((em > 0x7c00) as u32) << 22
    } else {
        // Zero or subnormal: `em * 2^-24`, exact (`em < 2^10`, the product a normal f32).
        (em as f32 * (1.0 / 16_777_216.0)).to_bits()
    };
    f32::from_bits(sign | bits)
}

/// f32 to the stored f16 scale (round to nearest even, as ggml's `GGML_FP32_TO_FP16`).
#[inline]
pub fn to_scale(d: f32) -> [u8; 2] {
    half::f16::from_f32(d).to_bits().to_le_bytes()
}

/// Views bytes as Q8_0 blocks (always succeeds for a whole number of blocks: alignment is 1).
pub fn as_q8_0(bytes: &[u8]) -> &[BlockQ8_0] {
    bytemuck::cast_slice(&bytes[..bytes.len() / 34 * 34])
}

/// Views bytes as Q4_0 blocks.
pub fn as_q4_0(bytes: &[u8]) -> &[BlockQ4_0] {
    bytemuck::cast_slice(&bytes[..bytes.len() / 18 * 18])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f16 bit pattern, NaNs included, widens to the bits `half` gives, with and without its
    /// hardware path.
    #[test]
    fn scale_is_exact_for_every_f16() {
        for h in 0..=u16::MAX {
            let got = scale(h.to_le_bytes()).to_bits();
            let f = half::f16::from_bits(h);
            assert_eq!(got, f.to_f32().to_bits(), "f16 {h:#06x}");
            assert_eq!(got, f.to_f32_const().to_bits(), "f16 {h:#06x}");
        }
    }
}
