//! Perplexity over a text, computed as llama.cpp's `llama-perplexity` computes it: the tokens (with the
//! tokenizer's BOS) cut into windows of `n_ctx`, each evaluated from an empty context with its first
//! token replaced by BOS (when the tokenizer adds one), and only the second half of each window scored
//! (every token there has at least `n_ctx / 2` tokens of context): for the logits at positions
//! `n_ctx/2 .. n_ctx - 2`, the negative log-likelihood of the next token. PPL = exp(mean NLL), with
//! llama.cpp's error estimate. Also what the routing did over the text: ExRep (window boundaries are
//! not counted as token pairs) and how often each layer used each expert.

use std::time::Instant;

use serde::Serialize;

use crate::forward::Logits;
use crate::routing::{exrep_counts, exrep_of_counts, ExRep, ExRepCount, RoutingTrace};
use crate::{Error, Result, Session};

#[derive(Clone, Debug)]
pub struct PerplexityConfig {
    /// Tokens per window (llama-perplexity's `-c`).
    pub n_ctx: usize,
    /// Score at most this many windows (all that fit: `None`).
    pub max_chunks: Option<usize>,
    /// Scored positions evaluated per forward pass (bounds the logits held: `batch x vocab` floats).
    pub batch: usize,
    /// Keep the routing of every window (and the router's logits) for [`PerplexityRun::trace`].
    pub record_routing: bool,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        PerplexityConfig {
            n_ctx: 512,
            max_chunks: None,
            batch: 64,
            record_routing: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PerplexityReport {
    /// Tokens of the text (the BOS included).
    pub text_tokens: usize,
    pub n_ctx: usize,
    pub chunks: usize,
    /// Tokens whose likelihood was scored: `chunks x (n_ctx - 1 - n_ctx / 2)`.
    pub scored_tokens: usize,
    pub ppl: f64,
    /// llama.cpp's "+/-": PPL times the standard error of the mean NLL.
    pub ppl_error: f64,
    /// Mean negative log-likelihood (natural log) per scored token.
    pub mean_nll: f64,
    /// PPL over the first i + 1 windows, as llama-perplexity prints `[i]ppl`.
    pub running_ppl: Vec<f64>,
    pub seconds: f64,
    /// Evaluated (not scored) tokens per second.
    pub tokens_per_s: f64,
    /// Mixture-of-experts models: ExRep over the text, and `expert_usage[l][e]`, the tokens layer `l`
    /// routed to expert `e`.
    pub exrep: Option<ExRep>,
    pub expert_usage: Option<Vec<Vec<u64>>>,
}

/// A perplexity run's report, and the routing of every window (when recorded).
pub struct PerplexityRun {
    pub report: PerplexityReport,
    pub trace: Option<RoutingTrace>,
}

/// `-log softmax(logits)[token]` in f64, as llama.cpp's `log_softmax` (max-shifted, f32 exponentials
/// summed in f64).
pub fn nll(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&v| f64::from((v - max).exp())).sum();
    let l = logits
        .get(token as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    -(f64::from(l - max) - sum.ln())
}

/// Perplexity of `tokens` (tokenized with the tokenizer's special tokens, as
/// `encode(text, true)` gives them) on `session`, which it resets; `on_chunk(i, running_ppl)` after
/// each window.
pub fn perplexity(
    session: &mut Session,
    tokens: &[u32],
    cfg: &PerplexityConfig,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<PerplexityRun> {
    let n_ctx = cfg.n_ctx;
    if n_ctx < 4 || n_ctx > session.n_ctx() {
        return Err(Error::InvalidArgument(format!(
            "a window of {n_ctx} tokens: this model's context holds 4 to {}",
            session.n_ctx()
        )));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::InvalidArgument(format!(
            "the text is {} tokens; perplexity with windows of {n_ctx} needs at least {}",
            tokens.len(),
            2 * n_ctx
        )));
    }
    if let Some(&id) = tokens
        .iter()
        .find(|&&t| t as usize >= session.model().config.vocab_size)
    {
        return Err(Error::TokenOutOfRange {
            id,
            vocab_size: session.model().config.vocab_size,
        });
    }
    let c = &session.model().config;
    let vocab = c.vocab_size;
    // llama.cpp puts BOS first in every window when its tokenizer adds BOS (the text then starts
    // with it).
    let bos = c.bos_token_id.filter(|b| tokens.first() == Some(b));
    let (n_layers, moe) = (c.n_layers, c.moe.clone());
    let chunks = (tokens.len() / n_ctx).min(cfg.max_chunks.unwrap_or(usize::MAX));
    let first = n_ctx / 2;
    let batch = cfg.batch.max(1);
    session.record_router_scores(cfg.record_routing);

    let t0 = Instant::now();
    let (mut sum, mut sum2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running_ppl = Vec::with_capacity(chunks);
    let mut counts = vec![ExRepCount::default(); n_layers];
    let mut usage: Option<Vec<Vec<u64>>> = None;
    let mut trace: Option<RoutingTrace> = None;
    let mut window = vec![0u32; n_ctx];
    for i in 0..chunks {
        window.copy_from_slice(&tokens[i * n_ctx..(i + 1) * n_ctx]);
        if let Some(b) = bos {
            window[0] = b;
        }
        session.reset();
        // The first half is context only.
        session.eval(&window[..first], Logits::Last)?;
        // Logits of positions first..n_ctx-1 predict the tokens after them; the last position's
        // would predict a token outside the window and is not scored.
        let mut pos = first;
        while pos < n_ctx - 1 {
            let end = (pos + batch).min(n_ctx - 1);
            let logits = session.eval(&window[pos..end], Logits::All)?;
            for (row, &next) in logits.chunks_exact(vocab).zip(&window[pos + 1..end + 1]) {
                let x = nll(row, next);
                sum += x;
                sum2 += x * x;
                count += 1;
            }
            pos = end;
        }
        // The window's last token is evaluated too, so the routing covers every token of it.
        session.eval(&window[n_ctx - 1..], Logits::Last)?;
        running_ppl.push((sum / count as f64).exp());
        on_chunk(i, (sum / count as f64).exp());

        if let Some(t) = session.routing_trace() {
            for (all, this) in counts.iter_mut().zip(exrep_counts(&t.tokens, n_layers)) {
                all.new += this.new;
                all.pairs += this.pairs;
            }
            let u = t.usage();
            match &mut usage {
                Some(all) => all
                    .iter_mut()
                    .flatten()
                    .zip(u.iter().flatten())
                    .for_each(|(a, b)| *a += b),
                None => usage = Some(u),
            }
            if cfg.record_routing {
                match &mut trace {
                    Some(all) => all.append(t),
                    None => trace = Some(t),
                }
            }
        }
    }
    session.record_router_scores(false);
    let seconds = t0.elapsed().as_secs_f64();
    let mean = sum / count as f64;
    let ppl = mean.exp();
    // llama.cpp: sqrt((E[x^2] - E[x]^2) / (n - 1)) x PPL.
    let var = sum2 / count as f64 - mean * mean;
    let ppl_error = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    let report = PerplexityReport {
        text_tokens: tokens.len(),
        n_ctx,
        chunks,
        scored_tokens: count,
        ppl,
        ppl_error,
        mean_nll: mean,
        running_ppl,
        seconds,
        tokens_per_s: (chunks * n_ctx) as f64 / seconds.max(1e-9),
        exrep: moe.as_ref().map(|m| exrep_of_counts(&counts, m.top_k)),
        expert_usage: usage,
    };
    Ok(PerplexityRun { report, trace })
}

impl std::fmt::Display for PerplexityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "PPL = {:.4} +/- {:.5} over {} windows of {} tokens ({} scored of {} in the text), {:.1} tok/s",
            self.ppl,
            self.ppl_error,
            self.chunks,
            self.n_ctx,
            self.scored_tokens,
            self.text_tokens,
            self.tokens_per_s
        )?;
        if let (Some(x), Some(usage)) = (&self.exrep, &self.expert_usage) {
            writeln!(f, "ExRep {:.3} (window boundaries not counted)", x.overall)?;
            writeln!(f, "expert usage per layer (tokens routed to each expert):")?;
            for (l, (u, xl)) in usage.iter().zip(&x.per_layer).enumerate() {
                let Some(xl) = xl else { continue };
                let row: Vec<String> = u.iter().map(u64::to_string).collect();
                writeln!(f, "  layer {l:>3}  ExRep {xl:.3}  {}", row.join(" "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_minus_log_softmax() {
        let logits = [1.0f32, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&v| f64::from(v).exp()).sum();
        for (t, &v) in logits.iter().enumerate() {
            let want = -(f64::from(v).exp() / z).ln();
            assert!((nll(&logits, t as u32) - want).abs() < 1e-6);
        }
        // Shift-invariant, and a token outside the logits is impossible.
        assert!((nll(&[1001.0, 1002.0, 1003.0], 2) - nll(&logits, 2)).abs() < 1e-6);
        assert!(nll(&logits, 9).is_infinite());
    }
}
