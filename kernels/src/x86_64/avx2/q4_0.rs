//! Q4_0 weights against Q8_0-quantised activations.

use std::arch::x86_64::*;

use super::{hsum_ps, load32, prefetch_ahead, scale_products, splat0, splat1};
use crate::blocks::{BlockQ4_0, BlockQ8_0};

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]`, the integer sum of each block exact.
pub(crate) fn dot(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    // SAFETY: reached only through the AVX2 table (and the AVX-512 one without VNNI), which are
    // built only where `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
}

/// Two rows times one activation vector. Each row goes through exactly the operations of [`dot`], so
/// each result is bit-identical to it; the activation loads and the `8 * x` pair sums are shared,
/// which is most of what keeps a single-row Q4_0 product from running at memory bandwidth.
pub(crate) fn dot2(w0: &[BlockQ4_0], w1: &[BlockQ4_0], x: &[BlockQ8_0]) -> [f32; 2] {
    // SAFETY: as in `dot`: only reachable through tables built where AVX2, FMA and F16C exist.
    unsafe { dot2_avx2(w0, w1, x) }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot2_avx2(w0: &[BlockQ4_0], w1: &[BlockQ4_0], x: &[BlockQ8_0]) -> [f32; 2] {
    let n = w0.len().min(w1.len()).min(x.len());
    let (w0, w1, x) = (&w0[..n], &w1[..n], &x[..n]);
    // acc[row][even/odd block], as dot_avx2's acc0/acc1 for each row.
    let mut acc = [[_mm256_setzero_ps(); 2]; 2];
    let eight = _mm256_set1_epi8(8);
    let ones = _mm256_set1_epi16(1);
    let pairs = n / 2;
    for i in 0..pairs {
        let (b0, b1) = (2 * i, 2 * i + 1);
        prefetch_ahead(w0[b0..].as_ptr());
        prefetch_ahead(w1[b0..].as_ptr());
        let (x0, x1) = (load32(&x[b0].qs), load32(&x[b1].qs));
        let (e0, e1) = (
            _mm256_maddubs_epi16(eight, x0),
            _mm256_maddubs_epi16(eight, x1),
        );
        for (r, w) in [w0, w1].into_iter().enumerate() {
            let d = scale_products(w[b0].d, w[b1].d, x[b0].d, x[b1].d);
            let p0 = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles(&w[b0].qs), x0), e0);
            let p1 = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles(&w[b1].qs), x1), e1);
            let s0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(p0, ones));
            let s1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(p1, ones));
            acc[r][0] = _mm256_fmadd_ps(splat0(d), s0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(splat1(d), s1, acc[r][1]);
        }
    }
    if n % 2 == 1 {
        let b = n - 1;
        let xq = load32(&x[b].qs);
        for (r, w) in [w0, w1].into_iter().enumerate() {
            let d = scale_products(w[b].d, [0; 2], x[b].d, [0; 2]);
            let s0 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&w[b].qs), xq));
            acc[r][0] = _mm256_fmadd_ps(splat0(d), s0, acc[r][0]);
        }
    }
    [
        hsum_ps(_mm256_add_ps(acc[0][0], acc[0][1])),
        hsum_ps(_mm256_add_ps(acc[1][0], acc[1][1])),
    ]
}

/// The 32 unsigned 4-bit values of a block as bytes `0..=15` in element order: the low nibbles of
/// `qs` (elements 0..16) in the low 128 bits, the high nibbles (elements 16..32) in the high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn nibbles(qs: &[u8; 16]) -> __m256i {
    // SAFETY: `qs` is 16 readable bytes; `loadu` has no alignment requirement.
    let v = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    // The 16-bit shift moves each byte's high nibble down (and a neighbour's low nibble into the
    // high half of the byte, which the mask clears).
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(v), v);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// The eight partial sums (i32) of `(q - 8) . x` over one block, exact for every `x`:
/// `vpmaddubsw(q, x) - vpmaddubsw(8, x)`, unsigned `q <= 15` times signed `x`, pair sums within
/// `2 * 15 * 128` (no saturation), then pairs of i16 to i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_q4(q: __m256i, x: __m256i) -> __m256i {
    let p = _mm256_sub_epi16(
        _mm256_maddubs_epi16(q, x),
        _mm256_maddubs_epi16(_mm256_set1_epi8(8), x),
    );
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Two blocks a step into two accumulators, as `q8_0::dot_avx2`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut wp, mut xp) = (w.chunks_exact(2), x.chunks_exact(2));
    for (wb, xb) in (&mut wp).zip(&mut xp) {
        prefetch_ahead(wb.as_ptr());
        let d = scale_products(wb[0].d, wb[1].d, xb[0].d, xb[1].d);
        let s0 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&wb[0].qs), load32(&xb[0].qs)));
        let s1 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&wb[1].qs), load32(&xb[1].qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
        acc1 = _mm256_fmadd_ps(splat1(d), s1, acc1);
    }
    if let ([wb], [xb]) = (wp.remainder(), xp.remainder()) {
        let d = scale_products(wb.d, [0; 2], xb.d, [0; 2]);
        let s0 = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&wb.qs), load32(&xb.qs)));
        acc0 = _mm256_fmadd_ps(splat0(d), s0, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{to_scale, QK};
    use crate::scalar;

    /// The two-row kernel gives each row exactly what the one-row kernel gives.
    #[test]
    fn dot2_is_dot_bit_for_bit() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for nb in [0usize, 1, 2, 3, 4, 5, 17, 64, 129] {
            let mut blocks = |n| -> Vec<BlockQ4_0> {
                (0..n)
                    .map(|_| {
                        let mut b = BlockQ4_0 {
                            d: to_scale((next() % 1000) as f32 / 1e4 + 1e-4),
                            ..Default::default()
                        };
                        b.qs.iter_mut().for_each(|q| *q = next() as u8);
                        b
                    })
                    .collect()
            };
            let (w0, w1) = (blocks(nb), blocks(nb));
            let x: Vec<BlockQ8_0> = (0..nb)
                .map(|_| {
                    let mut b = BlockQ8_0 {
                        d: to_scale((next() % 1000) as f32 / 1e3 + 1e-3),
                        ..Default::default()
                    };
                    b.qs.iter_mut().for_each(|q| *q = next() as i8);
                    b
                })
                .collect();
            let [a, b] = dot2(&w0, &w1, &x);
            assert_eq!(a.to_bits(), dot(&w0, &x).to_bits(), "row 0, blocks={nb}");
            assert_eq!(b.to_bits(), dot(&w1, &x).to_bits(), "row 1, blocks={nb}");
        }
    }

    /// Every nibble value against every extreme activation byte, -128 included.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in [1usize, 2, 3, 4, 7] {
            let w: Vec<BlockQ4_0> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ4_0 {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = ((j + b) % 16) as u8 | ((15 - (j * 3 + b) % 16) as u8) << 4;
                    }
                    blk
                })
                .collect();
            let x: Vec<BlockQ8_0> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ8_0 {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = [-128, 127, -127, 0, 1, -1][(j + b) % 6];
                    }
                    blk
                })
                .collect();
            // Scale 1: exact small integers throughout.
            assert_eq!(dot(&w, &x), scalar::q4_0::dot(&w, &x), "blocks={nb}");
        }
        let _ = QK;
    }
}
