//! Attention over a KV cache: the scores of one query head against its keys, and the mix of its
//! values. Rows of the cache are `stride` values apart (all KV heads of a position side by side);
//! a head's row is the first `q.len()` (or `out.len()`) values from its start.

use super::f32::{axpy, dot};

/// Panics unless `n` rows of `width` values, `stride` apart, fit in `len` values.
pub(crate) fn check_rows(what: &str, n: usize, width: usize, len: usize, stride: usize) {
    let need = match n {
        0 => Some(0),
        _ => (n - 1)
            .checked_mul(stride)
            .and_then(|s| s.checked_add(width)),
    };
    assert!(
        need.is_some_and(|need| need <= len),
        "{what}: {n} rows of {width} values, {stride} apart, do not fit in {len} values"
    );
}

/// `scores[j] = (q . k_j) * scale` for the `scores.len()` key rows `k_j = keys[j * stride..][..q.len()]`.
pub fn attn_scores(q: &[f32], keys: &[f32], stride: usize, scale: f32, scores: &mut [f32]) {
    check_rows("attn_scores", scores.len(), q.len(), keys.len(), stride);
    for (j, s) in scores.iter_mut().enumerate() {
        *s = dot(q, &keys[j * stride..j * stride + q.len()]) * scale;
    }
}

/// `out = sum_j w[j] * v_j` over the `w.len()` value rows `v_j = values[j * stride..][..out.len()]`,
/// added in row order (a product, then a sum, as [`axpy`]).
pub fn attn_mix(w: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    check_rows("attn_mix", w.len(), out.len(), values.len(), stride);
    out.fill(0.0);
    let width = out.len();
    for (j, &wj) in w.iter().enumerate() {
        axpy(wj, &values[j * stride..j * stride + width], out);
    }
}
