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
