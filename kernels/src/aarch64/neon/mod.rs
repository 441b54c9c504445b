//! NEON (Advanced SIMD) kernels, one file per format with the same function names as `scalar/`.
//!
//! NEON is a baseline feature of the aarch64 Linux, Android and Apple targets, so these functions
//! need no run-time check. The one optional extension used is the dot-product instructions (`sdot`,
//! FEAT_DotProd: Cortex-A55/A76 and later, e.g. the Raspberry Pi 5, Apple M1, Graviton 2; absent on
//! Cortex-A53/A72, e.g. the Raspberry Pi 3 and 4): [`table`] detects it once and installs the
//! `*_dotprod` variants of the integer dot products, listing `"dotprod"` in [`Kernels::features`].
//! Each integer kernel is written once, generic over `I8Dot` (16 `i8` products into four `i32`
//! lanes: widening multiplies on any Armv8.0 CPU, such as the Cortex-A53, or `sdot`).
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
//! requirement, and the pointers given to them are `u8`/`i8` pointers, of alignment 1, or the
//! `i16` sums of our own Q8_K activation blocks, aligned as their type).
//!
//! Numerics: the dot products of the 32-value block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL),
//! of Q2_K and of the IQ1/IQ2/IQ3 formats (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M),
//! and the Q8_0 quantiser, are bit-identical to the scalar reference (exact integer block or
//! super-block sums, then the same float operations in the same order). The other
//! super-block formats (Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) sum each 256-value super-block exactly in
//! `i32` too (sub-block sums times their scales; the mins' term and the offsets of Q3_K and Q6_K
//! from the activations' `bsums`), then take one or two float products per super-block where the
//! reference keeps eight float lanes (IQ4_XS: one float product per 32 values), so they differ from
//! it by float reassociation only, within a few roundings of the super-block terms. Either way, the
//! widening and `sdot` variants of a kernel give the same bits. `axpy` is bit-identical (separate
//! multiply and add, as the scalar loop); the float dot products (f32, f16, bf16) use fused
//! multiply-adds in sixteen lanes and differ from the reference by reassociation only.

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

use std::arch::aarch64::*;
use std::arch::asm;

use crate::blocks::{as_blocks, as_q4_0, as_q8_0};
use crate::dispatch::{Kernels, Tier, SCALAR};
use crate::format::{block_products, f32_products, q8_0_products, Products};
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
    let base = Kernels {
        tier: Tier::Neon,
        features: if dotprod { &["dotprod"] } else { &[] },
        dot_f32: f32::dot,
        quantize_row_q8_0: q8_0::quantize_row,
        axpy: f32::axpy,
        ..SCALAR
    }
    .with_products(DType::F32, f32_products!(f32::dot))
    .with_products(DType::F16, Products::F32 { dot: f16::dot })
    .with_products(DType::BF16, Products::F32 { dot: bf16::dot });
    // The integer formats in `DType::ALL` order, taking the activations the scalar entries take.
    match dotprod {
        true => base
            .with_products(
                DType::Q8_0,
                q8_0_products!(blocks: as_q8_0, q8_0::dot_dotprod),
            )
            .with_products(
                DType::Q4_0,
                q8_0_products!(
                    as_q4_0,
                    q4_0::dot_dotprod,
                    q4_0::dot_rows_dotprod,
                    q4_0::matmul_rows_dotprod
                ),
            )
            .with_products(DType::Q4_1, block_products!(Q8_1, q4_1::dot_dotprod))
            .with_products(
                DType::Q5_0,
                q8_0_products!(blocks: as_blocks, q5_0::dot_dotprod),
            )
            .with_products(DType::Q5_1, block_products!(Q8_1, q5_1::dot_dotprod))
            .with_products(DType::Q2_K, block_products!(Q8K, q2_k::dot_dotprod))
            .with_products(DType::Q3_K, block_products!(Q8K, q3_k::dot_dotprod))
            .with_products(DType::Q4_K, block_products!(Q8K, q4_k::dot_dotprod))
            .with_products(DType::Q5_K, block_products!(Q8K, q5_k::dot_dotprod))
            .with_products(DType::Q6_K, block_products!(Q8K, q6_k::dot_dotprod))
            .with_products(
                DType::IQ4_NL,
                q8_0_products!(blocks: as_blocks, iq4_nl::dot_dotprod),
            )
            .with_products(DType::IQ4_XS, block_products!(Q8K, iq4_xs::dot_dotprod))
            .with_products(DType::IQ3_XXS, block_products!(Q8K, iq3_xxs::dot_dotprod))
            .with_products(DType::IQ3_S, block_products!(Q8K, iq3_s::dot_dotprod))
            .with_products(DType::IQ2_XXS, block_products!(Q8K, iq2_xxs::dot_dotprod))
            .with_products(DType::IQ2_XS, block_products!(Q8K, iq2_xs::dot_dotprod))
            .with_products(DType::IQ2_S, block_products!(Q8K, iq2_s::dot_dotprod))
            .with_products(DType::IQ1_S, block_products!(Q8K, iq1_s::dot_dotprod))
            .with_products(DType::IQ1_M, block_products!(Q8K, iq1_m::dot_dotprod)),
        false => base
            .with_products(DType::Q8_0, q8_0_products!(blocks: as_q8_0, q8_0::dot))
            .with_products(
                DType::Q4_0,
                q8_0_products!(as_q4_0, q4_0::dot, q4_0::dot_rows, q4_0::matmul_rows),
            )
            .with_products(DType::Q4_1, block_products!(Q8_1, q4_1::dot))
            .with_products(DType::Q5_0, q8_0_products!(blocks: as_blocks, q5_0::dot))
            .with_products(DType::Q5_1, block_products!(Q8_1, q5_1::dot))
            .with_products(DType::Q2_K, block_products!(Q8K, q2_k::dot))
            .with_products(DType::Q3_K, block_products!(Q8K, q3_k::dot))
            .with_products(DType::Q4_K, block_products!(Q8K, q4_k::dot))
            .with_products(DType::Q5_K, block_products!(Q8K, q5_k::dot))
            .with_products(DType::Q6_K, block_products!(Q8K, q6_k::dot))
            .with_products(
                DType::IQ4_NL,
                q8_0_products!(blocks: as_blocks, iq4_nl::dot),
            )
            .with_products(DType::IQ4_XS, block_products!(Q8K, iq4_xs::dot))
            .with_products(DType::IQ3_XXS, block_products!(Q8K, iq3_xxs::dot))
            .with_products(DType::IQ3_S, block_products!(Q8K, iq3_s::dot))
            .with_products(DType::IQ2_XXS, block_products!(Q8K, iq2_xxs::dot))
            .with_products(DType::IQ2_XS, block_products!(Q8K, iq2_xs::dot))
            .with_products(DType::IQ2_S, block_products!(Q8K, iq2_s::dot))
            .with_products(DType::IQ1_S, block_products!(Q8K, iq1_s::dot))
            .with_products(DType::IQ1_M, block_products!(Q8K, iq1_m::dot)),
    }
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

/// A Q8_K format's `dot` (base NEON, [`Widen`]) and `dot_dotprod` (`sdot`), for a module whose
/// `dot_blocks::<D: I8Dot>` holds the loop.
macro_rules! q8k_dots {
    ($block:ty) => {
        /// The scalar kernel's `dot`, bit for bit, with base NEON (see `dot_blocks`).
        pub fn dot(w: &[$block], a: &[crate::blocks::BlockQ8K]) -> f32 {
            debug_assert_eq!(w.len(), a.len());
            // SAFETY: `Widen` uses base NEON only.
            unsafe { dot_blocks::<super::Widen>(w, a) }
        }

        /// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the
        /// dot-product extension; not public, because calling it elsewhere could execute an
        /// unsupported instruction.
        pub(super) fn dot_dotprod(w: &[$block], a: &[crate::blocks::BlockQ8K]) -> f32 {
            debug_assert!(super::dotprod_supported());
            debug_assert_eq!(w.len(), a.len());
            // SAFETY: only reachable through the table, which installs it after detecting dotprod.
            unsafe { dot_sdot(w, a) }
        }

        /// # Safety
        /// The CPU must have the dot-product extension.
        #[target_feature(enable = "dotprod")]
        unsafe fn dot_sdot(w: &[$block], a: &[crate::blocks::BlockQ8K]) -> f32 {
            // SAFETY: the caller guarantees dotprod, which this function is compiled with.
            unsafe { dot_blocks::<super::SDot>(w, a) }
        }
    };
}
use q8k_dots;

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

/// Bytes as `i8` lanes (levels below 128, so the same values).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// Eight bytes as `i16` lanes (zero-extended).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn widen_u8(v: uint8x8_t) -> int16x8_t {
    vreinterpretq_s16_u16(vmovl_u8(v))
}

/// `[sum p[0], sum p[1], sum p[2], sum p[3]]`: the lane sums of four vectors in one (`addp`
/// twice), exact as long as each sum fits `i32` (true of every sub-block sum here).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn lane_sums4(p: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]))
}

/// `sum_j s[j] * sc[j]` over eight `i32` sub-block sums in two vectors and eight scales in one
/// `i16` vector: exact where the products and their sum fit `i32` (the callers bound them).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the intrinsics are in some Rust versions.
#[inline(always)]
pub(super) unsafe fn scaled_sum8(s: [int32x4_t; 2], sc: int16x8_t) -> int32x4_t {
    let lo = vmulq_s32(s[0], vmovl_s16(vget_low_s16(sc)));
    vmlaq_s32(lo, s[1], vmovl_high_s16(sc))
}

/// `sum_j bsums[j] * m[j]` for the sixteen sums of 16 activations of a Q8_K block and sixteen `i16`
/// factors (in two vectors): exact (`smull`/`smlal`, at most 16 * 2^11 * 2^8 in `i32`).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the loads are.
#[inline(always)]
pub(super) unsafe fn bsums_dot16(bsums: &[i16; 16], m: [int16x8_t; 2]) -> i32 {
    // SAFETY (loads): 8 + 8 `i16` of the 16 borrowed.
    let (b0, b1) = (vld1q_s16(bsums.as_ptr()), vld1q_s16(bsums.as_ptr().add(8)));
    let lo = vmlal_s16(
        vmull_s16(vget_low_s16(b0), vget_low_s16(m[0])),
        vget_low_s16(b1),
        vget_low_s16(m[1]),
    );
    let hi = vmlal_high_s16(vmull_high_s16(b0, m[0]), b1, m[1]);
    vaddvq_s32(vaddq_s32(lo, hi))
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

/// The f16 scale of a block (two little-endian bytes) as f32 in one instruction: the bits of
/// [`crate::blocks::scale`].
#[inline(always)]
pub(super) fn scale(d: [u8; 2]) -> f32 {
    cvt_f16(u16::from_le_bytes(d))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::blocks::{BlockQ8K, QK_K};

    /// A xorshift generator for test data.
    pub(crate) fn rng(seed: u32) -> impl FnMut() -> u32 {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        }
    }

    /// Number of activation cases [`q8k_blocks`] makes (and weight cases [`raw_blocks`] pairs them
    /// with).
    pub(crate) const CASES: usize = 4;

    /// `n` Q8_K blocks for each of [`CASES`] cases, with their `bsums`: random quants in
    /// -127..=127, the extremes -127 and 127 mixed, all -128 (below what the quantiser writes, but
    /// an `i8`), and random quants again; scales of both signs.
    pub(crate) fn q8k_blocks(n: usize, seed: u32) -> Vec<Vec<BlockQ8K>> {
        let mut next = rng(seed);
        (0..CASES)
            .map(|case| {
                (0..n)
                    .map(|i| {
                        let mut b = BlockQ8K {
                            d: (next() % 1000) as f32 * 1e-5 * if i % 2 == 0 { 1.0 } else { -1.0 },
                            qs: [0; QK_K],
                            bsums: [0; QK_K / 16],
                        };
                        for (j, q) in b.qs.iter_mut().enumerate() {
                            *q = match case {
                                1 if (j / 3 + i) % 2 == 0 => 127,
                                1 => -127,
                                2 => -128,
                                _ => ((next() % 255) as i32 - 127) as i8,
                            };
                        }
                        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                            *s = q.iter().map(|&q| q as i16).sum();
                        }
                        b
                    })
                    .collect()
            })
            .collect()
    }

    /// `n` weight blocks for activation case `case` of [`q8k_blocks`]: random bytes, or every bit
    /// set (the largest levels and scales) in cases 1 and 2; `fix` then sets the float scales.
    pub(crate) fn raw_blocks<T: bytemuck::Pod>(
        n: usize,
        seed: u32,
        case: usize,
        fix: impl Fn(&mut T),
    ) -> Vec<T> {
        let mut next = rng(seed);
        (0..n)
            .map(|_| {
                let mut b: T = bytemuck::Zeroable::zeroed();
                for byte in bytemuck::bytes_of_mut(&mut b) {
                    *byte = match case {
                        1 | 2 => 0xff,
                        _ => next() as u8,
                    };
                }
                fix(&mut b);
                b
            })
            .collect()
    }

    /// `n` Q8_0/Q8_1 activation blocks (f16 scale, 32 quants) for case `case` of [`CASES`], as
    /// [`q8k_blocks`] makes them.
    pub(crate) fn legacy_acts(n: usize, seed: u32, case: usize) -> Vec<([u8; 2], [i8; 32])> {
        let mut next = rng(seed);
        (0..n)
            .map(|i| {
                let d = (next() % 1000) as f32 * 1e-3 * if i % 2 == 0 { 1.0 } else { -1.0 };
                let qs = core::array::from_fn(|j| match case {
                    1 if (j / 3 + i) % 2 == 0 => 127,
                    1 => -127,
                    2 => -128,
                    _ => ((next() % 255) as i32 - 127) as i8,
                });
                (crate::blocks::to_scale(d), qs)
            })
            .collect()
    }

    /// An IQ1/IQ2/IQ3 product (`got`, and `got_sdot` where the CPU has dotprod) equals the scalar
    /// kernel's `want` bit for bit, over 0 to 3 super-blocks of [`raw_blocks`] (random bytes, or
    /// every bit set: the largest indices and scales, every sign negative) against every activation
    /// case of [`q8k_blocks`] (-128 included), with a finite f16 super-block scale.
    pub(crate) fn check_iq<T: bytemuck::Pod>(
        dtype: crate::DType,
        want: fn(&[T], &[BlockQ8K]) -> f32,
        got: fn(&[T], &[BlockQ8K]) -> f32,
        got_sdot: fn(&[T], &[BlockQ8K]) -> f32,
    ) {
        for n in 0..4 {
            for (case, x) in q8k_blocks(n, 10).into_iter().enumerate() {
                let w: Vec<T> = raw_blocks(n, 41 + case as u32, case, |b: &mut T| {
                    let d = crate::blocks::to_scale(0.0021);
                    crate::sample::set_super_scale(dtype, bytemuck::bytes_of_mut(b), d)
                });
                let want = want(&w, &x);
                let mut got = vec![("base", got(&w, &x))];
                if dotprod_supported() {
                    got.push(("sdot", got_sdot(&w, &x)));
                }
                for (path, got) in got {
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{dtype} {path} n={n} case={case}: {got} != {want}"
                    );
                }
            }
        }
    }

    /// A super-block product against the scalar reference: within `1e-6` of the sum over blocks of
    /// `bound(b) * sum_i |q_a[b][i]|` (`bound(b)`: the largest magnitude a weight's terms reach,
    /// times the activation scale), and the `sdot` result, if any, bit-identical to the base one
    /// (the same exact integers, then the same float operations).
    pub(crate) fn check_k(
        x: &[BlockQ8K],
        bound: impl Fn(usize) -> f32,
        want: f32,
        got: f32,
        got_sdot: Option<f32>,
        what: &str,
    ) {
        let mag: f32 = x
            .iter()
            .enumerate()
            .map(|(i, b)| bound(i) * b.qs.iter().map(|&q| (q as f32).abs()).sum::<f32>())
            .sum();
        let tol = 1e-6 * mag + 1e-30;
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, reference {want}, |diff| {} > {tol}",
            (got - want).abs()
        );
        if let Some(g) = got_sdot {
            assert_eq!(g.to_bits(), got.to_bits(), "{what}: sdot {g} != base {got}");
        }
    }

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
