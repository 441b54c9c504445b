//! AVX2 + FMA + F16C kernels.

use crate::dispatch::{Kernels, Tier, SCALAR};

/// The AVX2 table (call only where [`super::avx2_supported`]).
pub fn table() -> Kernels {
    Kernels {
        tier: Tier::Avx2,
        ..SCALAR
    }
}
