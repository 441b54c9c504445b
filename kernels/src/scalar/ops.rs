//! Element-wise kernels of the forward pass, written to match transformers' f32 arithmetic.

/// transformers' RMSNorm: `w * (x * rsqrt(mean(x^2) + eps))`. The mean is accumulated in f64, closer to
/// torch's pairwise f32 reduction than a naive f32 loop.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == w.len() && x.len() == out.len());
    if x.is_empty() {
        return;
    }
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let var = (ss / x.len() as f64) as f32;
    let r = 1.0 / (var + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = g * (v * r);
    }
}

/// In-place, numerically stable softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let sum = sum as f32;
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `gate = gate * sigmoid(gate) * up`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    debug_assert_eq!(gate.len(), up.len());
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Rotary embedding, NeoX layout: `(x_i, x_{i+d/2})` rotated by the angle of frequency `i`.
/// Computes `x*cos + rotate_half(x)*sin` exactly as transformers does.
pub fn rope_neox(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    debug_assert!(cos.len() >= half && sin.len() >= half);
    let (lo, hi) = x.split_at_mut(half);
    for i in 0..half {
        let (a, b) = (lo[i], hi[i]);
        lo[i] = a * cos[i] + (-b) * sin[i];
        hi[i] = b * cos[i] + a * sin[i];
    }
}

/// Rotary embedding, interleaved (GPT-J / llama.cpp "normal") layout: `(x_{2i}, x_{2i+1})` rotated by the
/// angle of frequency `i`. GGUF files of the `llama` family store Q/K permuted for this layout.
pub fn rope_interleaved(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    debug_assert!(cos.len() >= x.len() / 2 && sin.len() >= x.len() / 2);
    for (i, pair) in x.chunks_exact_mut(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos[i] - b * sin[i];
        pair[1] = a * sin[i] + b * cos[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two layouts are the same rotation on permuted coordinates: interleaved on
    /// `[a0, b0, a1, b1, ...]` equals NeoX on `[a0, a1, ..., b0, b1, ...]`.
    #[test]
    fn rope_layouts_are_permutations_of_each_other() {
        let n = 8;
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 1.0).collect();
        let cos: Vec<f32> = (0..n / 2).map(|i| (i as f32 * 0.5).cos()).collect();
        let sin: Vec<f32> = (0..n / 2).map(|i| (i as f32 * 0.5).sin()).collect();
        let mut inter = x.clone();
        rope_interleaved(&mut inter, &cos, &sin);
        let mut neox: Vec<f32> = (0..n / 2)
            .map(|i| x[2 * i])
            .chain((0..n / 2).map(|i| x[2 * i + 1]))
            .collect();
        rope_neox(&mut neox, &cos, &sin);
        for i in 0..n / 2 {
            assert_eq!(inter[2 * i], neox[i]);
            assert_eq!(inter[2 * i + 1], neox[i + n / 2]);
        }
        assert_ne!(inter, x);
    }
}
