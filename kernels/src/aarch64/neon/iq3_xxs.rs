//! IQ3_XXS weights against Q8_K-quantised activations (the lattice helpers: [`super::iq2_xxs`]).

use super::iq2_xxs::{apply_signs, grid4x8, half_sums, ksigns32, per_half, scaled_sum16};
use super::{scale, I8Dot};
use crate::blocks::{BlockIq3Xxs, BlockQ8K, QK_K};
use crate::scalar::iq2_xxs::le_u32;
use crate::scalar::iq_grids::IQ3XXS_GRID;

super::q8k_dots!(BlockIq3Xxs);

/// ggml's `ggml_vec_dot_iq3_xxs_q8_K`: per super-block `(d_w * d_a) * sum (2 * ls + 1) * (grid *
/// sign . q_a)`, summed in order, times 1/4 at the end.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq3Xxs], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let mut ls = [0i16; 8];
        let s = half_sums::<D>(&y.qs, |ib32| {
            // Eight grid indices in qs[..64]; four 7-bit sign indices and the scale in qs[64..].
            let q = &x.qs[8 * ib32..8 * ib32 + 8];
            let aux = le_u32(&x.qs, QK_K / 4 + 4 * ib32);
            ls[ib32] = 2 * (aux >> 28) as i16 + 1;
            let grid: [u32; 8] = core::array::from_fn(|j| IQ3XXS_GRID[q[j] as usize]);
            apply_signs(grid4x8(grid), ksigns32(aux))
        });
        // |bsum| <= 256 * 62 * 128 * 31 < 2^26.
        let bsum = scaled_sum16(s, &per_half(ls));
        sumf += (scale(x.d) * y.d) * bsum as f32;
    }
    0.25 * sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_iq;
    use super::*;
    use crate::{scalar, DType};

    #[test]
    fn dot_paths_equal_reference() {
        check_iq(DType::IQ3_XXS, scalar::iq3_xxs::dot, dot, dot_dotprod);
    }
}
