//! AVX-512 kernels.

use crate::dispatch::{Kernels, Tier, SCALAR};

/// The AVX-512 table (call only where [`super::avx512_supported`]).
pub fn table() -> Kernels {
    Kernels {
        tier: Tier::Avx512,
        ..SCALAR
    }
}
