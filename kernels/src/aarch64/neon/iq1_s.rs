//! IQ1_S weights against Q8_K-quantised activations (the lattice helpers: [`super::iq2_xxs`]).

use std::arch::aarch64::*;

use super::iq2_xxs::{grid8x4, half_sums, per_half, scaled_sum16};
use super::{bsums_dot16, s8, scale, I8Dot};
use crate::blocks::{BlockIq1S, BlockQ8K, IQ1S_DELTA};
use crate::scalar::iq2_xxs::le_u16;
use crate::scalar::iq_grids::IQ1S_GRID;

super::q8k_dots!(BlockIq1S);

/// ggml's `ggml_vec_dot_iq1_s_q8_K`: per super-block `d_w * d_a * (sumi + 1/8 * sumi1)`, `sumi` the
/// scaled grid products, `sumi1` the scaled, signed sums of the activations from their `bsums` (as
/// the reference takes them).
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq1S], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        // Per sub-block a u16: three high index bits per group of eight, the 3-bit scale, and the
        // sign of the shift on top.
        let qh: [u16; 8] = core::array::from_fn(|ib| le_u16(&x.qh, 2 * ib));
        let s = half_sums::<D>(&y.qs, |ib| {
            let grid: [u64; 4] = core::array::from_fn(|l| {
                IQ1S_GRID[x.qs[4 * ib + l] as usize | (((qh[ib] >> (3 * l)) & 7) as usize) << 8]
            });
            // Values -1, 0, 1 as bytes.
            grid8x4(grid).map(|g| s8(g))
        });
        let ls = qh.map(|qh| 2 * ((qh >> 12) & 7) as i16 + 1);
        let shift = per_half(core::array::from_fn(|ib| {
            if qh[ib] & 0x8000 != 0 {
                -ls[ib]
            } else {
                ls[ib]
            }
        }));
        // |sumi| <= 256 * 128 * 15 and |sumi1| <= 16 * 2^11 * 15: exact in i32.
        let sumi = scaled_sum16(s, &per_half(ls));
        // SAFETY (loads): 8 + 8 `i16` of the 16 of `shift`.
        let shift = [vld1q_s16(shift.as_ptr()), vld1q_s16(shift.as_ptr().add(8))];
        let sumi1 = bsums_dot16(&y.bsums, shift);
        sumf += scale(x.d) * y.d * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_iq;
    use super::*;
    use crate::{scalar, DType};

    #[test]
    fn dot_paths_equal_reference() {
        check_iq(DType::IQ1_S, scalar::iq1_s::dot, dot, dot_dotprod);
    }
}
