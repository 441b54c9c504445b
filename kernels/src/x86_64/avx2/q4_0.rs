//! Q4_0 weights against Q8_0-quantised activations.

use std::arch::x86_64::*;

use super::{hsum_ps, load32};
use crate::acts::{Q8Acts, Quants32, GROUP};
use crate::blocks::{scale, BlockQ4_0};

/// How far ahead of the current step the loop asks for weights, and how many 64-byte lines a step
/// (two groups, 288 bytes: five lines from any start, so consecutive steps cover every line). A
/// hint per line matters more than the distance. Measured on Zen 3 (512 MiB of Q4_0, one thread,
/// against the read probe in the same run): no hints 70 %, one hint per group (every 2.25 lines)
/// 46 %, one per line 1 KiB ahead 87 %, 2 KiB ahead 92 %.
const PREFETCH_BYTES: usize = 2048;
const PREFETCH_LINES: usize = 5;

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]`, the integer sum of each block exact.
pub(crate) fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    // SAFETY: reached only through the AVX2 table (and the AVX-512 one without VNNI), which are
    // built only where `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { dot_avx2(w, x) }
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

/// `sum_i q_i x_i` (unsigned nibbles, not yet minus 8) of the eight blocks of a group, one i32 lane
/// per block in block order, exact.
///
/// Blocks `p` and `p + 4` share a register: their nibble bytes side by side, masked to the low
/// nibbles (values 0..16 of each block) and shifted to the high ones (16..32), against the
/// activations in [`Q8Acts::groups`] order (no shuffles). `vpmaddubsw` multiplies the unsigned
/// nibbles by the signed bytes: a pair sum is within `2 * 15 * 128`, the low plus the high pair
/// within `4 * 15 * 128 < 2^15` (no saturation). The four registers of lane sums are then added
/// across with unpacks, which leaves the blocks in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn group_sums(w: &[BlockQ4_0; GROUP], x: &[Quants32; GROUP]) -> __m256i {
    let mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let pair = |p: usize| {
        let (lo_x, hi_x) = (&x[2 * p].0, &x[2 * p + 1].0);
        // SAFETY: two 16-byte nibble arrays and two 32-byte quant arrays, borrowed for the call;
        // `loadu` has no alignment requirement.
        let (v, lo_x, hi_x) = unsafe {
            (
                _mm256_loadu2_m128i(w[p + 4].qs.as_ptr().cast(), w[p].qs.as_ptr().cast()),
                _mm256_loadu_si256(lo_x.as_ptr().cast()),
                _mm256_loadu_si256(hi_x.as_ptr().cast()),
            )
        };
        let lo = _mm256_and_si256(v, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
        let s = _mm256_add_epi16(
            _mm256_maddubs_epi16(lo, lo_x),
            _mm256_maddubs_epi16(hi, hi_x),
        );
        // [4 lanes of block p | 4 lanes of block p + 4].
        _mm256_madd_epi16(s, ones)
    };
    let (s0, s1, s2, s3) = (pair(0), pair(1), pair(2), pair(3));
    // [b0 b1 b0 b1 | b4 b5 b4 b5] and [b2 b3 b2 b3 | b6 b7 b6 b7], then [b0 b1 b2 b3 | b4 b5 b6 b7].
    let s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(s0, s1), _mm256_unpackhi_epi32(s0, s1));
    let s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(s2, s3), _mm256_unpackhi_epi32(s2, s3));
    _mm256_add_epi32(
        _mm256_unpacklo_epi64(s01, s23),
        _mm256_unpackhi_epi64(s01, s23),
    )
}

/// The scales of the eight blocks of a group as f32 (exact; F16C).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn group_scales(w: &[BlockQ4_0; GROUP]) -> __m256 {
    // Gathered in integer registers, which this loop leaves idle: `vpgatherdd` measured slower,
    // `vpinsrw` no faster.
    let h = |k: usize| u16::from_le_bytes(w[k].d) as u64;
    let lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
    let hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
    _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
}

/// `acc + d_w * d_x * s` for the eight blocks of a group, `s` the [`group_sums`] minus
/// `8 sum_i x_i` (exact integers; to f32 exactly: `|s| <= 32 * 8 * 128 < 2^24`), `d_w * d_x` each
/// exact and one f32 product, as the reference, added by FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn group_fma(
    acc: __m256,
    sums: __m256i,
    w: &[BlockQ4_0; GROUP],
    xd: &[f32; GROUP],
    xsum: &[i32; GROUP],
) -> __m256 {
    // SAFETY: eight i32 and eight f32, borrowed for the call; `loadu` has no alignment requirement.
    let (xsum, xd) = unsafe {
        (
            _mm256_loadu_si256(xsum.as_ptr().cast()),
            _mm256_loadu_ps(xd.as_ptr()),
        )
    };
    let sums = _mm256_sub_epi32(sums, _mm256_slli_epi32::<3>(xsum));
    let d = _mm256_mul_ps(group_scales(w), xd);
    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
}

/// Two groups (16 blocks) a step into two accumulators, then a last group, then the blocks after the
/// last whole group one at a time.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    let n = w.len().min(x.len());
    let (w, xb, xd, xs) = (&w[..n], &x.blocks()[..n], &x.d()[..n], &x.sums()[..n]);
    // `x.groups()` holds every whole group of `x`; the `min` only keeps the zips below in step.
    let groups = (n / GROUP).min(x.groups().len() / GROUP);
    let done = groups * GROUP;
    let wg = w[..done].as_chunks::<GROUP>().0;
    let xg = x.groups()[..done].as_chunks::<GROUP>().0;
    let dg = xd[..done].as_chunks::<GROUP>().0;
    let sg = xs[..done].as_chunks::<GROUP>().0;
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let ((w2, w1), (x2, x1)) = (wg.as_chunks::<2>(), xg.as_chunks::<2>());
    let ((d2, d1), (s2, s1)) = (dg.as_chunks::<2>(), sg.as_chunks::<2>());
    for (((w, x), d), s) in w2.iter().zip(x2).zip(d2).zip(s2) {
        let ahead = w.as_ptr().cast::<i8>().wrapping_add(PREFETCH_BYTES);
        for line in 0..PREFETCH_LINES {
            // A hint: it never faults, also past the end of the weights, and `wrapping_add` keeps
            // the address arithmetic defined there.
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
        }
        let (sums0, sums1) = (group_sums(&w[0], &x[0]), group_sums(&w[1], &x[1]));
        acc0 = group_fma(acc0, sums0, &w[0], &d[0], &s[0]);
        acc1 = group_fma(acc1, sums1, &w[1], &d[1], &s[1]);
    }
    for (((w, x), d), s) in w1.iter().zip(x1).zip(d1).zip(s1) {
        acc0 = group_fma(acc0, group_sums(w, x), w, d, s);
    }
    for ((w, x), &xd) in w[done..].iter().zip(&xb[done..]).zip(&xd[done..]) {
        let s = _mm256_cvtepi32_ps(mul_sum_q4(nibbles(&w.qs), load32(&x.qs)));
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(scale(w.d) * xd), s, acc1);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::{to_scale, BlockQ8_0};
    use crate::scalar;

    /// Every nibble value against extreme activation bytes (-128 included), and the all-15 x -128
    /// and all-15 x 127 blocks (the largest pair sums), over whole groups and tails.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx2_supported() {
            return;
        }
        for nb in [0usize, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 24, 33] {
            let w: Vec<BlockQ4_0> = (0..nb)
                .map(|b| {
                    let mut blk = BlockQ4_0 {
                        d: to_scale(1.0),
                        ..Default::default()
                    };
                    for (j, q) in blk.qs.iter_mut().enumerate() {
                        *q = match b % 5 {
                            3 => 0xff,
                            _ => ((j + b) % 16) as u8 | ((15 - (j * 3 + b) % 16) as u8) << 4,
                        };
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
                        *q = match b % 4 {
                            2 => -128,
                            3 => 127,
                            _ => [-128, 127, -127, 0, 1, -1][(j + b) % 6],
                        };
                    }
                    blk
                })
                .collect();
            let x = Q8Prepared::from_blocks(x, 1);
            // Scale 1: exact small integers throughout.
            assert_eq!(
                dot(&w, &x.get(0)),
                scalar::q4_0::dot(&w, &x.get(0)),
                "blocks={nb}"
            );
        }
    }
}
