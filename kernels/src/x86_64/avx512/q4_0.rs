//! Q4_0 weights against Q8_0-quantised activations, with AVX-512 VNNI. (Without VNNI the table uses
//! the AVX2 kernel: see `mod.rs`.)

use std::arch::x86_64::*;

use super::{join, spread};
use crate::acts::Q8Acts;
use crate::blocks::{BlockQ4_0, BlockQ8_0};
use crate::x86_64::avx2::q4_0::nibbles;
use crate::x86_64::avx2::{load32, prefetch_ahead, scale_products};

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]`, the integer sum of each block exact.
/// Reads only `x.blocks()`.
pub(crate) fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    let x = x.blocks();
    // SAFETY: the AVX-512 table holds this function only where `avx512_vnni_supported()` holds
    // (AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI): `dispatch` builds the table only where
    // `avx512_supported()` holds, and `table()` checks VNNI before choosing this kernel.
    unsafe { dot_vnni(w, x) }
}

/// `y[r] = w[r] . x` for the `y.len()` rows of `x.len()` blocks stored back to back in `w`.
pub(crate) fn dot_rows(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    crate::scalar::q4_0::rows_with(dot, w, x, y)
}

/// Zero blocks: padding for an odd last block (scale +0; the quants contribute
/// `(0 - 8) * 0 = 0`).
const ZERO_W: BlockQ4_0 = BlockQ4_0 {
    d: [0; 2],
    qs: [0; 16],
};
const ZERO_X: BlockQ8_0 = BlockQ8_0 {
    d: [0; 2],
    qs: [0; 32],
};

/// Integer sums of two blocks side by side, as f32 (lanes 0..8: block 0, lanes 8..16: block 1, each
/// lane the sum of 4 products, exact), and their scales, spread the same way.
///
/// `vpdpbusd` multiplies the unsigned nibbles `q` (0..=15) by the signed activations:
/// `sum q x - sum 8 x = sum (q - 8) x`, exact for every byte (sums into i32, no saturation).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair(w0: &BlockQ4_0, w1: &BlockQ4_0, x0: &BlockQ8_0, x1: &BlockQ8_0) -> (__m512, __m512) {
    prefetch_ahead(w0);
    let qv = join(nibbles(&w0.qs), nibbles(&w1.qs));
    let xv = join(load32(&x0.qs), load32(&x1.qs));
    let zero = _mm512_setzero_si512();
    let qx = _mm512_dpbusd_epi32(zero, qv, xv);
    let offset = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(8), xv);
    let s = _mm512_cvtepi32_ps(_mm512_sub_epi32(qx, offset));
    (s, spread(scale_products(w0.d, w1.d, x0.d, x1.d)))
}

/// Four blocks a step (two pairs, two accumulators), then a pair, then a last block padded with
/// zero blocks.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and VNNI (and AVX2, FMA, F16C).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_vnni(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let (mut wq, mut xq) = (w.chunks_exact(4), x.chunks_exact(4));
    for (wb, xb) in (&mut wq).zip(&mut xq) {
        let (s, d) = pair(&wb[0], &wb[1], &xb[0], &xb[1]);
        acc0 = _mm512_fmadd_ps(d, s, acc0);
        let (s, d) = pair(&wb[2], &wb[3], &xb[2], &xb[3]);
        acc1 = _mm512_fmadd_ps(d, s, acc1);
    }
    let (wr, xr) = (wq.remainder(), xq.remainder());
    let mut k = 0;
    if wr.len() >= 2 {
        let (s, d) = pair(&wr[0], &wr[1], &xr[0], &xr[1]);
        acc0 = _mm512_fmadd_ps(d, s, acc0);
        k = 2;
    }
    if let (Some(wb), Some(xb)) = (wr.get(k), xr.get(k)) {
        let (s, d) = pair(wb, &ZERO_W, xb, &ZERO_X);
        acc1 = _mm512_fmadd_ps(d, s, acc1);
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Every block count's tail path, every nibble against bytes -128 and 127; scale 1 keeps every
    /// float exact, so the result must equal the reference exactly. Runs where the CPU has VNNI.
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx512_vnni_supported() {
            return;
        }
        for nb in 0..12usize {
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
            let x = Q8Prepared::from_blocks(x, 1);
            let x = x.get(0);
            assert_eq!(dot(&w, &x), scalar::q4_0::dot(&w, &x), "blocks={nb}");
        }
    }
}
