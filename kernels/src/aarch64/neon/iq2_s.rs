//! IQ2_S weights against Q8_K-quantised activations (the lattice helpers: [`super::iq2_xxs`]).

use super::iq2_xxs::{apply_signs, grid8x4, half_sums, nibble_scales, scaled_sum16};
use super::{scale, I8Dot};
use crate::blocks::{BlockIq2S, BlockQ8K, QK_K};
use crate::scalar::iq2_xxs::le_u32;
use crate::scalar::iq_grids::IQ2S_GRID;

super::q8k_dots!(BlockIq2S);

/// ggml's `ggml_vec_dot_iq2_s_q8_K`: per super-block `(d_w * d_a) * sum (2 * ls + 1) * (grid * sign
/// . q_a)` over the 16-value halves, summed in order, times 1/8 at the end.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq2S], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let s = half_sums::<D>(&y.qs, |ib32| {
            // Index l: 8 bits in qs[..32], bits 2l..2l + 2 of qh as its top two; one sign bit per
            // value in qs[32..].
            let qh = x.qh[ib32] as usize;
            let grid: [u64; 4] = core::array::from_fn(|l| {
                IQ2S_GRID[x.qs[4 * ib32 + l] as usize | ((qh << (8 - 2 * l)) & 0x300)]
            });
            apply_signs(grid8x4(grid), le_u32(&x.qs, QK_K / 8 + 4 * ib32))
        });
        // |bsum| <= 256 * 43 * 128 * 31 < 2^26.
        let bsum = scaled_sum16(s, &nibble_scales(&x.scales));
        sumf += (scale(x.d) * y.d) * bsum as f32;
    }
    0.125 * sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_iq;
    use super::*;
    use crate::{scalar, DType};

    #[test]
    fn dot_paths_equal_reference() {
        check_iq(DType::IQ2_S, scalar::iq2_s::dot, dot, dot_dotprod);
    }
}
