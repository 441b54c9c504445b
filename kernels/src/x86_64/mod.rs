//! x86-64 tiers: `avx2/` (AVX2 + FMA + F16C) and `avx512/` (AVX-512 F/BW/VL, with VNNI where
//! present). Each folder has one file per format with the same function names as `scalar/`.
//!
//! How the `unsafe` is contained: every kernel is an `unsafe fn` compiled with
//! `#[target_feature(enable = ...)]`, wrapped by a safe `fn` of the scalar signature. The wrappers are
//! private to the crate and reach the outside only as function pointers in a tier's table, and
//! `dispatch` builds a tier's table only after [`Tier::supported`](crate::Tier::supported) (which calls
//! the detection functions below) said this CPU runs it. Sub-features (VNNI) are checked again where
//! the table is filled.

pub mod avx2;
pub mod avx512;

/// AVX2, FMA and F16C, checked at run time.
pub fn avx2_supported() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// AVX-512 F/BW/VL on top of the AVX2 tier's features.
pub fn avx512_supported() -> bool {
    avx2_supported()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
}

/// AVX-512 VNNI (`vpdpbusd`) on top of the AVX-512 tier: the 8-bit dot products of Q8_0/Q4_0.
pub fn avx512_vnni_supported() -> bool {
    avx512_supported() && is_x86_feature_detected!("avx512vnni")
}

/// AVX-512 VBMI (`vpermt2b`) on top of the AVX-512 tier: the Q4_0 kernel's scale gather.
pub fn avx512_vbmi_supported() -> bool {
    avx512_supported() && is_x86_feature_detected!("avx512vbmi")
}
