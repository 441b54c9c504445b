//! Scalar reference kernels: the definition every SIMD tier is tested against. Never deleted.

pub mod attn;
pub mod bf16;
pub mod f16;
pub mod f32;
pub mod iq1_m;
pub mod iq1_s;
pub mod iq2_s;
pub mod iq2_xs;
pub mod iq2_xxs;
pub mod iq3_s;
pub mod iq3_xxs;
pub mod iq4_nl;
pub mod iq4_xs;
#[rustfmt::skip]
pub mod iq_grids;
pub mod ops;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

use crate::DType;

/// Dequantises one row of `dtype` values (`row`) into `out`, with the scalar table.
pub fn dequantize_row(dtype: DType, row: &[u8], out: &mut [f32]) {
    crate::dispatch::SCALAR.dequantize_row(dtype, row, out)
}
