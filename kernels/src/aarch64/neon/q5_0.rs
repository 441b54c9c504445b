//! Q5_0 weights against Q8_0-quantised activations, and the fifth bits Q5_1 shares.

use std::arch::aarch64::*;

use super::{s8, scale, I8Dot, SDot, Widen};
use crate::blocks::{BlockQ5_0, BlockQ8_0};

/// `sum_b (d_w * d_a) * sum_i (q_w[i] - 16) * q_a[i]` (ggml's `ggml_vec_dot_q5_0_q8_0`) with base
/// NEON: the 5-bit levels minus 16 built in `i8` (the nibble, with 0xf0 above it where the fifth
/// bit is clear), exact integer block sums (`smull` + `sadalp`), then the scalar reference's float
/// operations in its order (bit-identical to `scalar::q5_0::dot`).
pub fn dot(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: `Widen` uses base NEON only.
    unsafe { dot_blocks::<Widen>(w, a) }
}

/// [`dot`] with `sdot`. Installed by [`super::table`] only where the CPU has the dot-product
/// extension; not public, because calling it elsewhere could execute an unsupported instruction.
pub(super) fn dot_dotprod(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    debug_assert!(super::dotprod_supported());
    debug_assert_eq!(w.len(), a.len());
    // SAFETY: only reachable through the table, which installs it after detecting dotprod.
    unsafe { dot_sdot(w, a) }
}

/// # Safety
/// The CPU must have the dot-product extension.
#[target_feature(enable = "dotprod")]
unsafe fn dot_sdot(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    // SAFETY: the caller guarantees dotprod, which this function is compiled with.
    unsafe { dot_blocks::<SDot>(w, a) }
}

/// The fifth bits of a block as byte masks (0xff where set): bit `i` of the little-endian `qh` for
/// value `i`, values 0..16 in the first vector and 16..32 in the second. The four bytes are spread
/// with `tbl` (byte `i / 8` to lane `i`) and tested against bit `i % 8` (`cmtst`).
///
/// # Safety
/// None beyond NEON (baseline on aarch64); `unsafe` as the loads are.
#[inline(always)]
pub(super) unsafe fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    const SPREAD: [u8; 32] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    ];
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let v = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes(qh)));
    // SAFETY (loads): 16 + 16 of the 32 bytes of `SPREAD`, the 16 of `BITS`.
    let (i0, i1) = (vld1q_u8(SPREAD.as_ptr()), vld1q_u8(SPREAD.as_ptr().add(16)));
    let bits = vld1q_u8(BITS.as_ptr());
    (
        vtstq_u8(vqtbl1q_u8(v, i0), bits),
        vtstq_u8(vqtbl1q_u8(v, i1), bits),
    )
}

/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let low = vdupq_n_u8(0x0f);
    let high = vdupq_n_u8(0xf0);
    let zero = vdupq_n_s32(0);
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        // SAFETY (loads): the 16 nibble bytes of `x` and the two halves of the 32 `i8` of `y`, both
        // borrowed for the call; byte pointers need no alignment.
        let q = vld1q_u8(x.qs.as_ptr());
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let (h0, h1) = fifth_bits(x.qh);
        // q - 16 in i8: the nibble where the fifth bit is set, the nibble | 0xf0 (nibble - 16)
        // where it is clear.
        let lo = vorrq_u8(vandq_u8(q, low), vbicq_u8(high, h0));
        let hi = vorrq_u8(vshrq_n_u8::<4>(q), vbicq_u8(high, h1));
        let s = vaddvq_s32(D::dot(D::dot(zero, s8(lo), y0), s8(hi), y1));
        // |s| <= 32 * 16 * 128, exact in f32; same operations and order as the reference.
        sumf += (scale(x.d) * scale(y.d)) * s as f32;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::{legacy_acts, raw_blocks, CASES};
    use super::*;
    use crate::blocks::to_scale;
    use crate::scalar;

    /// Both paths are bit-identical to the reference, extreme levels and quants included.
    #[test]
    fn dot_paths_match_reference_exactly() {
        for n in [0, 1, 2, 3, 5, 8, 17] {
            for case in 0..CASES {
                let w: Vec<BlockQ5_0> =
                    raw_blocks(n, 81 + case as u32, case, |b: &mut BlockQ5_0| {
                        b.d = to_scale(0.01);
                        if case == 2 {
                            // Level -16 (nibble 0, fifth bit clear) against -128.
                            b.qs = [0; 16];
                            b.qh = [0; 4];
                        }
                    });
                let x: Vec<BlockQ8_0> = legacy_acts(n, 15, case)
                    .into_iter()
                    .map(|(d, qs)| BlockQ8_0 { d, qs })
                    .collect();
                let want = scalar::q5_0::dot(&w, &x);
                assert_eq!(dot(&w, &x).to_bits(), want.to_bits(), "n={n} case={case}");
                if super::super::dotprod_supported() {
                    assert_eq!(dot_dotprod(&w, &x).to_bits(), want.to_bits(), "sdot n={n}");
                }
            }
        }
    }
}
