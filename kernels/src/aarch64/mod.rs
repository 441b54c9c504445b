//! aarch64 tiers: `neon/` (Advanced SIMD, with the dot-product extension where present).

pub mod neon;
