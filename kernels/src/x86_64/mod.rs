//! x86-64 tiers: `avx2/` (AVX2 + FMA + F16C) and `avx512/` (AVX-512 F/BW/VL, with VNNI and BF16 where
//! present). Each folder has one file per format with the same function names as `scalar/`.

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
