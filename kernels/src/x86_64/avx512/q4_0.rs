//! Q4_0 weights against Q8_0-quantised activations: the AVX2 tier's group kernel (`avx2::q4_0`,
//! four short rows at a time) compiled for AVX-512, with the group's integer sums by VNNI
//! (`vpdpbusd`: one instruction where AVX2 needs two `vpmaddubsw`, an add and a `vpmaddwd`) and,
//! where the CPU has VBMI, its eight f16 scales picked out of the group's bytes by one `vpermt2b`
//! (AVX2 gathers them in integer registers). The same integers and the same f32 operations in the
//! same order: the results equal the AVX2 tier's bit for bit. (Without VNNI the table uses the AVX2
//! kernels: see `mod.rs`.)

use std::arch::x86_64::*;

use crate::acts::{Q8Acts, Quants32, GROUP};
use crate::blocks::BlockQ4_0;
use crate::x86_64::avx2::q4_0::q4_0_kernels;

/// `sum_i q_i x_i` of unsigned nibbles against two activation registers into eight i32 lanes, exact
/// (as `avx2::q4_0::nibble_dot`), by two `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::x86_64) fn nibble_dot_vnni(
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
    _mm256_dpbusd_epi32(
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, lo_x),
        hi,
        hi_x,
    )
}

/// Byte `i` of the result is byte `SCALE_BYTES[i]` of a group: the two bytes of each block's scale
/// (blocks are 18 bytes, the scale first).
const SCALE_BYTES: [u8; 64] = {
    let mut idx = [0u8; 64];
    let mut k = 0;
    while k < GROUP {
        idx[2 * k] = 18 * k as u8;
        idx[2 * k + 1] = 18 * k as u8 + 1;
        k += 1;
    }
    idx
};

/// The scales of the eight blocks of a group as f32 (exact; F16C), picked out of the group's first
/// 128 bytes by one byte permute.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
pub(in crate::x86_64) fn group_scales_vbmi(w: &[BlockQ4_0; GROUP]) -> __m256 {
    let p = w.as_ptr().cast::<u8>();
    // SAFETY: a group is 8 * 18 = 144 readable bytes, so bytes 0..128 are in it; the index table is
    // 64 bytes; `loadu` has no alignment requirement.
    let (a, b, idx) = unsafe {
        (
            _mm512_loadu_si512(p.cast()),
            _mm512_loadu_si512(p.add(64).cast()),
            _mm512_loadu_si512(SCALE_BYTES.as_ptr().cast()),
        )
    };
    let h = _mm512_permutex2var_epi8(a, idx, b);
    _mm256_cvtph_ps(_mm512_castsi512_si128(h))
}

q4_0_kernels!(
    vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    crate::x86_64::avx2::q4_0::group_scales,
    crate::x86_64::avx512::q4_0::nibble_dot_vnni
);

q4_0_kernels!(
    vnni_vbmi,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi",
    crate::x86_64::avx512::q4_0::group_scales_vbmi,
    crate::x86_64::avx512::q4_0::nibble_dot_vnni
);

/// `sum_b d_w[b] * d_x[b] * sum_i (q_w[b][i] - 8) * q_x[b][i]`, the integer sum of each block exact.
pub(crate) fn dot(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    // SAFETY: the AVX-512 table holds this function only where `avx512_vnni_supported()` holds
    // (AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI): `dispatch` builds the table only where
    // `avx512_supported()` holds, and `table()` checks VNNI before choosing this kernel.
    unsafe { vnni::dot(w, x) }
}

/// `y[r] = w[r] . x` for the `y.len()` rows of `x.len()` blocks stored back to back in `w`.
pub(crate) fn dot_rows(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    // SAFETY: as for `dot`.
    unsafe { vnni::dot_rows(w, x, y) }
}

/// Prefill: `yt[r * n + t] = w[r] . x[t]` (`scalar::q4_0::matmul_rows`).
pub(crate) fn matmul_rows(w: &[BlockQ4_0], x: &crate::acts::Q8Prepared, yt: &mut [f32]) {
    // SAFETY: as for `dot`.
    unsafe { vnni::matmul_rows(w, x, yt) }
}

/// [`matmul_rows`] with the VBMI scales.
pub(crate) fn matmul_rows_vbmi(w: &[BlockQ4_0], x: &crate::acts::Q8Prepared, yt: &mut [f32]) {
    // SAFETY: as for `dot_vbmi`.
    unsafe { vnni_vbmi::matmul_rows(w, x, yt) }
}

/// [`dot`] with the VBMI scales.
pub(crate) fn dot_vbmi(w: &[BlockQ4_0], x: &Q8Acts<'_>) -> f32 {
    // SAFETY: the table holds this function only where `avx512_vbmi_supported()` holds too.
    unsafe { vnni_vbmi::dot(w, x) }
}

/// [`dot_rows`] with the VBMI scales.
pub(crate) fn dot_rows_vbmi(w: &[BlockQ4_0], x: &Q8Acts<'_>, y: &mut [f32]) {
    // SAFETY: as for `dot_vbmi`.
    unsafe { vnni_vbmi::dot_rows(w, x, y) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acts::Q8Prepared;
    use crate::blocks::{to_scale, BlockQ8_0};
    use crate::scalar;

    /// Every nibble against bytes -128 and 127 over whole groups and every tail; scale 1 keeps
    /// every float exact, so each kernel must equal the reference exactly, and the AVX2 kernel bit
    /// for bit with random scales. Runs where the CPU has VNNI (and VBMI for that kernel).
    #[test]
    fn dot_is_exact_on_extremes() {
        if !crate::x86_64::avx512_vnni_supported() {
            return;
        }
        let vbmi = crate::x86_64::avx512_vbmi_supported();
        for nb in 0..40usize {
            for unit in [true, false] {
                let w: Vec<BlockQ4_0> = (0..nb)
                    .map(|b| {
                        let d = if unit { 1.0 } else { 0.01 * (b as f32 - 7.3) };
                        let mut blk = BlockQ4_0 {
                            d: to_scale(d),
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
                        let d = if unit { 1.0 } else { 0.02 * (3.1 - b as f32) };
                        let mut blk = BlockQ8_0 {
                            d: to_scale(d),
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
                let avx2 = crate::x86_64::avx2::q4_0::dot(&w, &x);
                let mut got = vec![dot(&w, &x)];
                if vbmi {
                    got.push(dot_vbmi(&w, &x));
                }
                for g in got {
                    assert_eq!(g.to_bits(), avx2.to_bits(), "blocks={nb} unit={unit}");
                    if unit {
                        assert_eq!(g, scalar::q4_0::dot(&w, &x), "blocks={nb}");
                    }
                }
            }
        }
    }
}
