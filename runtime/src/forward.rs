//! The forward pass: one function for every architecture, over `n` tokens at once (prefill) or one
//! (decode). Shapes are written `(tokens, width)`, row-major. Attention is in [`crate::attention`],
//! the feed-forward layers (dense and mixture-of-experts) in [`crate::moe`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cosmoe_cache::CacheUser;
use cosmoe_kernels::{self as k, matmul};

use crate::attention::{attention, AttnScratch};
use crate::model::{Ffn, Linear, Model};
use crate::moe::{dense, moe, FfnScratch, MoeCtx};
use crate::routing::{Prefetch, RoutingRecord};
use crate::{Error, KvCache, Result};

/// Which positions' logits a forward call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's: `(vocab)`.
    Last,
    /// Every token's: `(n, vocab)`.
    All,
}

/// What a forward pass reads and writes of its session.
pub(crate) struct PassState {
    pub kv: KvCache,
    /// The most positions the KV cache may hold (the session's context size).
    pub n_ctx: usize,
    /// Positions a context shift dropped: the KV cache's position `p` is the `p + discarded`-th
    /// token evaluated, which is how the routing record counts.
    pub discarded: usize,
    /// Where routing comes from, and what each position chose.
    pub routing: RoutingRecord,
    /// The session's account at the expert cache (its counters, its prefetch position).
    pub cache_user: Arc<CacheUser>,
    pub prefetch: Prefetch,
    /// Set from any thread: the pass stops at the next layer with [`Error::Cancelled`].
    pub cancel: Arc<AtomicBool>,
    pub scratch: Scratch,
}

/// The buffers of a pass, kept by the session and reused: they grow to the largest batch seen, so
/// decode allocates nothing after its first token.
#[derive(Default)]
pub(crate) struct Scratch {
    /// (n, hidden): the residual stream.
    x: Vec<f32>,
    /// (n, hidden): `x` normalised, the input of attention and of the feed-forward layer.
    xn: Vec<f32>,
    /// (n, hidden): what attention or the feed-forward layer adds to `x`.
    out: Vec<f32>,
    attn: AttnScratch,
    ffn: FfnScratch,
    /// (rows, vocab): the logits of the last pass ([`Logits::Last`]: one row).
    pub logits: Vec<f32>,
}

/// The first `len` values of `buf`, which grows (zero-filled) when it is shorter; the values are
/// whatever the buffer's last user left there.
pub(crate) fn take(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

impl Linear {
    /// `y = x W^T + b` for `x: (n, in)`, `y: (n, out)`.
    pub(crate) fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) {
        matmul(self.w.mat(), x, n, y);
        self.add_bias(y);
    }

    /// `y += b` for each `out`-wide row of `y`.
    pub(crate) fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.b {
            for row in y.chunks_exact_mut(self.w.rows) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
    }
}

/// RMSNorm of each `w.len()`-wide row of `x` into `out`.
pub(crate) fn rmsnorm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (o, r) in out.chunks_exact_mut(w.len()).zip(x.chunks_exact(w.len())) {
        k::rmsnorm(r, w, eps, o);
    }
}

/// Runs `tokens` at positions `st.kv.len()..`, appending their keys and values to the KV cache, and
/// leaves the logits `want` asks for in `st.scratch.logits`. Call it on the model's pool
/// ([`Model::on_pool`]).
///
/// On error (a bad token, a full context, a failed expert read, a cancel) the KV cache and the
/// routing record are left as they were before the call.
pub(crate) fn forward(
    model: &Model,
    st: &mut PassState,
    tokens: &[u32],
    want: Logits,
) -> Result<()> {
    let start = st.kv.len();
    let r = pass(model, st, tokens, want);
    if r.is_err() {
        st.kv.truncate(start);
        st.routing.truncate(start + st.discarded);
    }
    r
}

fn pass(model: &Model, st: &mut PassState, tokens: &[u32], want: Logits) -> Result<()> {
    let c = &model.config;
    let (n, h, eps) = (tokens.len(), c.hidden_size, c.rms_norm_eps);
    if n == 0 {
        return Err(Error::EmptyInput);
    }
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
        return Err(Error::TokenOutOfRange {
            id,
            vocab_size: c.vocab_size,
        });
    }
    let pos0 = st.kv.len();
    if pos0 + n > st.n_ctx {
        return Err(Error::ContextFull {
            needed: pos0 + n,
            max: st.n_ctx,
        });
    }
    let s = &mut st.scratch;
    let x = take(&mut s.x, n * h); // (n, hidden)
    let xn = take(&mut s.xn, n * h); // (n, hidden)
    let out = take(&mut s.out, n * h); // (n, hidden)

    let emb = model.embed.mat();
    for (row, &t) in x.chunks_exact_mut(h).zip(tokens) {
        k::dequantize_row(emb.dtype(), emb.row(t as usize), row);
        row.iter_mut().for_each(|v| *v *= c.multipliers.embedding);
    }

    let res_mult = c.multipliers.residual;
    for (l, layer) in model.layers.iter().enumerate() {
        if st.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        rmsnorm_rows(x, &layer.attn_norm, eps, xn);
        attention(
            model,
            l,
            &layer.attn,
            xn,
            n,
            pos0,
            &mut st.kv,
            st.n_ctx,
            &mut s.attn,
            out,
        );
        k::axpy(res_mult, out, x);

        rmsnorm_rows(x, &layer.ffn_norm, eps, xn);
        match &layer.ffn {
            Ffn::Dense(mlp) => dense(mlp, xn, n, &mut s.ffn, out),
            Ffn::Moe(m) => {
                let ctx = MoeCtx {
                    routing: &mut st.routing,
                    user: &st.cache_user,
                    prefetch: st.prefetch,
                };
                // Routing counts tokens evaluated, which a context shift does not reset.
                moe(
                    model,
                    l,
                    m,
                    xn,
                    n,
                    pos0 + st.discarded,
                    ctx,
                    &mut s.ffn,
                    out,
                )?
            }
        }
        k::axpy(res_mult, out, x);
    }
    st.kv.advance(n);

    // Only the rows whose logits are wanted go through the final norm and the LM head.
    let first = match want {
        Logits::Last => n - 1,
        Logits::All => 0,
    };
    let m = n - first;
    let rows = &x[first * h..];
    let normed = &mut xn[..m * h];
    rmsnorm_rows(rows, &model.norm, eps, normed);
    s.logits.resize(m * c.vocab_size, 0.0);
    let logits = &mut s.logits[..]; // (m, vocab)
    matmul(model.lm_head.mat(), normed, m, logits);
    if c.multipliers.logits_scaling != 1.0 {
        logits
            .iter_mut()
            .for_each(|v| *v /= c.multipliers.logits_scaling);
    }
    Ok(())
}
