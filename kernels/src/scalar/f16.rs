//! IEEE half-precision (`f16`) weights.

use half::f16;

/// Converts little-endian `f16` bytes to `f32` (exact).
pub fn dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert_eq!(row.len(), out.len() * 2);
    for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
        *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    }
}
