//! AVX2 + FMA + F16C kernels, one file per format with the names of `scalar/`.
//!
//! Each file's functions are safe wrappers (the scalar signatures, so they fit the kernel table)
//! around `unsafe fn`s compiled with `#[target_feature(enable = "avx2,fma,f16c")]`. The wrappers
//! are private to the crate: the only way to them is `table`, which `dispatch` calls only where
//! [`super::avx2_supported`] holds. The AVX-512 tier reuses some of them and the helpers below (its
//! CPUs have every AVX2 feature: [`super::avx512_supported`] checks `avx2_supported` first).

pub(in crate::x86_64) mod attn;
mod bf16;
#[cfg(test)]
mod extremes;
mod f16;
mod f32;
pub(in crate::x86_64) mod iq1_m;
pub(in crate::x86_64) mod iq1_s;
pub(in crate::x86_64) mod iq2_s;
pub(in crate::x86_64) mod iq2_xs;
pub(in crate::x86_64) mod iq2_xxs;
pub(in crate::x86_64) mod iq3_s;
pub(in crate::x86_64) mod iq3_xxs;
pub(in crate::x86_64) mod iq4_nl;
pub(in crate::x86_64) mod iq4_xs;
pub(in crate::x86_64) mod ops;
pub(in crate::x86_64) mod q2_k;
pub(in crate::x86_64) mod q3_k;
pub(in crate::x86_64) mod q4_0;
pub(in crate::x86_64) mod q4_1;
pub(in crate::x86_64) mod q4_k;
pub(in crate::x86_64) mod q5_0;
pub(in crate::x86_64) mod q5_1;
pub(in crate::x86_64) mod q5_k;
pub(in crate::x86_64) mod q6_k;
pub(in crate::x86_64) mod q8_0;
pub(in crate::x86_64) mod q8_1;

use std::arch::x86_64::*;

use crate::blocks::{as_blocks, as_q4_0, as_q8_0, BlockQ8K};
use crate::dispatch::{Kernels, Tier, SCALAR};
use crate::format::{block_products, f32_products, q8_0_products, Products};
use crate::DType;

/// The AVX2 table. `dispatch` calls this only where [`super::avx2_supported`] holds: the safety of
/// every function pointer in it rests on that.
pub(crate) fn table() -> Kernels {
    debug_assert!(super::avx2_supported());
    Kernels {
        tier: Tier::Avx2,
        features: &[],
        dot_f32: f32::dot,
        quantize_row_q8_0: q8_0::quantize_row,
        quantize_row_q8_1: q8_1::quantize_row,
        axpy: f32::axpy,
        rmsnorm: ops::rmsnorm,
        attn_scores: attn::attn_scores,
        attn_mix: attn::attn_mix,
        rope_neox: ops::rope_neox,
        ..SCALAR
    }
    .with_products(DType::F32, f32_products!(f32::dot))
    .with_products(DType::F16, Products::F32 { dot: f16::dot })
    .with_products(DType::BF16, Products::F32 { dot: bf16::dot })
    .with_products(DType::Q8_0, q8_0_products!(blocks: as_q8_0, q8_0::dot))
    .with_products(
        DType::Q4_0,
        q8_0_products!(as_q4_0, q4_0::dot, q4_0::dot_rows, q4_0::matmul_rows),
    )
    .with_block_formats()
}

impl Kernels {
    /// The AVX2 kernels of the block formats besides Q8_0 and Q4_0 (Q4_1, Q5_0, Q5_1, IQ4_NL, the
    /// K-quants, IQ4_XS and the IQ1/IQ2/IQ3 formats), which the AVX-512 tier uses too.
    pub(in crate::x86_64) fn with_block_formats(self) -> Kernels {
        self.with_products(DType::Q4_1, block_products!(Q8_1, q4_1::dot))
            .with_products(DType::Q5_0, q8_0_products!(as_blocks, q5_0::dot))
            .with_products(DType::Q5_1, block_products!(Q8_1, q5_1::dot))
            .with_products(DType::IQ4_NL, q8_0_products!(as_blocks, iq4_nl::dot))
            .with_products(DType::Q2_K, block_products!(Q8K, q2_k::dot))
            .with_products(DType::Q3_K, block_products!(Q8K, q3_k::dot))
            .with_products(
                DType::Q4_K,
                block_products!(Q8K, q4_k::dot, q4_k::matmul_rows),
            )
            .with_products(
                DType::Q5_K,
                block_products!(Q8K, q5_k::dot, q5_k::matmul_rows),
            )
            .with_products(
                DType::Q6_K,
                block_products!(Q8K, q6_k::dot, q6_k::matmul_rows),
            )
            .with_products(
                DType::IQ4_XS,
                block_products!(Q8K, iq4_xs::dot, iq4_xs::matmul_rows),
            )
            .with_products(DType::IQ3_XXS, block_products!(Q8K, iq3_xxs::dot))
            .with_products(DType::IQ3_S, block_products!(Q8K, iq3_s::dot))
            .with_products(DType::IQ2_XXS, block_products!(Q8K, iq2_xxs::dot))
            .with_products(DType::IQ2_XS, block_products!(Q8K, iq2_xs::dot))
            .with_products(DType::IQ2_S, block_products!(Q8K, iq2_s::dot))
            .with_products(DType::IQ1_S, block_products!(Q8K, iq1_s::dot))
            .with_products(DType::IQ1_M, block_products!(Q8K, iq1_m::dot))
    }
}

/// How far ahead of the current block the Q8_0 loop (and the AVX-512 Q8_0/Q4_0 loops) ask for
/// weights. Hardware prefetchers follow the stream anyway; the hint measured about 10 % faster
/// single-thread decode from DRAM (Zen 3, 256 MiB of Q4_0 rows). The AVX2 Q4_0 loop has its own
/// (`q4_0::PREFETCH_BYTES`), the other 32-value formats `PREFETCH_FAR_BYTES`.
const PREFETCH_BYTES: usize = 1024;

/// How far ahead the Q4_1, Q5_0, Q5_1 and IQ4_NL loops ask for weights (a hint for every 40 to 48
/// bytes, so for every line). Measured on this project's 2-core AMD EPYC build machine, shared and
/// noisy (256 MiB of rows, two threads, medians of five runs against the read probe of each run):
/// 1 KiB ahead 74-83 % over the four formats, 2 KiB ahead 76-87 % and 87-96 % (two sets of runs).
const PREFETCH_FAR_BYTES: usize = 2048;

/// Prefetches the cache line `PREFETCH_BYTES` past `p`. A hint: it never faults, also past the end
/// of the weights, and `wrapping_add` keeps the address arithmetic defined there.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn prefetch_ahead<T>(p: *const T) {
    _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(PREFETCH_BYTES));
}

/// [`prefetch_ahead`] `PREFETCH_FAR_BYTES` past `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn prefetch_far<T>(p: *const T) {
    _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(PREFETCH_FAR_BYTES));
}

/// Prefetches every 64-byte line of the `N` bytes at `PREFETCH_FAR_BYTES` past `p` (a super-block
/// of 84 to 210 bytes: one hint per line, as the Q4_0 loop measured best). A hint: it never faults,
/// also past the end of the weights, and `wrapping_add` keeps the address arithmetic defined there.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn prefetch_span<const N: usize>(p: *const u8) {
    prefetch_block(p.cast::<[u8; N]>())
}

/// [`prefetch_span`] of the `size_of::<B>()` bytes of a `B` (a super-block of a kernel generic over
/// its format).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn prefetch_block<B>(p: *const B) {
    let n = std::mem::size_of::<B>();
    let ahead = p.cast::<u8>().wrapping_add(PREFETCH_FAR_BYTES);
    let mut off = 0;
    while off < n {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off).cast());
        off += 64;
    }
    // The last byte's line, which the steps of 64 miss when the block straddles one more line.
    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(n - 1).cast());
}

/// Tokens a Q8_K prefill tile multiplies each weight row by at once.
pub(in crate::x86_64) const TILE: usize = 4;

/// Prefill of a Q8_K format, `yt[r * n + t] = w[r] . x[t]` for the rows of blocks `B` back to back
/// in `w` and `n` vectors back to back in `x`: `TILE` tokens at a time by `dot_tile` (each row's weights
/// unpacked once for them), rows inner so those tokens' activations stay in L1 while the rows stream
/// from L2; the tokens left over by `dot`. Both compute every output as `dot` does.
pub(in crate::x86_64) fn tile_rows<B: bytemuck::Pod>(
    w: &[u8],
    x: &[BlockQ8K],
    n: usize,
    yt: &mut [f32],
    dot_tile: impl Fn(&[B], [&[BlockQ8K]; TILE]) -> [f32; TILE],
    dot: fn(&[B], &[BlockQ8K]) -> f32,
) {
    let nb = x.len().checked_div(n).unwrap_or(0);
    let rb = nb * std::mem::size_of::<B>();
    if rb == 0 {
        yt.fill(0.0);
        return;
    }
    let rows = (w.len() / rb).min(yt.len() / n);
    let row = |r: usize| as_blocks::<B>(&w[r * rb..(r + 1) * rb]);
    let xs = |t: usize| &x[t * nb..(t + 1) * nb];
    let mut t0 = 0;
    while t0 + TILE <= n {
        let tile: [&[BlockQ8K]; TILE] = std::array::from_fn(|k| xs(t0 + k));
        for r in 0..rows {
            yt[r * n + t0..r * n + t0 + TILE].copy_from_slice(&dot_tile(row(r), tile));
        }
        t0 += TILE;
    }
    for t in t0..n {
        for r in 0..rows {
            yt[r * n + t] = dot(row(r), xs(t));
        }
    }
}

/// An f16 scale as f32 with F16C: one instruction, exact, the bits of `blocks::scale`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn f16(d: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(d) as i32),
    ))
}

/// Sum of the eight lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the eight i32 lanes of `v` (wrapping, as the lanes' sums never overflow where it is used).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// [`hsum_ps`] of four vectors, the same additions in the same order for each: the two halves
/// added, then (lanes 0 + 2) + (lanes 1 + 3), on the four transposed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn hsum4_ps(v: [__m256; 4]) -> [f32; 4] {
    let mut h = [_mm_setzero_ps(); 4];
    for i in 0..4 {
        h[i] = _mm_add_ps(
            _mm256_castps256_ps128(v[i]),
            _mm256_extractf128_ps::<1>(v[i]),
        );
    }
    // Transpose: c[i] = [h0[i], h1[i], h2[i], h3[i]].
    let t0 = _mm_unpacklo_ps(h[0], h[1]); // h0[0] h1[0] h0[1] h1[1]
    let t1 = _mm_unpacklo_ps(h[2], h[3]); // h2[0] h3[0] h2[1] h3[1]
    let t2 = _mm_unpackhi_ps(h[0], h[1]); // h0[2] h1[2] h0[3] h1[3]
    let t3 = _mm_unpackhi_ps(h[2], h[3]); // h2[2] h3[2] h2[3] h3[3]
    let c0 = _mm_movelh_ps(t0, t1);
    let c1 = _mm_movehl_ps(t1, t0);
    let c2 = _mm_movelh_ps(t2, t3);
    let c3 = _mm_movehl_ps(t3, t2);
    let s = _mm_add_ps(_mm_add_ps(c0, c2), _mm_add_ps(c1, c3));
    let mut out = [0f32; 4];
    // SAFETY: four f32 of stack memory; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
    out
}

/// The 32 bytes of a block's quants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn load32(qs: &[i8; 32]) -> __m256i {
    // SAFETY: `qs` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) }
}

/// The eight partial sums (i32) of `q . x` over one block of unsigned `q <= 127` and signed `x`,
/// exact for every `x`: `vpmaddubsw` pair sums within `2 * 127 * 128 < 2^15` (no saturation), then
/// pairs of i16 to i32. (The Q4_1 / Q5_1 levels, 0..=31.)
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn mul_sum_u8(q: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1))
}

/// The eight partial sums (i32) of `w . x` over one block of signed bytes, exact for every `x` when
/// no byte of `w` is -128: `vpmaddubsw` of `|x|` (unsigned, so -128 gives 128) and `w` with the sign
/// of `x` (`-w` is representable), pair sums within `2 * 128 * 127 < 2^15`. The roles are the
/// reverse of `q8_0::mul_sum_i8` (ggml's `mul_sum_i8_pairs`), which takes `|w|` and so goes wrong
/// on activations of -128; this one needs no check for them. (Q5_0's levels -16..=15, IQ4_NL's grid
/// -127..=113.)
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn mul_sum_i8_abs_x(w: __m256i, x: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sw = _mm256_sign_epi8(w, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), _mm256_set1_epi16(1))
}

/// The scale and min products of two blocks of a format with a minimum against Q8_1 activations,
/// `[d_w0 * d_x0, m_w0 * s_x0, d_w1 * d_x1, m_w1 * s_x1]` in f32: each f16 converted exactly (F16C),
/// then one f32 product, as the reference's `scale(w.d) * scale(x.d)` and `scale(w.m) * scale(x.s)`.
/// Each argument is a block's `(d, m)` or `(d, s)`, the first four bytes of its block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn min_scale_products(
    w0: ([u8; 2], [u8; 2]),
    w1: ([u8; 2], [u8; 2]),
    x0: ([u8; 2], [u8; 2]),
    x1: ([u8; 2], [u8; 2]),
) -> __m128 {
    // Both halves of a pair as one i32 (one 4-byte load: they are adjacent in every block).
    let pair = |(a, b): ([u8; 2], [u8; 2])| i32::from_le_bytes([a[0], a[1], b[0], b[1]]);
    // [d_w0, m_w0, d_w1, m_w1 | d_x0, s_x0, d_x1, s_x1] as f32.
    let f = _mm256_cvtph_ps(_mm_setr_epi32(pair(w0), pair(w1), pair(x0), pair(x1)));
    _mm_mul_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps::<1>(f))
}

/// Lane 2 of `p` in all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn splat2(p: __m128) -> __m256 {
    // movehl: [p2, p3, p2, p3].
    _mm256_broadcastss_ps(_mm_movehl_ps(p, p))
}

/// Lanes 1 + 3 of `p`: the min terms [`min_scale_products`] accumulated.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_lanes_1_3(p: __m128) -> f32 {
    // movehdup: [p1, p1, p3, p3].
    let h = _mm_movehdup_ps(p);
    _mm_cvtss_f32(_mm_add_ss(h, _mm_movehl_ps(h, h)))
}

/// The products of two pairs of f16 block scales, `[w0 * x0, w1 * x1, _, _]` in f32: each scale
/// converted exactly (F16C), then one f32 product, as the reference's `scale(w.d) * scale(x.d)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn scale_products(
    w0: [u8; 2],
    w1: [u8; 2],
    x0: [u8; 2],
    x1: [u8; 2],
) -> __m128 {
    let bits = u16::from_le_bytes(w0) as u64
        | (u16::from_le_bytes(w1) as u64) << 16
        | (u16::from_le_bytes(x0) as u64) << 32
        | (u16::from_le_bytes(x1) as u64) << 48;
    // [w0, w1, x0, x1] as f32.
    let f = _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64));
    // [w0 * x0, w1 * x1, x0 * x0, x1 * x1].
    _mm_mul_ps(f, _mm_movehl_ps(f, f))
}

/// `[d_w0 * d_x0, d_w1 * d_x1, 0, 0]` for two weight blocks' f16 scales and the activations' f32
/// scales ([`Q8Acts::d`](crate::acts::Q8Acts::d), exact conversions of theirs): each weight scale
/// converted exactly (F16C), then one f32 product, as the reference's `scale(w.d) * scale(x.d)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn prepared_scale_products(
    w0: [u8; 2],
    w1: [u8; 2],
    xd: &[f32; 2],
) -> __m128 {
    let bits = u16::from_le_bytes(w0) as i32 | (u16::from_le_bytes(w1) as i32) << 16;
    let w = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
    // SAFETY: `xd` is two readable f32 (8 bytes); `load_sd` has no alignment requirement.
    let x = unsafe { _mm_castpd_ps(_mm_load_sd(xd.as_ptr().cast())) };
    _mm_mul_ps(w, x)
}

/// Lane 0 of `p` in all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn splat0(p: __m128) -> __m256 {
    _mm256_broadcastss_ps(p)
}

/// Lane 1 of `p` in all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn splat1(p: __m128) -> __m256 {
    // movehdup: [p1, p1, p3, p3].
    _mm256_broadcastss_ps(_mm_movehdup_ps(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_products_lanes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        let h = |v: f32| half::f16::from_f32(v).to_le_bytes();
        // SAFETY: AVX2/FMA/F16C checked above.
        let (p, d0, d1, s) = unsafe {
            let p = scale_products(h(0.5), h(-3.0), h(0.25), h(2.0));
            let mut out = [0f32; 4];
            _mm_storeu_ps(out.as_mut_ptr(), p);
            let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
            _mm256_storeu_ps(a.as_mut_ptr(), splat0(p));
            _mm256_storeu_ps(b.as_mut_ptr(), splat1(p));
            (
                out,
                a,
                b,
                hsum_ps(_mm256_setr_ps(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)),
            )
        };
        assert_eq!(&p[..2], &[0.125, -6.0]);
        assert_eq!(d0, [0.125; 8]);
        assert_eq!(d1, [-6.0; 8]);
        assert_eq!(s, 36.0);
    }
}
