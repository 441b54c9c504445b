//! What a routing other than the model's own costs in quality and gains in the expert cache: the same
//! text decoded token by token with exact routing and with the other (each session with its own model
//! and cache, configured alike), compared position by position.
//!
//! Windows as `llama-perplexity` makes them (`n_ctx` tokens; the second half scored), but every token
//! decoded one at a time, as generation routes and fetches experts: cache-aware routing decides with
//! the cache's contents at each token.

use std::time::Instant;

use serde::Serialize;

use crate::forward::Logits;
use crate::perplexity::nll;
use crate::routing::{exrep_counts, exrep_of_counts, ExRepCount, RoutingTrace};
use crate::{Error, Result, Session};

#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// Tokens per window.
    pub n_ctx: usize,
    /// At most this many windows (`None`: all that fit).
    pub max_chunks: Option<usize>,
    /// Keep the other side's routing (the windows one after another) in the report.
    pub record_routing: bool,
}

/// One side of the comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoutingFigures {
    pub ppl: f64,
    /// ExRep over the windows (their boundaries not counted).
    pub exrep: Option<f64>,
    /// Expert fetches served from memory.
    pub hit_rate: f64,
    pub bytes_read_per_token: f64,
    pub tokens_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    pub n_ctx: usize,
    pub chunks: usize,
    pub scored_tokens: usize,
    pub exact: RoutingFigures,
    pub other: RoutingFigures,
    /// Mean KL(exact || other) of the next-token distributions over the scored positions, in nats.
    pub kl_mean: f64,
    pub kl_max: f64,
    /// Share of scored positions whose most likely next token is the same.
    pub top1_agreement: f64,
    /// (other ppl / exact ppl - 1) x 100.
    pub ppl_change_pct: f64,
    /// The other side's routing, when asked for.
    #[serde(skip)]
    pub other_trace: Option<RoutingTrace>,
}

/// Log-softmax of `logits`, in f64.
fn log_probs(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&x| x as f64 - lse).collect()
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len())
        .max_by(|&a, &b| x[a].total_cmp(&x[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// Decodes `tokens` in windows through both sessions (which it resets), `exact` with the model's
/// routing, `other` with whatever routing it was given.
pub fn compare_routing(
    exact: &mut Session,
    other: &mut Session,
    tokens: &[u32],
    cfg: &CompareConfig,
) -> Result<CompareReport> {
    let n_ctx = cfg.n_ctx;
    if n_ctx < 4 || n_ctx > exact.n_ctx().min(other.n_ctx()) {
        return Err(Error::InvalidArgument(format!(
            "a window of {n_ctx} tokens: this model's context holds 4 to {}",
            exact.n_ctx()
        )));
    }
    if tokens.len() < n_ctx {
        return Err(Error::InvalidArgument(format!(
            "the text is {} tokens, less than one window of {n_ctx}",
            tokens.len()
        )));
    }
    exact.check_fits(&tokens[..n_ctx])?;
    let c = exact.model().config.clone();
    let chunks = (tokens.len() / n_ctx).min(cfg.max_chunks.unwrap_or(usize::MAX));
    let first = n_ctx / 2;
    let mut sides: [&mut Session; 2] = [exact, other];
    // The models' own counters: each side has a model and cache of its own, read-ahead included.
    let before: Vec<_> = sides.iter().map(|s| s.model().experts.stats()).collect();
    let mut secs = [0f64; 2];
    let mut nll_sum = [0f64; 2];
    let mut counts = vec![vec![ExRepCount::default(); c.n_layers]; 2];
    let (mut kl_sum, mut kl_max, mut agree, mut scored) = (0f64, 0f64, 0usize, 0usize);
    let mut other_trace: Option<RoutingTrace> = None;
    for i in 0..chunks {
        let window = &tokens[i * n_ctx..(i + 1) * n_ctx];
        for s in sides.iter_mut() {
            s.reset();
        }
        for (p, &tok) in window.iter().enumerate() {
            let mut rows: [Vec<f32>; 2] = Default::default();
            for (j, s) in sides.iter_mut().enumerate() {
                let t0 = Instant::now();
                rows[j] = s.eval(&[tok], Logits::Last)?.to_vec();
                secs[j] += t0.elapsed().as_secs_f64();
            }
            // Position p's logits predict token p + 1; the second half of the window is scored.
            if p < first || p + 1 >= n_ctx {
                continue;
            }
            let next = window[p + 1];
            for j in 0..2 {
                nll_sum[j] += nll(&rows[j], next);
            }
            let (a, b) = (log_probs(&rows[0]), log_probs(&rows[1]));
            let kl: f64 = a.iter().zip(&b).map(|(x, y)| x.exp() * (x - y)).sum();
            kl_sum += kl;
            kl_max = kl_max.max(kl);
            agree += usize::from(argmax(&rows[0]) == argmax(&rows[1]));
            scored += 1;
        }
        for (j, s) in sides.iter().enumerate() {
            if let Some(t) = s.routing_trace() {
                for (all, this) in counts[j]
                    .iter_mut()
                    .zip(exrep_counts(&t.tokens, c.n_layers))
                {
                    all.new += this.new;
                    all.pairs += this.pairs;
                }
                if j == 1 && cfg.record_routing {
                    match other_trace.as_mut() {
                        Some(all) => all.append(t),
                        None => other_trace = Some(t),
                    }
                }
            }
        }
    }
    let n_tokens = (chunks * n_ctx) as f64;
    let figures = |j: usize, s: &Session| {
        let now = s.model().experts.stats();
        let (req, hits) = (now.requests - before[j].requests, now.hits - before[j].hits);
        RoutingFigures {
            ppl: (nll_sum[j] / scored.max(1) as f64).exp(),
            exrep: c
                .moe
                .as_ref()
                .map(|m| exrep_of_counts(&counts[j], m.top_k).overall),
            hit_rate: if req == 0 {
                0.0
            } else {
                hits as f64 / req as f64
            },
            bytes_read_per_token: (now.bytes_read - before[j].bytes_read) as f64 / n_tokens,
            tokens_per_s: if secs[j] > 0.0 {
                n_tokens / secs[j]
            } else {
                0.0
            },
        }
    };
    let exact_f = figures(0, sides[0]);
    let other_f = figures(1, sides[1]);
    Ok(CompareReport {
        n_ctx,
        chunks,
        scored_tokens: scored,
        ppl_change_pct: (other_f.ppl / exact_f.ppl - 1.0) * 100.0,
        exact: exact_f,
        other: other_f,
        kl_mean: kl_sum / scored.max(1) as f64,
        kl_max,
        top1_agreement: agree as f64 / scored.max(1) as f64,
        other_trace,
    })
}

impl std::fmt::Display for CompareReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} windows of {} tokens, each decoded token by token; {} positions scored",
            self.chunks, self.n_ctx, self.scored_tokens
        )?;
        writeln!(
            f,
            "routing   perplexity   ExRep   hit rate   read/token   tok/s"
        )?;
        for (name, r) in [("exact", &self.exact), ("other", &self.other)] {
            writeln!(
                f,
                "{name:<8}  {:>10.4}   {:>5}   {:>6.1} %   {:>7.3} MiB   {:>6.1}",
                r.ppl,
                r.exrep.map_or("-".into(), |x| format!("{x:.3}")),
                100.0 * r.hit_rate,
                r.bytes_read_per_token / (1 << 20) as f64,
                r.tokens_per_s
            )?;
        }
        writeln!(
            f,
            "quality: perplexity {:+.2} %, KL(exact || other) mean {:.5} nats (max {:.4}), top-1 agreement {:.1} %",
            self.ppl_change_pct,
            self.kl_mean,
            self.kl_max,
            100.0 * self.top1_agreement
        )
    }
}
