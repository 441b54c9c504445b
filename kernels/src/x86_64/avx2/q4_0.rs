//! Q4_0 weights against Q8_0-quantised activations.

use std::arch::x86_64::*;

use crate::acts::{Q8Acts, Quants32, GROUP};
use crate::blocks::BlockQ4_0;

/// How far ahead of the current step the loop asks for weights, and how many 64-byte lines a step
/// (two groups, 288 bytes: five lines from any start, so consecutive steps cover every line). A
/// hint per line matters more than the distance. Measured on Zen 3 (512 MiB of Q4_0, one thread,
/// against the read probe in the same run): no hints 70 %, one hint per group (every 2.25 lines)
/// 46 %, one per line 1 KiB ahead 87 %, 2 KiB ahead 92 %.
pub(in crate::x86_64) const PREFETCH_BYTES: usize = 2048;
pub(in crate::x86_64) const PREFETCH_LINES: usize = 5;

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]`, the integer sum of each block exact.
pub(crate) fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    // SAFETY: reached only through the AVX2 table (and the AVX-512 one without VNNI), which are
    // built only where `avx2_supported()` (AVX2, FMA, F16C) holds.
    unsafe { kernels::dot(w, x) }
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
pub(in crate::x86_64) fn mul_sum_q4(q: __m256i, x: __m256i) -> __m256i {
    let p = _mm256_sub_epi16(
        _mm256_maddubs_epi16(q, x),
        _mm256_maddubs_epi16(_mm256_set1_epi8(8), x),
    );
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// One i32 per block, in block order, from the four registers of lane sums of a group (register
/// `p`: four lanes of block `p`, then four of block `p + 4`), added across with unpacks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn group_lanes(s: [__m256i; 4]) -> __m256i {
    // [b0 b1 b0 b1 | b4 b5 b4 b5] and [b2 b3 b2 b3 | b6 b7 b6 b7], then [b0 b1 b2 b3 | b4 b5 b6 b7].
    let [s0, s1, s2, s3] = s;
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
pub(in crate::x86_64) fn group_scales(w: &[BlockQ4_0; GROUP]) -> __m256 {
    // Gathered in integer registers, which this loop leaves idle: `vpgatherdd` measured slower,
    // `vpinsrw` no faster.
    let h = |k: usize| u16::from_le_bytes(w[k].d) as u64;
    let lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
    let hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
    _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
}

/// The nibbles of two blocks side by side, as bytes `0..=15`: `([w0 low | w1 low], [w0 high | w1 high])`
/// (values 0..16 of each block, then 16..32), against [`Q8Acts::tail`]'s order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn pair_nibbles(w0: &BlockQ4_0, w1: &BlockQ4_0) -> (__m256i, __m256i) {
    let mask = _mm256_set1_epi8(0x0f);
    // SAFETY: two 16-byte nibble arrays, borrowed for the call; `loadu` has no alignment requirement.
    let v = unsafe { _mm256_loadu2_m128i(w1.qs.as_ptr().cast(), w0.qs.as_ptr().cast()) };
    (
        _mm256_and_si256(v, mask),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask),
    )
}

/// `sum_i q_i x_i` of unsigned nibbles `lo`/`hi` (as [`pair_nibbles`] gives them) against two
/// activation registers, into eight i32 lanes, exact: `vpmaddubsw` pair sums within `2 * 15 * 128`, the
/// low plus the high within `4 * 15 * 128 < 2^15`, then pairs of i16 to i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn nibble_dot(
    lo: __m256i,
    hi: __m256i,
    lo_x: &Quants32,
    hi_x: &Quants32,
) -> __m256i {
    // SAFETY: two 32-byte quant arrays, borrowed for the call; `loadu` has no alignment requirement.
    let (lo_x, hi_x) = unsafe {
        (
            _mm256_loadu_si256(lo_x.0.as_ptr().cast()),
            _mm256_loadu_si256(hi_x.0.as_ptr().cast()),
        )
    };
    let s = _mm256_add_epi16(
        _mm256_maddubs_epi16(lo, lo_x),
        _mm256_maddubs_epi16(hi, hi_x),
    );
    _mm256_madd_epi16(s, _mm256_set1_epi16(1))
}

/// `[d_w0; 4 lanes | d_w1; 4 lanes]`, the scales of two blocks as f32 (exact; F16C).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86_64) fn pair_wscales(w0: &BlockQ4_0, w1: &BlockQ4_0) -> __m256 {
    let bits = u16::from_le_bytes(w0.d) as i32 | (u16::from_le_bytes(w1.d) as i32) << 16;
    _mm256_permutevar8x32_ps(
        _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(bits))),
        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
    )
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]` (`scalar::q4_0::matmul_rows`).
pub(crate) fn matmul_rows(w: &[BlockQ4_0], x: &crate::acts::Q8Prepared, yt: &mut [f32]) {
    // SAFETY: as for `dot`.
    unsafe { kernels::matmul_rows(w, x, yt) }
}

/// `y[r] = w[r] . x` for the `y.len()` rows of `x.len()` blocks stored back to back in `w`.
pub(crate) fn dot_rows(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    // SAFETY: as for `dot`.
    unsafe { kernels::dot_rows(w, x, y) }
}

/// The Q4_0 kernels of a tier, in a module `$name` compiled for `$features`, over its group scales
/// `$scales` and its unsigned-nibble dot product `$nibble_dot` (paths): `dot_rt` (a tile of rows by
/// tokens), `dot_n` (`R` rows at once), `dot_rows` (the rows kernel of the table), `matmul_rows`
/// (prefill) and `dot` (one row). The AVX2 tier instantiates it with the `vpmaddubsw`
/// sums and scalar-gathered scales, the AVX-512 tier with VNNI sums and VBMI-gathered scales;
/// every instance computes the same integers and the same f32 operations in the same order, so all
/// give the same bits.
macro_rules! q4_0_kernels {
    ($name:ident, $features:literal, $scales:path, $nibble_dot:path) => {
        pub(in crate::x86_64) mod $name {
            use std::arch::x86_64::*;

            use crate::acts::{Q8Acts, Quants32, GROUP};
            use crate::blocks::BlockQ4_0;
            use crate::x86_64::avx2::q4_0::{
                group_lanes, mul_sum_q4, nibbles, pair_nibbles, pair_wscales, PREFETCH_BYTES,
                PREFETCH_LINES,
            };
            use crate::x86_64::avx2::{hsum4_ps, hsum_ps, load32};

            /// `w . x` for one row: [`dot_n`] of one.
            ///
            /// # Safety
            /// The CPU must support `$features`.
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) unsafe fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
                dot_n::<1>([w], x, true)[0]
            }

            /// `sum_i q_i x_i` (unsigned nibbles, not yet minus 8) of the eight blocks of a group, one
            /// i32 lane per block in block order, exact. Blocks `p` and `p + 4` share a register
            /// ([`pair_nibbles`]), against the activations in [`Q8Acts::groups`] order (no shuffles);
            /// the four registers of lane sums are then added across ([`group_lanes`]).
            #[inline]
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) fn group_sums(
                w: &[BlockQ4_0; GROUP],
                x: &[Quants32; GROUP],
            ) -> __m256i {
                let mut s = [_mm256_setzero_si256(); 4];
                for (p, s) in s.iter_mut().enumerate() {
                    let (lo, hi) = pair_nibbles(&w[p], &w[p + 4]);
                    // [4 lanes of block p | 4 lanes of block p + 4].
                    *s = $nibble_dot(lo, hi, &x[2 * p], &x[2 * p + 1]);
                }
                group_lanes(s)
            }

            /// `acc + d_w * d_x * s` for the eight blocks of a group, `s` the group's sums minus
            /// `8 sum_i x_i` (exact integers; to f32 exactly: `|s| <= 32 * 8 * 128 < 2^24`), `d_w * d_x` each
            /// exact and one f32 product, as the reference, added by FMA.
            #[inline]
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) fn group_fma(
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
                let d = _mm256_mul_ps($scales(w), xd);
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
            }

            /// `w[r] . x` for `R` rows at once: [`dot_rt`] of one token.
            #[inline]
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) fn dot_n<const R: usize>(
                w: [&[BlockQ4_0]; R],
                x: &Q8Acts<'_>,
                hint: bool,
            ) -> [f32; R] {
                let y = dot_rt::<R, 1>(w, [x], hint);
                let mut out = [0f32; R];
                for r in 0..R {
                    out[r] = y[r][0];
                }
                out
            }

            /// `w[r] . x[t]` for `R` rows and `T` tokens at once, each sum in the same order as for one
            /// row and one token (so every tile shape gives the one-row kernel's bits): whole groups,
            /// then the blocks after the last whole group two at a time, then the last one, into one
            /// accumulator per row and token, summed across as [`hsum_ps`] does. The rows share the
            /// activations' loads, the tokens the weights' loads, nibbles and scales; `hint` asks for
            /// every line two KiB ahead every other group (long rows; the caller hints short ones).
            #[inline]
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) fn dot_rt<const R: usize, const T: usize>(
                w: [&[BlockQ4_0]; R],
                x: [&Q8Acts<'_>; T],
                hint: bool,
            ) -> [[f32; T]; R] {
                // Loops rather than closures below: a closure does not inherit `target_feature` and is not
                // inlined (measured: 4 % of decode in `array::map` calls).
                let mut n = usize::MAX;
                for w in &w {
                    n = n.min(w.len());
                }
                for x in &x {
                    n = n.min(x.len());
                }
                let mut wn = w;
                for r in 0..R {
                    wn[r] = &w[r][..n];
                }
                let w = wn;
                // `x.groups()` holds every whole group of `x`; the `min` only keeps the loops in step.
                let mut groups = n / GROUP;
                for x in &x {
                    groups = groups.min(x.groups().len() / GROUP);
                }
                let done = groups * GROUP;
                let mut wg: [&[[BlockQ4_0; GROUP]]; R] = [&[]; R];
                for r in 0..R {
                    wg[r] = w[r][..done].as_chunks::<GROUP>().0;
                }
                // (groups) per token: quants in the kernel's order, scales, sums.
                let mut xg: [&[[Quants32; GROUP]]; T] = [&[]; T];
                let mut dg: [&[[f32; GROUP]]; T] = [&[]; T];
                let mut sg: [&[[i32; GROUP]]; T] = [&[]; T];
                for t in 0..T {
                    xg[t] = x[t].groups()[..done].as_chunks::<GROUP>().0;
                    dg[t] = x[t].d()[..done].as_chunks::<GROUP>().0;
                    sg[t] = x[t].sums()[..done].as_chunks::<GROUP>().0;
                }
                let mut acc = [[_mm256_setzero_ps(); T]; R];
                for g in 0..groups {
                    if hint && g % 2 == 0 {
                        for w in &wg {
                            let ahead = w[g].as_ptr().cast::<i8>().wrapping_add(PREFETCH_BYTES);
                            for line in 0..PREFETCH_LINES {
                                // A hint: it never faults, also past the end of the weights, and
                                // `wrapping_add` keeps the address arithmetic defined there.
                                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
                            }
                        }
                    }
                    for (acc, w) in acc.iter_mut().zip(&wg) {
                        for t in 0..T {
                            let s = group_sums(&w[g], &xg[t][g]);
                            acc[t] = group_fma(acc[t], s, &w[g], &dg[t][g], &sg[t][g]);
                        }
                    }
                }
                // The blocks after the last whole group, two at a time (a 448-wide row has six of them),
                // from the activations' tail layout; it is laid out for `x.len()` blocks, which every
                // product passes as the rows' length. (Otherwise they go one at a time below.)
                let mut pairs = (n - done) / 2;
                for x in &x {
                    if x.len() != n || x.tail_corr().len() != pairs {
                        pairs = 0;
                    }
                }
                for p in 0..pairs {
                    let b = done + 2 * p;
                    for (acc, w) in acc.iter_mut().zip(&w) {
                        let (lo, hi) = pair_nibbles(&w[b], &w[b + 1]);
                        let ws = pair_wscales(&w[b], &w[b + 1]);
                        for (acc, x) in acc.iter_mut().zip(&x) {
                            let (lo_x, hi_x) = (&x.tail()[2 * p], &x.tail()[2 * p + 1]);
                            // SAFETY: eight i32 and eight f32; `loadu` has no alignment requirement.
                            let (corr, xd) = unsafe {
                                (
                                    _mm256_loadu_si256(x.tail_corr()[p].as_ptr().cast()),
                                    _mm256_loadu_ps(x.tail_d()[p].as_ptr()),
                                )
                            };
                            // Exact integers: `sum (q - 8) x` of each block spread over its four lanes.
                            let s = _mm256_sub_epi32($nibble_dot(lo, hi, lo_x, hi_x), corr);
                            *acc =
                                _mm256_fmadd_ps(_mm256_mul_ps(ws, xd), _mm256_cvtepi32_ps(s), *acc);
                        }
                    }
                }
                for b in done + 2 * pairs..n {
                    for (acc, w) in acc.iter_mut().zip(&w) {
                        let w = &w[b];
                        let q = nibbles(&w.qs);
                        let wd = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                            u16::from_le_bytes(w.d) as i32,
                        )));
                        for (acc, x) in acc.iter_mut().zip(&x) {
                            let s = _mm256_cvtepi32_ps(mul_sum_q4(q, load32(&x.blocks()[b].qs)));
                            *acc = _mm256_fmadd_ps(_mm256_set1_ps(wd * x.d()[b]), s, *acc);
                        }
                    }
                }
                let mut out = [[0f32; T]; R];
                if R * T == 4 {
                    let mut v = [_mm256_setzero_ps(); 4];
                    for (i, v) in v.iter_mut().enumerate() {
                        *v = acc[i / T][i % T];
                    }
                    let s = hsum4_ps(v);
                    for (i, s) in s.iter().enumerate() {
                        out[i / T][i % T] = *s;
                    }
                } else {
                    for r in 0..R {
                        for t in 0..T {
                            out[r][t] = hsum_ps(acc[r][t]);
                        }
                    }
                }
                out
            }

            /// `yt[r * n + t] = w[r] . x[t]` for the `yt.len() / n` rows of `x`'s block count
            /// stored back to back in `w` and the `n` tokens of `x` (prefill), four tokens at a time.
            ///
            /// # Safety
            /// The CPU must support `$features`.
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) unsafe fn matmul_rows(
                w: &[BlockQ4_0],
                x: &crate::acts::Q8Prepared,
                yt: &mut [f32],
            ) {
                let n = x.n();
                if n == 0 {
                    return;
                }
                let nb = x.get(0).len();
                if nb == 0 {
                    yt.fill(0.0);
                    return;
                }
                let hint = nb * std::mem::size_of::<BlockQ4_0>() >= PREFETCH_BYTES;
                let mut acts = Vec::with_capacity(n);
                for t in 0..n {
                    acts.push(x.get(t));
                }
                let (a4, a1) = acts.as_chunks::<4>();
                // Two rows by four tokens a step: eight accumulators, each weight and activation
                // register used twice or four times.
                let pairs = (yt.len() / n).min(w.len() / nb) / 2;
                let (yt2, yt1) = yt.split_at_mut(pairs * 2 * n);
                for (ys, r) in yt2.chunks_exact_mut(2 * n).zip(w.chunks_exact(2 * nb)) {
                    let ((ys0, ys1), (r0, r1)) = (ys.split_at_mut(n), r.split_at(nb));
                    let ((y40, y10), (y41, y11)) =
                        (ys0.as_chunks_mut::<4>(), ys1.as_chunks_mut::<4>());
                    for ((y40, y41), a) in y40.iter_mut().zip(y41.iter_mut()).zip(a4) {
                        let [o0, o1] = dot_rt::<2, 4>([r0, r1], [&a[0], &a[1], &a[2], &a[3]], hint);
                        (*y40, *y41) = (o0, o1);
                    }
                    for ((y0, y1), a) in y10.iter_mut().zip(y11.iter_mut()).zip(a1) {
                        let [[o0], [o1]] = dot_rt::<2, 1>([r0, r1], [a], hint);
                        (*y0, *y1) = (o0, o1);
                    }
                }
                let rest = w.get(pairs * 2 * nb..).unwrap_or_default();
                for (ys, row) in yt1.chunks_exact_mut(n).zip(rest.chunks_exact(nb)) {
                    let (y4, y1) = ys.as_chunks_mut::<4>();
                    for (y4, a) in y4.iter_mut().zip(a4) {
                        *y4 = dot_rt::<1, 4>([row], [&a[0], &a[1], &a[2], &a[3]], hint)[0];
                    }
                    for (y, a) in y1.iter_mut().zip(a1) {
                        *y = dot_rt::<1, 1>([row], [a], hint)[0][0];
                    }
                }
            }

            /// Rows shorter than [`PREFETCH_BYTES`] go four at a time through [`dot_n`], sharing the
            /// activations' loads and the final sums, with every line of the four hinted [`PREFETCH_BYTES`]
            /// ahead (rows are contiguous: those are later rows); longer rows one at a time, hinted in the
            /// loop. Measured on Zen 5: a 448 x 448 matrix in L2, one thread, 22.8 ns a row through the table
            /// one row at a time, 13.6 ns four at a time; a 128256 x 448 one from DRAM (a small model's LM
            /// head), two threads, 17-20 GB/s one row at a time without hints, 29-33 GB/s so.
            ///
            /// # Safety
            /// The CPU must support `$features`.
            #[target_feature(enable = $features)]
            pub(in crate::x86_64) unsafe fn dot_rows(
                w: &[BlockQ4_0],
                x: &Q8Acts<'_>,
                y: &mut [f32],
            ) {
                let nb = x.len();
                if nb == 0 {
                    y.fill(0.0);
                    return;
                }
                let rows = w.chunks_exact(nb);
                let row_bytes = nb * std::mem::size_of::<BlockQ4_0>();
                if row_bytes >= PREFETCH_BYTES {
                    for (yv, row) in y.iter_mut().zip(rows) {
                        *yv = dot_n::<1>([row], x, true)[0];
                    }
                    return;
                }
                let (y4, y1) = y.as_chunks_mut::<4>();
                let mut rows = rows;
                for y4 in y4 {
                    let (Some(r0), Some(r1), Some(r2), Some(r3)) =
                        (rows.next(), rows.next(), rows.next(), rows.next())
                    else {
                        return;
                    };
                    let start = r0.as_ptr() as usize + PREFETCH_BYTES;
                    let mut line = start & !63;
                    while line < start + 4 * row_bytes {
                        // A hint: it never faults, also past the end of the weights.
                        _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                        line += 64;
                    }
                    *y4 = dot_n::<4>([r0, r1, r2, r3], x, false);
                }
                for (yv, row) in y1.iter_mut().zip(rows) {
                    *yv = dot_n::<1>([row], x, false)[0];
                }
            }
        }
    };
}
pub(in crate::x86_64) use q4_0_kernels;

q4_0_kernels!(
    kernels,
    "avx2,fma,f16c",
    crate::x86_64::avx2::q4_0::group_scales,
    crate::x86_64::avx2::q4_0::nibble_dot
);

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
