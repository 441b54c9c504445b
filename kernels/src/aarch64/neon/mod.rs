//! NEON kernels.

use crate::dispatch::{Kernels, Tier, SCALAR};

/// The NEON table (every aarch64 CPU has NEON).
pub fn table() -> Kernels {
    Kernels {
        tier: Tier::Neon,
        ..SCALAR
    }
}
