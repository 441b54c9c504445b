//! bfloat16 weights: the top 16 bits of an `f32`.

/// Converts little-endian `bf16` bytes to `f32` (exact: a shift).
pub fn dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert_eq!(row.len(), out.len() * 2);
    for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}
