//! The Q8_1 activation quantiser (the vector Q4_1 / Q5_1 weights multiply).

use crate::blocks::{to_scale, BlockQ8_1, QK};

/// ggml's `quantize_row_q8_1_ref`: `d = max|x| / 127`, `q = round(x / d)` (half away from zero), and
/// `s = sum(q) * d` (the f32 `d`, rounded to f16 once), which the products use for the weights' min.
/// `x.len()` must be `out.len() * 32`.
pub fn quantize_row_activations(x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // ggml's `MAX(amax, fabsf(v))`, `a > b ? a : b`, comparison for comparison (NaN included).
        let amax = xs
            .iter()
            .fold(0f32, |m, v| if m > v.abs() { m } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = to_scale(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.s = to_scale(sum as f32 * d);
    }
}
