//! The kernel table: filled once per process, then every call goes through a function pointer.

use std::sync::OnceLock;

use crate::{scalar, DType};

/// An instruction-set tier. Only the scalar reference exists today; SIMD tiers add variants here and
/// fill the same table with their own functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Scalar,
}

/// Function pointers of one tier (same names as the functions in `scalar/`).
pub struct Kernels {
    pub tier: Tier,
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub axpy: fn(f32, &[f32], &mut [f32]),
    pub dequantize_row: fn(DType, &[u8], &mut [f32]),
    pub rmsnorm: fn(&[f32], &[f32], f32, &mut [f32]),
    pub softmax: fn(&mut [f32]),
    pub silu_mul: fn(&mut [f32], &[f32]),
    pub rope_neox: fn(&mut [f32], &[f32], &[f32]),
}

static SCALAR: Kernels = Kernels {
    tier: Tier::Scalar,
    dot_f32: scalar::f32::dot,
    axpy: scalar::f32::axpy,
    dequantize_row: scalar::dequantize_row,
    rmsnorm: scalar::ops::rmsnorm,
    softmax: scalar::ops::softmax,
    silu_mul: scalar::ops::silu_mul,
    rope_neox: scalar::ops::rope_neox,
};

/// The table for this CPU, detected on first use.
pub fn kernels() -> &'static Kernels {
    static TABLE: OnceLock<&'static Kernels> = OnceLock::new();
    TABLE.get_or_init(|| &SCALAR)
}
