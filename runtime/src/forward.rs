//! The forward pass: one function for every architecture, over `n` tokens at once (prefill) or one
//! (decode). Shapes are written `(tokens, width)`, row-major.

use cosmoe_cache::PrefetchHint;
use cosmoe_kernels::{self as k, matmul};
use rayon::prelude::*;

use crate::arch::{QkNorm, Routing};
use crate::model::{Attention, Ffn, Linear, Mlp, Model, Moe};
use crate::{Error, KvCache, Result};

/// Which positions' logits a forward call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's: `(vocab)`.
    Last,
    /// Every token's: `(n, vocab)`.
    All,
}

impl Linear {
    /// `y = x W^T + b` for `x: (n, in)`, `y: (n, out)`.
    fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * self.w.rows];
        matmul(self.w.mat(), x, n, &mut y);
        self.add_bias(&mut y);
        y
    }

    /// `y += b` for each `out`-wide row of `y`.
    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.b {
            for row in y.chunks_exact_mut(self.w.rows) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
    }
}

/// `y_i = x W_i^T + b_i` for one token `x: (in)` through several linears of the same input width, as
/// one parallel job (decode's Q, K and V); each `y_i` is exactly [`Linear::forward`]'s.
fn forward_one_many<const N: usize>(ls: [&Linear; N], x: &[f32]) -> [Vec<f32>; N] {
    let mut ys: [Vec<f32>; N] = std::array::from_fn(|i| vec![0f32; ls[i].w.rows]);
    let mut jobs: Vec<k::MatvecJob<'_, '_>> = ls
        .iter()
        .zip(ys.iter_mut())
        .map(|(l, y)| k::MatvecJob { w: l.w.mat(), x, y })
        .collect();
    k::matvec_jobs(&mut jobs);
    for (l, y) in ls.iter().zip(ys.iter_mut()) {
        l.add_bias(y);
    }
    ys
}

impl Mlp {
    /// `(n, hidden) -> (n, hidden)`.
    fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut g = self.gate.forward(x, n); // (n, ffn)
        let u = self.up.forward(x, n); // (n, ffn)
        k::silu_mul(&mut g, &u);
        self.down.forward(&g, n)
    }
}

/// RMSNorm of each `width`-wide row of `x`.
fn rmsnorm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (o, r) in out.chunks_exact_mut(w.len()).zip(x.chunks_exact(w.len())) {
        k::rmsnorm(r, w, eps, o);
    }
    out
}

fn rmsnorm_rows_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let mut tmp = vec![0f32; w.len()];
    for r in x.chunks_exact_mut(w.len()) {
        k::rmsnorm(r, w, eps, &mut tmp);
        r.copy_from_slice(&tmp);
    }
}

impl Model {
    /// Runs `tokens` at positions `kv.len()..`, appending their keys and values to `kv`.
    ///
    /// On error the cache is left as it was before the call.
    pub fn forward(&self, tokens: &[u32], kv: &mut KvCache, want: Logits) -> Result<Vec<f32>> {
        let start = kv.len();
        // On a pool thread, so the products below split their work by stealing rather than by waking
        // the pool from outside and sleeping until it is done (a futex round trip per product).
        let r = rayon::scope(|_| self.forward_inner(tokens, kv, want));
        if r.is_err() {
            kv.truncate(start);
        }
        r
    }

    fn forward_inner(&self, tokens: &[u32], kv: &mut KvCache, want: Logits) -> Result<Vec<f32>> {
        let c = &self.config;
        let (n, h) = (tokens.len(), c.hidden_size);
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::TokenOutOfRange {
                id,
                vocab_size: c.vocab_size,
            });
        }
        let pos0 = kv.len();
        if pos0 + n > c.max_position_embeddings {
            return Err(Error::ContextFull {
                needed: pos0 + n,
                max: c.max_position_embeddings,
            });
        }

        // x: (n, hidden), the residual stream.
        let mut x = vec![0f32; n * h];
        let emb = self.embed.mat();
        for (row, &t) in x.chunks_exact_mut(h).zip(tokens) {
            k::dequantize_row(emb.dtype(), emb.row(t as usize), row);
            row.iter_mut().for_each(|v| *v *= c.multipliers.embedding);
        }

        let res_mult = c.multipliers.residual;
        for (l, layer) in self.layers.iter().enumerate() {
            let xn = rmsnorm_rows(&x, &layer.attn_norm, c.rms_norm_eps); // (n, hidden)
            let a = self.attention(l, &layer.attn, &xn, n, pos0, kv); // (n, hidden)
            k::axpy(res_mult, &a, &mut x);

            let xn = rmsnorm_rows(&x, &layer.ffn_norm, c.rms_norm_eps); // (n, hidden)
            let f = match &layer.ffn {
                Ffn::Dense(mlp) => mlp.forward(&xn, n),
                Ffn::Moe(moe) => self.moe(l, moe, &xn, n, pos0)?,
            }; // (n, hidden)
            k::axpy(res_mult, &f, &mut x);
        }
        kv.advance(n);

        // Only the rows whose logits are wanted go through the final norm and the LM head.
        let rows = match want {
            Logits::Last => &mut x[(n - 1) * h..],
            Logits::All => &mut x[..],
        };
        let m = rows.len() / h;
        rmsnorm_rows_inplace(rows, &self.norm, c.rms_norm_eps);
        let mut logits = vec![0f32; m * c.vocab_size]; // (m, vocab)
        matmul(self.lm_head.mat(), rows, m, &mut logits);
        if c.multipliers.logits_scaling != 1.0 {
            logits
                .iter_mut()
                .for_each(|v| *v /= c.multipliers.logits_scaling);
        }
        Ok(logits)
    }

    /// Self-attention of `xn: (n, hidden)` at positions `pos0..pos0 + n`; returns `(n, hidden)`.
    fn attention(
        &self,
        l: usize,
        at: &Attention,
        xn: &[f32],
        n: usize,
        pos0: usize,
        kv: &mut KvCache,
    ) -> Vec<f32> {
        let c = &self.config;
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        let (q_dim, kv_dim) = (nh * hd, nkv * hd);

        let (mut q, mut kk, mut v) = if n == 1 {
            let [q, kk, v] = forward_one_many([&at.q, &at.k, &at.v], xn);
            (q, kk, v)
        } else {
            (
                at.q.forward(xn, n),
                at.k.forward(xn, n),
                at.v.forward(xn, n),
            )
        };
        // q: (n, n_heads * head_dim); kk, v: (n, n_kv_heads * head_dim)

        // The norm weight's length picks the span: one head (Qwen3-MoE) or the whole projection (OLMoE).
        if self.spec.qk_norm != QkNorm::None {
            if let (Some(qn), Some(kn)) = (&at.q_norm, &at.k_norm) {
                rmsnorm_rows_inplace(&mut q, qn, c.rms_norm_eps);
                rmsnorm_rows_inplace(&mut kk, kn, c.rms_norm_eps);
            }
        }
        // OLMoE clamps after the q/k norm.
        if let Some(clip) = c.clip_qkv {
            for t in q.iter_mut().chain(kk.iter_mut()).chain(v.iter_mut()) {
                *t = t.clamp(-clip, clip);
            }
        }

        let half = hd / 2;
        let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
        let rope = if self.spec.rope_interleaved {
            k::rope_interleaved
        } else {
            k::rope_neox
        };
        for t in 0..n {
            self.rope.cos_sin(pos0 + t, &mut cos, &mut sin);
            for head in q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(hd) {
                rope(head, &cos, &sin);
            }
            for head in kk[t * kv_dim..(t + 1) * kv_dim].chunks_exact_mut(hd) {
                rope(head, &cos, &sin);
            }
        }
        kv.append(l, &kk, &v);
        let (keys, values) = kv.layer(l); // (pos0 + n, kv_dim) each

        let scale = c.multipliers.attention.unwrap_or(1.0 / (hd as f32).sqrt());
        let group = nh / nkv;
        let mut out = vec![0f32; n * q_dim]; // (n, n_heads * head_dim)
        out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
            let (t, head) = (i / nh, i % nh);
            let p = pos0 + t;
            let kvh = head / group;
            // transformers' sliding window: key j is visible from query p iff p - j < window.
            let lo = at.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let qh = &q[t * q_dim + head * hd..t * q_dim + (head + 1) * hd];
            // Keys and values lo..=p of KV head kvh: rows of hd values, kv_dim apart.
            let first = lo * kv_dim + kvh * hd;
            let mut scores = vec![0f32; p + 1 - lo]; // (p + 1 - lo)
            k::attn_scores(qh, &keys[first..], kv_dim, scale, &mut scores);
            k::softmax(&mut scores);
            k::attn_mix(&scores, &values[first..], kv_dim, o);
        });
        at.o.forward(&out, n)
    }

    /// Position stamp of layer `l` of the token at `pos`, as the expert cache orders prefetch hints.
    fn stamp(&self, pos: usize, l: usize) -> u64 {
        (pos * self.config.n_layers + l) as u64
    }

    /// The routed (and shared) experts of `xn: (n, hidden)` at positions `pos0..pos0 + n`; returns
    /// `(n, hidden)`.
    fn moe(&self, l: usize, moe: &Moe, xn: &[f32], n: usize, pos0: usize) -> Result<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden_size;
        let Some(mc) = &c.moe else {
            return Ok(vec![0f32; n * h]);
        };
        self.experts.set_position(self.stamp(pos0, l));
        let ne = mc.n_experts;
        let mut logits = vec![0f32; n * ne]; // (n, n_experts)
        matmul(moe.router.mat(), xn, n, &mut logits);

        // For each expert, the tokens routed to it and their weights.
        let mut assigned: Vec<Vec<(usize, f32)>> = vec![Vec::new(); ne];
        for (t, row) in logits.chunks_exact(ne).enumerate() {
            let pos = pos0 + t;
            let sel = match self.routing.forced(pos, l) {
                Some(es) => forced_weights(row, &es, self.spec.routing),
                None => route(row, mc.top_k, self.spec.routing, mc.norm_topk_prob),
            };
            let ids: Vec<u32> = sel.iter().map(|&(e, _)| e as u32).collect();
            self.routing.record(pos, l, c.n_layers, &ids);
            for (e, w) in sel {
                assigned[e].push((t, w));
            }
        }
        // Read-ahead: the reader threads fetch this layer's missing experts while the loop below
        // computes the ones already here (and several reads are in flight at once).
        let now = self.stamp(pos0, l);
        let needed: Vec<PrefetchHint> = (0..ne)
            .filter(|&e| !assigned[e].is_empty())
            .map(|expert| PrefetchHint {
                layer: l,
                expert,
                needed_at: now,
            })
            .collect();
        self.experts.prefetch(&needed);
        if n == 1 {
            self.prefetch_next(l, xn, pos0);
        }

        // Experts in index order, as transformers accumulates them.
        let mut out = vec![0f32; n * h];
        if n == 1 {
            self.experts_one(l, &assigned, xn, &mut out)?;
        } else {
            for (e, toks) in assigned.iter().enumerate() {
                if toks.is_empty() {
                    continue;
                }
                let ex = self.experts.get(l, e)?;
                let m = toks.len();
                let mut xs = Vec::with_capacity(m * h); // (m, hidden)
                for &(t, _) in toks {
                    xs.extend_from_slice(&xn[t * h..(t + 1) * h]);
                }
                let mut g = vec![0f32; m * ex.gate.rows]; // (m, ffn)
                let mut u = vec![0f32; m * ex.up.rows]; // (m, ffn)
                matmul(ex.gate.mat(), &xs, m, &mut g);
                matmul(ex.up.mat(), &xs, m, &mut u);
                k::silu_mul(&mut g, &u);
                let mut d = vec![0f32; m * h]; // (m, hidden)
                matmul(ex.down.mat(), &g, m, &mut d);
                for (i, &(t, w)) in toks.iter().enumerate() {
                    k::axpy(w, &d[i * h..(i + 1) * h], &mut out[t * h..(t + 1) * h]);
                }
            }
        }

        if let Some((mlp, gate)) = &moe.shared {
            let s = mlp.forward(xn, n); // (n, hidden)
            let mut g = vec![0f32; n]; // (n, 1)
            matmul(gate.mat(), xn, n, &mut g);
            for t in 0..n {
                let sig = 1.0 / (1.0 + (-g[t]).exp());
                k::axpy(sig, &s[t * h..(t + 1) * h], &mut out[t * h..(t + 1) * h]);
            }
        }
        Ok(out)
    }
}

impl Model {
    /// The routed experts of one token `xn: (hidden)`, added into `out: (hidden)` with their weights in
    /// expert order. All of them are fetched first, then their gate and up projections run as one
    /// parallel job and their down projections as another (two forks and joins per layer, not three
    /// per expert); each value is exactly what the per-expert path computes.
    fn experts_one(
        &self,
        l: usize,
        assigned: &[Vec<(usize, f32)>],
        xn: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let h = xn.len();
        let mut chosen = Vec::new(); // (weights, routing weight), expert order
        for (e, toks) in assigned.iter().enumerate() {
            if let Some(&(_, w)) = toks.first() {
                chosen.push((self.experts.get(l, e)?, w));
            }
        }
        // (experts, ffn) each
        let mut g: Vec<Vec<f32>> = chosen
            .iter()
            .map(|(ex, _)| vec![0f32; ex.gate.rows])
            .collect();
        let mut u: Vec<Vec<f32>> = chosen
            .iter()
            .map(|(ex, _)| vec![0f32; ex.up.rows])
            .collect();
        let mut jobs = Vec::with_capacity(2 * chosen.len());
        for ((ex, _), (g, u)) in chosen.iter().zip(g.iter_mut().zip(u.iter_mut())) {
            jobs.push(k::MatvecJob {
                w: ex.gate.mat(),
                x: xn,
                y: g,
            });
            jobs.push(k::MatvecJob {
                w: ex.up.mat(),
                x: xn,
                y: u,
            });
        }
        k::matvec_jobs(&mut jobs);
        drop(jobs);
        for (g, u) in g.iter_mut().zip(&u) {
            k::silu_mul(g, u);
        }
        let mut d: Vec<Vec<f32>> = vec![vec![0f32; h]; chosen.len()]; // (experts, hidden)
        let mut jobs: Vec<k::MatvecJob<'_, '_>> = chosen
            .iter()
            .zip(&g)
            .zip(d.iter_mut())
            .map(|(((ex, _), g), d)| k::MatvecJob {
                w: ex.down.mat(),
                x: g,
                y: d,
            })
            .collect();
        k::matvec_jobs(&mut jobs);
        drop(jobs);
        for ((_, w), d) in chosen.iter().zip(&d) {
            k::axpy(*w, d, out);
        }
        Ok(())
    }
}

/// Weights of experts chosen from outside (a routing trace): their router probabilities, normalised to
/// sum to one.
fn forced_weights(logits: &[f32], experts: &[u32], routing: Routing) -> Vec<(usize, f32)> {
    let mut p = match routing {
        Routing::SoftmaxTopK => {
            let mut p = logits.to_vec();
            k::softmax(&mut p);
            experts.iter().map(|&e| p[e as usize]).collect::<Vec<f32>>()
        }
        Routing::TopKSoftmax => experts.iter().map(|&e| logits[e as usize]).collect(),
    };
    match routing {
        Routing::SoftmaxTopK => {
            let sum: f32 = p.iter().sum();
            p.iter_mut().for_each(|x| *x /= sum.max(f32::MIN_POSITIVE));
        }
        Routing::TopKSoftmax => k::softmax(&mut p),
    }
    experts.iter().map(|&e| e as usize).zip(p).collect()
}

impl Model {
    /// Sends the cache hints for the next MoE layer's experts, before this layer's experts run, so their
    /// reads overlap this layer's compute.
    fn prefetch_next(&self, l: usize, xn: &[f32], pos: usize) {
        let p = self.routing.prefetch;
        let next = l + 1;
        let Some(Ffn::Moe(next_moe)) = self.layers.get(next).map(|x| &x.ffn) else {
            return;
        };
        let Some(mc) = &self.config.moe else {
            return;
        };
        let mut experts: Vec<u32> = Vec::new();
        if p.gate() {
            let mut logits = vec![0f32; mc.n_experts];
            matmul(next_moe.router.mat(), xn, 1, &mut logits);
            let sel = route(&logits, mc.top_k, self.spec.routing, mc.norm_topk_prob);
            experts.extend(sel.iter().map(|&(e, _)| e as u32));
        }
        if p.history() && pos > 0 {
            if let Some(prev) = self.routing.chosen(pos - 1, next) {
                experts.extend(
                    prev.iter()
                        .filter(|e| !experts.contains(e))
                        .collect::<Vec<_>>(),
                );
            }
        }
        if experts.is_empty() {
            return;
        }
        let needed_at = self.stamp(pos, next);
        let hints: Vec<PrefetchHint> = experts
            .iter()
            .map(|&e| PrefetchHint {
                layer: next,
                expert: e as usize,
                needed_at,
            })
            .collect();
        self.experts.prefetch(&hints);
    }
}

/// The experts one token uses and their weights, from its router logits.
pub fn route(
    logits: &[f32],
    top_k: usize,
    routing: Routing,
    renormalise: bool,
) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    match routing {
        Routing::SoftmaxTopK => {
            let mut p = logits.to_vec();
            k::softmax(&mut p);
            // Highest first; equal values keep the lower index first.
            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            idx.truncate(top_k);
            let mut sel: Vec<(usize, f32)> = idx.iter().map(|&e| (e, p[e])).collect();
            if renormalise {
                let sum: f32 = sel.iter().map(|s| s.1).sum();
                sel.iter_mut().for_each(|s| s.1 /= sum);
            }
            sel
        }
        Routing::TopKSoftmax => {
            idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            idx.truncate(top_k);
            let mut w: Vec<f32> = idx.iter().map(|&e| logits[e]).collect();
            k::softmax(&mut w);
            idx.into_iter().zip(w).collect()
        }
    }
}
