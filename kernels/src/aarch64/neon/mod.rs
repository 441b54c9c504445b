//! NEON (Advanced SIMD) kernels, one file per format with the same function names as `scalar/`.
//!
//! NEON is a baseline feature of the aarch64 Linux, Android and Apple targets, so these functions
//! need no run-time check. The one optional extension used is the dot-product instructions (`sdot`,
//! FEAT_DotProd: Cortex-A55/A76 and later, e.g. the Raspberry Pi 5, Apple M1, Graviton 2; absent on
//! Cortex-A53/A72, e.g. the Raspberry Pi 3 and 4): [`table`] detects it once and installs the
//! `*_dotprod` variants of the Q8_0/Q4_0 dot products, listing `"dotprod"` in
//! [`Kernels::features`].
//!
//! Two instructions are written with `asm!` rather than `std::arch` intrinsics, because the
//! intrinsics are unstable (`vdotq_s32`, feature `stdarch_neon_dotprod`) or newer than the crate's
//! `rust-version`, 1.89 (`vcvt_f32_f16`, stable since 1.94):
//! - `sdot` (in [`SDot`]), only ever inlined into functions compiled with the `dotprod` feature;
//! - `fcvtl`/`fcvt` (half to single precision), Armv8.0 base instructions (no FEAT_FP16 needed).
//!
//! Each table entry is a safe `fn` that checks lengths and calls an `unsafe fn` holding the loop.
//! Whole bodies are unsafe, rather than single intrinsic calls, because which NEON intrinsics are
//! `unsafe` changed across the Rust versions we build with (register-only ones became safe to call
//! where NEON is enabled); the loads are commented where they happen. All loads are in bounds of
//! the slices handed in; blocks and byte rows may sit at any address (NEON loads have no alignment
//! requirement, and the pointers given to them are `u8`/`i8` pointers, of alignment 1).
//!
//! Numerics: the block dot products (Q8_0, Q4_0) and the Q8_0 quantiser are bit-identical to the
//! scalar reference (exact integer block sums, then the same float operations in the same order);
//! `axpy` is bit-identical (separate multiply and add, as the scalar loop); the float dot products
//! (f32, f16, bf16) use fused multiply-adds in sixteen lanes and differ from the reference by
//! reassociation only.

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod q4_0;
pub mod q8_0;

use std::arch::aarch64::*;
use std::arch::asm;

use crate::blocks::{as_q4_0, as_q8_0};
use crate::dispatch::{Kernels, Tier, SCALAR};
use crate::format::{f32_products, q8_0_products, Products};
use crate::DType;

/// Whether this CPU has the dot-product instructions (`sdot`/`udot`), checked at run time.
pub fn dotprod_supported() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// The NEON table (every aarch64 CPU has NEON), with `sdot` where [`dotprod_supported`].
pub fn table() -> Kernels {
    if cfg!(target_endian = "big") {
        // The f16/bf16 kernels read little-endian bytes as u16 lanes; keep the scalar ones there.
        return Kernels {
            tier: Tier::Neon,
            dot_f32: f32::dot,
            axpy: f32::axpy,
            ..SCALAR
        }
        .with_products(DType::F32, f32_products!(f32::dot));
    }
    let dotprod = dotprod_supported();
    let (q8_0, q4_0) = match dotprod {
        true => (
            q8_0_products!(blocks: as_q8_0, q8_0::dot_dotprod),
            q8_0_products!(
                as_q4_0,
                q4_0::dot_dotprod,
                q4_0::dot_rows_dotprod,
                q4_0::matmul_rows_dotprod
            ),
        ),
        false => (
            q8_0_products!(blocks: as_q8_0, q8_0::dot),
            q8_0_products!(as_q4_0, q4_0::dot, q4_0::dot_rows, q4_0::matmul_rows),
        ),
    };
    Kernels {
        tier: Tier::Neon,
        features: if dotprod { &["dotprod"] } else { &[] },
        dot_f32: f32::dot,
        quantize_row_q8_0: q8_0::quantize_row,
        axpy: f32::axpy,
        ..SCALAR
    }
    .with_products(DType::F32, f32_products!(f32::dot))
    .with_products(DType::F16, Products::F32 { dot: f16::dot })
    .with_products(DType::BF16, Products::F32 { dot: bf16::dot })
    .with_products(DType::Q8_0, q8_0)
    .with_products(DType::Q4_0, q4_0)
}

/// One step of a block dot product: `acc` plus the products of the 16 `i8` pairs of `a` and `b`,
/// summed into four `i32` lanes. Which product lands in which lane differs between implementations;
/// callers only use the sum of the lanes, which is exact (at most 32 * 128 * 128 = 2^19 per block).
pub(super) trait I8Dot {
    /// # Safety
    /// The CPU must have the instructions the implementation uses (see each type).
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// Base NEON: widening multiplies (`smull`, `smull2`, each product exact in `i16`: at most
/// 128 * 128 = 2^14) and pairwise widening adds into `i32` (`sadalp`).
pub(super) struct Widen;

impl I8Dot for Widen {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// FEAT_DotProd: one `sdot` (lane `i` += the four products `4i..4i+4`).
pub(super) struct SDot;

impl I8Dot for SDot {
    /// # Safety
    /// The CPU must have the dot-product extension, and this must be inlined into a function
    /// compiled with `#[target_feature(enable = "dotprod")]` (else the assembler rejects `sdot`).
    #[inline(always)]
    unsafe fn dot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: register-only instruction; the caller guarantees the CPU has it.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }
}

/// Four IEEE half-precision values (bit patterns) to single precision, exactly (`fcvtl`, Armv8.0).
#[inline(always)]
pub(super) fn cvt_f16x4(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: register-only base Advanced SIMD instruction, present on every aarch64 CPU.
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// The upper four of eight half-precision values to single precision (`fcvtl2`, Armv8.0).
#[inline(always)]
pub(super) fn cvt_f16x4_high(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: register-only base Advanced SIMD instruction, present on every aarch64 CPU.
    unsafe {
        asm!(
            "fcvtl2 {out:v}.4s, {h:v}.8h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// One half-precision value (bit pattern) to single precision, exactly (scalar `fcvt`, Armv8.0 FP;
/// no run-time feature check, unlike `half`'s conversion).
#[inline(always)]
pub(super) fn cvt_f16(h: u16) -> f32 {
    let out: f32;
    // SAFETY: register-only base floating-point instruction, present on every aarch64 CPU.
    unsafe {
        asm!(
            "fcvt {out:s}, {h:h}",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// The f16 scale of a block (two little-endian bytes) as f32: [`crate::blocks::scale`] without the
/// run-time dispatch.
#[inline(always)]
pub(super) fn scale(d: [u8; 2]) -> f32 {
    cvt_f16(u16::from_le_bytes(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f16 bit pattern converts exactly as `half` does (NaNs: to some NaN).
    #[test]
    fn f16_conversion_is_exact() {
        for hi in 0..=u16::MAX / 4 {
            let bits = [hi * 4, hi * 4 + 1, hi * 4 + 2, hi * 4 + 3];
            let want = bits.map(|b| half::f16::from_bits(b).to_f32());
            let mut got = [0f32; 4];
            // SAFETY: `bits` holds 4 u16 and `got` 4 f32.
            unsafe { vst1q_f32(got.as_mut_ptr(), cvt_f16x4(vld1_u16(bits.as_ptr()))) };
            let mut got_high = [0f32; 4];
            let eight = [0, 0, 0, 0, bits[0], bits[1], bits[2], bits[3]];
            // SAFETY: as above, 8 u16 in.
            unsafe {
                vst1q_f32(
                    got_high.as_mut_ptr(),
                    cvt_f16x4_high(vld1q_u16(eight.as_ptr())),
                )
            };
            for i in 0..4 {
                for g in [got[i], got_high[i], cvt_f16(bits[i])] {
                    assert!(
                        g.to_bits() == want[i].to_bits() || (g.is_nan() && want[i].is_nan()),
                        "f16 {:#06x}: {g} != {}",
                        bits[i],
                        want[i]
                    );
                }
            }
        }
    }

    /// Both integer dot implementations give the exact sum, extremes included.
    #[test]
    fn i8_dots_are_exact() {
        let cases: [([i8; 16], [i8; 16]); 3] = [
            ([-128; 16], [-128; 16]),
            ([127; 16], [-128; 16]),
            (
                core::array::from_fn(|i| (i as i8 - 8).wrapping_mul(13)),
                core::array::from_fn(|i| 127i8.wrapping_sub((17 * i) as i8)),
            ),
        ];
        for (a, b) in cases {
            let want: i32 = a.iter().zip(&b).map(|(&p, &q)| p as i32 * q as i32).sum();
            // SAFETY: 16 i8 each; `Widen` is base NEON.
            let got = unsafe {
                let (va, vb) = (vld1q_s8(a.as_ptr()), vld1q_s8(b.as_ptr()));
                vaddvq_s32(Widen::dot(vdupq_n_s32(7), va, vb)) - 4 * 7
            };
            assert_eq!(got, want);
            if dotprod_supported() {
                // SAFETY: the CPU has dotprod (checked above).
                assert_eq!(unsafe { sdot_sum(&a, &b) }, want);
            }
        }
    }

    #[target_feature(enable = "dotprod")]
    unsafe fn sdot_sum(a: &[i8; 16], b: &[i8; 16]) -> i32 {
        // SAFETY: 16 i8 each; the caller guarantees dotprod.
        unsafe {
            let (va, vb) = (vld1q_s8(a.as_ptr()), vld1q_s8(b.as_ptr()));
            vaddvq_s32(SDot::dot(vdupq_n_s32(7), va, vb)) - 4 * 7
        }
    }

    /// The table matches the CPU: `dotprod` listed exactly when detected. CI runs the tests under
    /// QEMU twice, with and without the extension, and sets `COSMOE_EXPECT_DOTPROD=1|0` so that a
    /// run that silently got the other CPU model fails here instead of testing one path twice.
    #[test]
    fn table_features() {
        let k = table();
        assert_eq!(k.tier, Tier::Neon);
        assert_eq!(k.features.contains(&"dotprod"), dotprod_supported());
        eprintln!("neon table features: {:?}", k.features);
        if let Ok(want) = std::env::var("COSMOE_EXPECT_DOTPROD") {
            assert_eq!(
                dotprod_supported(),
                want.trim() == "1",
                "COSMOE_EXPECT_DOTPROD={want}, but dotprod detected: {}",
                dotprod_supported()
            );
        }
    }
}
