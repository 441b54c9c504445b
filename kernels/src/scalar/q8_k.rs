//! Q8_K, the activations K-quant (and IQ4_XS) weights multiply: 256 `i8` per block with an `f32`
//! scale and the sums of each 16 values. Ported from llama.cpp's `ggml-quants.c`, bit-identical to it.

use super::q4_0::signed_abs_max;
use super::q4_k::nearest_int;
use crate::blocks::{BlockQ8K, QK_K};

/// ggml's `quantize_row_q8_K_ref`: the value of largest magnitude `max` (with its sign) maps to -127,
/// `q = min(127, nearest_int((-127 / max) * x))`, `d = 1 / (-127 / max)`, `bsums[j]` the sum of
/// `q[16j..16j + 16]`. An all-zero block gets `d = 0` and zero `qs` (C leaves its `bsums` unwritten;
/// they are zeroed here, the sums of those zeros). `x.len()` must be `out.len() * 256`.
pub fn quantize_row_activations(x: &[f32], out: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (amax, max) = signed_abs_max(xs);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        // -127 rather than -128 so that no q is -128 (llama.cpp's note: simpler AVX for IQ2_XXS).
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| q as i32).sum::<i32>() as i16;
        }
        b.d = 1.0 / iscale;
    }
}

/// ggml's `dequantize_row_q8_K`: `y = d * q`. `out.len()` must be `blocks.len() * 256`.
pub fn dequantize(blocks: &[BlockQ8K], out: &mut [f32]) {
    debug_assert_eq!(out.len(), blocks.len() * QK_K);
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = b.d * q as f32;
        }
    }
}
