//! Q8_0 weights against Q8_0-quantised activations, and the activation quantiser.

use std::arch::x86_64::*;

use super::{hsum_ps, load32, prefetch_ahead, scale_products, splat0, splat1};
use crate::blocks::{BlockQ8_0, QK};

/// `sum_b d_w[b] * d_x[b] * sum_i w[b][i] * x[b][i]`, the integer sum of each block exact.
pub(crate) fn dot(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: reached only through the AVX2 table (and the AVX-512 one without VNNI), which are
    // built only where `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// Bit-identical to `scalar::q8_0::quantize_row_activations` (llama.cpp's x86 activation quantiser).
pub(crate) fn quantize_row(x: &[f32], out: &mut [BlockQ8_0]) {
    // SAFETY: as for `dot`.
    unsafe { quantize_row_avx2(x, out) }
}

/// The eight partial sums (i32) of `w . x` over one block, with `vpmaddubsw`, which multiplies
/// unsigned by signed bytes: `|w|` times `x` with the sign of `w` (ggml's `mul_sum_i8_pairs`).
/// Exact unless `x` holds -128: `|w| <= 128` and `|x| <= 127` keep each pair sum within
/// `2 * 128 * 127 < 2^15` (no saturation), and `-x` is representable. `dot_avx2` checks for -128.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_i8(w: __m256i, x: __m256i) -> __m256i {
    let aw = _mm256_sign_epi8(w, w);
    let sx = _mm256_sign_epi8(x, w);
    _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1))
}

/// Two blocks a step into two accumulators: integer block sums (`mul_sum_i8`), converted to f32
/// (exact: at most `32 * 128^2 < 2^24`), times the product of the scales, summed by FMA.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    // The smallest activation byte seen: -128 sends the whole product to the exact path.
    let mut xmin = _mm256_setzero_si256();
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for (wb, xb) in (&mut wp).zip(&mut xp) {
        prefetch_ahead(wb.as_ptr());
        let d = scale_products(wb[0].d, wb[1].d, xb[0].d, xb[1].d);
        let (x0, x1) = (load32(&xb[0].qs), load32(&xb[1].qs));
        xmin = _mm256_min_epi8(xmin, _mm256_min_epi8(x0, x1));
        let s0 = _mm256_cvtepi32_ps(mul_sum_i8(load32(&wb[0].qs), x0));
        let s1 = _mm256_cvtepi32_ps(mul_sum_i8(load32(&wb[1].qs), x1));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
        acc1 = _mm256_fmadd_ps(splat1(d), s1, acc1);
    }
    if let ([wb], [xb]) = (wp.remainder(), xp.remainder()) {
        let d = scale_products(wb.d, [0; 2], xb.d, [0; 2]);
        let x0 = load32(&xb.qs);
        xmin = _mm256_min_epi8(xmin, x0);
        let s0 = _mm256_cvtepi32_ps(mul_sum_i8(load32(&wb.qs), x0));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
    }
    let has_min = _mm256_movemask_epi8(_mm256_cmpeq_epi8(xmin, _mm256_set1_epi8(i8::MIN)));
    if has_min != 0 {
        // SAFETY: same features.
        return unsafe { dot_exact(w, x) };
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

/// The same product with bytes widened to i16 (`vpmaddwd`): exact for every byte value, slower.
/// `dot_avx2` comes here when the activations hold -128, which `quantize_row` writes only for
/// degenerate blocks (subnormal values, whose inverse scale overflows to infinity).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_exact(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (wb, xb) in w.iter().zip(x) {
        let (wv, xv) = (load32(&wb.qs), load32(&xb.qs));
        let lo = _mm256_madd_epi16(
            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv)),
            _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv)),
        );
        let hi = _mm256_madd_epi16(
            _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(wv)),
            _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(xv)),
        );
        let d = scale_products(wb.d, [0; 2], xb.d, [0; 2]);
        acc = _mm256_fmadd_ps(splat0(d), _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), acc);
    }
    hsum_ps(acc)
}

/// `r.round_ties_even()` (ggml's `_mm256_round_ps(v, _MM_ROUND_NEAREST)`), then Rust's saturating
/// `as i8` ([`saturate_i8`]), as i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_even_to_i8_lanes(r: __m256) -> __m256i {
    let q = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(r);
    _mm256_cvttps_epi32(saturate_i8(q))
}

/// The values Rust's saturating `as i8` gives, still as f32: NaN to 0, beyond the range to
/// -128/127. Before or after rounding to an integer alike: rounding is monotone and keeps the
/// bounds, which are integers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn saturate_i8(r: __m256) -> __m256 {
    let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
    _mm256_min_ps(
        _mm256_max_ps(r, _mm256_set1_ps(-128.0)),
        _mm256_set1_ps(127.0),
    )
}

/// The 32 values of a block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn load_block(xs: &[f32; QK]) -> [__m256; 4] {
    let p = xs.as_ptr();
    // SAFETY: `xs` is 32 readable values; `loadu` has no alignment requirement.
    unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    }
}

/// `max |v|` over the 32 lanes by `vmaxps`, NaN lanes dropped (as `f32::max` drops them): never NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn abs_max(v: &[__m256; 4]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    // max(a, b) returns b when a is NaN: the running maximum (never NaN) is the second operand.
    let mut m = _mm256_setzero_ps();
    for &v in v {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, v), m);
    }
    // All lanes are non-NaN and >= 0 here, so the order of the reduction does not matter.
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

/// Stores four vectors of i32 lanes in -128..=127 (values 0..8, 8..16, ...) as the 32 bytes `qs`
/// in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn store_i8(q: [__m256i; 4], qs: &mut [i8; QK]) {
    // packs work within 128-bit halves: after both packs the 4-byte groups are in the order
    // 0 2 4 6 1 3 5 7 (group k = values 4k..4k+4); the permute puts them back.
    let q16a = _mm256_packs_epi32(q[0], q[1]);
    let q16b = _mm256_packs_epi32(q[2], q[3]);
    let q8 = _mm256_packs_epi16(q16a, q16b);
    let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `qs` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), q8) };
}

/// `blocks::to_scale(d)` for a `d` that is not NaN: `half` converts with this same instruction where the
/// CPU has F16C, and its software path rounds to nearest even like it. Inline, where the call into
/// `half` cost more than the rest of a block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn f16_bits(d: f32) -> [u8; 2] {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d));
    (_mm_extract_epi16::<0>(h) as u16).to_le_bytes()
}

/// Per block: `amax` by `vmaxps` (NaN lanes dropped, as `f32::max` drops them), then the scale in
/// scalar code exactly as the reference, then `x * id` and the reference's rounding on 32 lanes.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_avx2(x: &[f32], out: &mut [BlockQ8_0]) {
    for (b, xs) in out.iter_mut().zip(x.as_chunks::<QK>().0) {
        let v = load_block(xs);
        // amax is never NaN (NaN lanes were dropped), so neither is d. As llama.cpp's x86
        // `quantize_row_q8_0`: `id = 127 / amax` (not `1 / d`), round half to even.
        let amax = abs_max(&v);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        b.d = f16_bits(d);

        let vid = _mm256_set1_ps(id);
        store_i8(
            v.map(|v| round_even_to_i8_lanes(_mm256_mul_ps(v, vid))),
            &mut b.qs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::extremes::assert_quantizes_as;
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    fn blocks_of(vals: &[i8], d: f32) -> Vec<BlockQ8_0> {
        vals.chunks_exact(QK)
            .map(|c| {
                let mut b = BlockQ8_0 {
                    d: to_scale(d),
                    ..Default::default()
                };
                for (q, &v) in b.qs.iter_mut().zip(c) {
                    *q = v;
                }
                b
            })
            .collect()
    }

    /// Bytes -128 in both operands (the sign trick's blind spot) give the exact integer sum.
    #[test]
    fn dot_with_min_bytes_is_exact() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in [1, 2, 3, 5] {
            let mut w = vec![0i8; nb * QK];
            let mut x = vec![0i8; nb * QK];
            for i in 0..nb * QK {
                w[i] = [-128, -127, -1, 0, 1, 127][i % 6];
                x[i] = [-128, -128, -7, 127, -128, 3, 0][i % 7];
            }
            // Scale 1: every partial sum is a small integer, so float sums are exact.
            let (w, x) = (blocks_of(&w, 1.0), blocks_of(&x, 1.0));
            assert_eq!(dot(&w, &x), scalar::q8_0::dot(&w, &x), "blocks={nb}");
            // SAFETY: AVX2 checked above.
            assert_eq!(unsafe { dot_exact(&w, &x) }, scalar::q8_0::dot(&w, &x));
        }
    }

    /// Exact ties, values next to ties, huge, tiny, infinite and NaN inputs, bit for bit.
    #[test]
    fn quantize_row_rounding_is_bit_identical() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        assert_quantizes_as(quantize_row, scalar::q8_0::quantize_row_activations);
    }
}
