//! IEEE half-precision (`f16`) weights against f32 activations.

use half::f16;

#[inline]
fn at(row: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])).to_f32()
}

/// Converts little-endian `f16` bytes to `f32` (exact).
pub fn dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert_eq!(row.len(), out.len() * 2);
    for (i, o) in out.iter_mut().enumerate() {
        *o = at(row, i);
    }
}

/// Dot product of an f16 row with f32 values: each weight converted exactly, then the same eight-lane
/// sum as [`super::f32::dot`], so it equals `dot(dequantize(row), x)` bit for bit.
pub fn dot(row: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(row.len(), x.len() * 2);
    super::f32::dot_by(x.len(), |i| at(row, i) * x[i])
}

/// Values to little-endian f16 bytes (round to nearest even).
pub fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
    }
}
