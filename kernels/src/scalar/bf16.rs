//! bfloat16 weights (the top 16 bits of an `f32`) against f32 activations.

#[inline]
fn at(row: &[u8], i: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([row[2 * i], row[2 * i + 1]]) as u32) << 16)
}

/// Converts little-endian `bf16` bytes to `f32` (exact: a shift).
pub fn dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert_eq!(row.len(), out.len() * 2);
    for (i, o) in out.iter_mut().enumerate() {
        *o = at(row, i);
    }
}

/// Dot product of a bf16 row with f32 values (same summation order as [`super::f32::dot`]).
pub fn dot(row: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(row.len(), x.len() * 2);
    super::f32::dot_by(x.len(), |i| at(row, i) * x[i])
}

/// Values to little-endian bf16 bytes (round to nearest even).
pub fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(x) {
        o.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
    }
}
