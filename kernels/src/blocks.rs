//! GGML's 32-value quantisation blocks, byte-identical to `block_q8_0` and `block_q4_0` in ggml
//! (`ggml-common.h`), so tensors of GGUF files can be used in place.
//!
//! The f16 scale is stored as two little-endian bytes rather than a `u16`, which makes the structs'
//! alignment 1: a row of blocks can be viewed in place at any byte offset of a file.

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

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ4_0>() == 1);

/// The scale of a block as f32.
#[inline]
pub fn scale(d: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(d)).to_f32()
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
