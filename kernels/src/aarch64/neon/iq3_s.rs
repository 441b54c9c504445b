//! IQ3_S weights against Q8_K-quantised activations (the lattice helpers: [`super::iq2_xxs`]).

use super::iq2_xxs::{apply_signs, grid4x8, half_sums, per_half, scaled_sum16};
use super::{scale, I8Dot};
use crate::blocks::{BlockIq3S, BlockQ8K};
use crate::scalar::iq2_xxs::le_u32;
use crate::scalar::iq_grids::IQ3S_GRID;

super::q8k_dots!(BlockIq3S);

/// ggml's `ggml_vec_dot_iq3_s_q8_K`: per super-block `(d_w * d_a) * sum (2 * ls + 1) * (grid *
/// sign . q_a)`, summed in order.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq3S], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let s = half_sums::<D>(&y.qs, |ib32| {
            // Index j: 8 bits in qs, the ninth bit j of qh; one sign bit per value.
            let (q, qh) = (&x.qs[8 * ib32..8 * ib32 + 8], x.qh[ib32] as usize);
            let grid: [u32; 8] =
                core::array::from_fn(|j| IQ3S_GRID[q[j] as usize | ((qh >> j) & 1) << 8]);
            apply_signs(grid4x8(grid), le_u32(&x.signs, 4 * ib32))
        });
        let ls = core::array::from_fn(|ib32| {
            2 * ((x.scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf) as i16 + 1
        });
        // |bsum| <= 256 * 15 * 128 * 31 < 2^24.
        let bsum = scaled_sum16(s, &per_half(ls));
        sumf += (scale(x.d) * y.d) * bsum as f32;
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
        check_iq(DType::IQ3_S, scalar::iq3_s::dot, dot, dot_dotprod);
    }
}
