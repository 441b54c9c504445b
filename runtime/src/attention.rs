//! Self-attention of one layer: Q/K/V projections, the optional Q/K norm and clamp, RoPE, the KV
//! cache append, scores, softmax and mix per head, and the output projection.

use cosmoe_kernels::{self as k};
use rayon::prelude::*;

use crate::arch::QkNorm;
use crate::forward::{rmsnorm_rows, take};
use crate::model::{Attention, Linear, Model};
use crate::KvCache;

/// The buffers of [`attention`], grown to the largest batch seen.
#[derive(Default)]
pub(crate) struct AttnScratch {
    /// (n, n_heads * head_dim)
    q: Vec<f32>,
    /// (n, n_kv_heads * head_dim)
    k: Vec<f32>,
    /// (n, n_kv_heads * head_dim)
    v: Vec<f32>,
    /// (n, n_heads * head_dim): a row of Q or K normalised, then the heads' mixed values.
    mix: Vec<f32>,
    /// (head_dim / 2) each: RoPE's rotation at one position.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// `y_i = x W_i^T + b_i` for one token `x: (in)` through several linears of the same input width, as
/// one parallel job (decode's Q, K and V); each `y_i` is exactly [`Linear::forward`]'s.
fn forward_one_many(ls: [&Linear; 3], x: &[f32], ys: [&mut [f32]; 3]) {
    let mut jobs: Vec<k::MatvecJob<'_, '_>> = ls
        .iter()
        .zip(ys)
        .map(|(l, y)| k::MatvecJob { w: l.w.mat(), x, y })
        .collect();
    k::matvec_jobs(&mut jobs);
    for (l, j) in ls.iter().zip(jobs.iter_mut()) {
        l.add_bias(j.y);
    }
}

/// Self-attention of `xn: (n, hidden)` at positions `pos0..pos0 + n` of layer `l`, appending the
/// keys and values to `kv`; writes `(n, hidden)` to `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    model: &Model,
    l: usize,
    at: &Attention,
    xn: &[f32],
    n: usize,
    pos0: usize,
    kv: &mut KvCache,
    n_ctx: usize,
    s: &mut AttnScratch,
    out: &mut [f32],
) {
    let c = &model.config;
    let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
    let (q_dim, kv_dim) = (nh * hd, nkv * hd);
    let q = take(&mut s.q, n * q_dim); // (n, n_heads * head_dim)
    let kk = take(&mut s.k, n * kv_dim); // (n, n_kv_heads * head_dim)
    let v = take(&mut s.v, n * kv_dim); // (n, n_kv_heads * head_dim)
    let mix = take(&mut s.mix, n * q_dim); // (n, n_heads * head_dim)

    if n == 1 {
        forward_one_many([&at.q, &at.k, &at.v], xn, [&mut *q, &mut *kk, &mut *v]);
    } else {
        at.q.forward(xn, n, q);
        at.k.forward(xn, n, kk);
        at.v.forward(xn, n, v);
    }

    // The norm weight's length picks the span: one head (Qwen3-MoE) or the whole projection (OLMoE).
    if model.spec.qk_norm != QkNorm::None {
        if let (Some(qn), Some(kn)) = (&at.q_norm, &at.k_norm) {
            for (x, w) in [(&mut *q, qn), (&mut *kk, kn)] {
                let normed = &mut mix[..x.len()];
                rmsnorm_rows(x, w, c.rms_norm_eps, normed);
                x.copy_from_slice(normed);
            }
        }
    }
    // OLMoE clamps after the q/k norm.
    if let Some(clip) = c.clip_qkv {
        for t in q.iter_mut().chain(kk.iter_mut()).chain(v.iter_mut()) {
            *t = t.clamp(-clip, clip);
        }
    }

    let cos = take(&mut s.cos, hd / 2);
    let sin = take(&mut s.sin, hd / 2);
    let rope = if model.spec.rope_interleaved {
        k::rope_interleaved
    } else {
        k::rope_neox
    };
    for t in 0..n {
        model.rope.cos_sin(pos0 + t, cos, sin);
        for head in q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
            rope(head, cos, sin);
        }
        for head in kk[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
            rope(head, cos, sin);
        }
    }
    kv.append(l, kk, v, n_ctx);
    let (keys, values) = kv.layer(l); // (pos0 + n, kv_dim) each

    let scale = c.multipliers.attention.unwrap_or(1.0 / (hd as f32).sqrt());
    let group = nh / nkv;
    let q = &*q;
    mix.par_chunks_mut(hd)
        .enumerate()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (i, o)| {
            let (t, head) = (i / nh, i % nh);
            let p = pos0 + t;
            let kvh = head / group;
            // transformers' sliding window: key j is visible from query p iff p - j < window.
            let lo = at.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let qh = &q[t * q_dim + head * hd..t * q_dim + (head + 1) * hd];
            // Keys and values lo..=p of KV head kvh: rows of hd values, kv_dim apart.
            let first = lo * kv_dim + kvh * hd;
            let scores = take(scores, p + 1 - lo); // (p + 1 - lo)
            k::attn_scores(qh, &keys[first..], kv_dim, scale, scores);
            k::softmax(scores);
            k::attn_mix(scores, &values[first..], kv_dim, o);
        });
    at.o.forward(mix, n, out);
}
