//! AVX-512 kernels (F/BW/VL; VNNI where the CPU has it), one file per format with the names of
//! `scalar/`.
//!
//! As in `avx2/`, each file's functions are safe wrappers around `unsafe fn`s compiled with
//! `#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]` (plus `avx512vnni` for the
//! VNNI kernels), private to the crate and reached only through `table`, which `dispatch` calls only
//! where [`super::avx512_supported`] holds; the VNNI kernels enter the table only where
//! [`super::avx512_vnni_supported`] holds too.
//!
//! What this tier takes from the AVX2 tier (its CPUs run every AVX2 kernel, and these gain little
//! from 512-bit vectors): the Q8_0/Q4_0 dot products when the CPU lacks VNNI, the activation
//! quantisers (once per vector, and they must match the reference bit for bit), RMSNorm and RoPE,
//! and the products of the other block formats, Q4_1, Q5_0, Q5_1, IQ4_NL, the K-quants, IQ4_XS and
//! the IQ1/IQ2/IQ3 formats (`Kernels::with_block_formats`; written and tested on AVX2-only machines:
//! no AVX-512 kernels of their own yet, which would need an AVX-512 machine to test).
//!
//! AVX-512 BF16 (`vdpbf16ps`) is not used: it multiplies bf16 by bf16, so the f32 activations would
//! first be rounded to bf16 (a relative error near 2^-9 per term), far from the reference's
//! `bf16 -> f32` then f32 arithmetic. bf16 weights are widened by a shift instead, exactly.

mod bf16;
mod f16;
mod f32;
mod q4_0;
mod q8_0;

use std::arch::x86_64::*;

use super::avx2;
use crate::blocks::{as_q4_0, as_q8_0};
use crate::dispatch::{Kernels, Tier, SCALAR};
use crate::format::{f32_products, q8_0_products, Products};
use crate::DType;

/// The AVX-512 table. `dispatch` calls this only where [`super::avx512_supported`] holds: the safety
/// of every function pointer in it rests on that (and on the VNNI check below for the VNNI kernels).
pub(crate) fn table() -> Kernels {
    debug_assert!(super::avx512_supported());
    let base = Kernels {
        tier: Tier::Avx512,
        features: &[],
        dot_f32: f32::dot,
        quantize_row_q8_0: avx2::q8_0::quantize_row,
        quantize_row_q8_1: avx2::q8_1::quantize_row,
        axpy: f32::axpy,
        rmsnorm: avx2::ops::rmsnorm,
        attn_scores: avx2::attn::attn_scores,
        attn_mix: avx2::attn::attn_mix,
        rope_neox: avx2::ops::rope_neox,
        ..SCALAR
    }
    .with_products(DType::F32, f32_products!(f32::dot))
    .with_products(DType::F16, Products::F32 { dot: f16::dot })
    .with_products(DType::BF16, Products::F32 { dot: bf16::dot })
    .with_products(
        DType::Q8_0,
        q8_0_products!(blocks: as_q8_0, avx2::q8_0::dot),
    )
    .with_products(
        DType::Q4_0,
        q8_0_products!(
            as_q4_0,
            avx2::q4_0::dot,
            avx2::q4_0::dot_rows,
            avx2::q4_0::matmul_rows
        ),
    )
    .with_block_formats();
    let vnni = super::avx512_vnni_supported();
    let (features, q4_0): (&'static [&'static str], _) = match super::avx512_vbmi_supported() {
        true if vnni => (
            &["vnni", "vbmi"],
            q8_0_products!(
                as_q4_0,
                q4_0::dot_vbmi,
                q4_0::dot_rows_vbmi,
                q4_0::matmul_rows_vbmi
            ),
        ),
        _ if vnni => (
            &["vnni"],
            q8_0_products!(as_q4_0, q4_0::dot, q4_0::dot_rows, q4_0::matmul_rows),
        ),
        _ => return base,
    };
    Kernels { features, ..base }
        .with_products(DType::Q8_0, q8_0_products!(blocks: as_q8_0, q8_0::dot))
        .with_products(DType::Q4_0, q4_0)
}

/// `(1 << n) - 1`: the first `n < 16` lanes of a 16-lane vector.
#[inline]
fn first_lanes(n: usize) -> __mmask16 {
    debug_assert!(n < 16);
    (1u16 << n) - 1
}

/// Two 256-bit halves as one vector: `lo` in bytes 0..32 (32-bit lanes 0..8), `hi` in bytes 32..64
/// (lanes 8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Lane 0 of `p` in lanes 0..8 and lane 1 of `p` in lanes 8..16: the scales of the two blocks that
/// [`join`] put side by side.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn spread(p: __m128) -> __m512 {
    // `vpermps`: dst[i] = src[idx[i]]. Only lanes 0 and 1 of the (otherwise undefined) source are read.
    const IDX: [i32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    // SAFETY: `IDX` is 64 readable bytes; `loadu` has no alignment requirement.
    let idx = unsafe { _mm512_loadu_si512(IDX.as_ptr().cast()) };
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(p))
}
