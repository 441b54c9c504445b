//! `cosmoe bench`: one prefill and a greedy decode on a loaded model, and what it cost: latency,
//! throughput, the expert cache's counters, memory (peak RSS from the OS against the bound
//! budget + resident weights + KV + 64 MiB), and the routing's ExRep. docs/report.md lists every field.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::generate::GenerateConfig;
use crate::sampler::SamplerConfig;
use crate::{Result, Session};

/// Overhead allowed over budget + resident weights + KV in the peak-RSS bound (code, stacks,
/// allocator slack, activations, tokenizer).
pub const RSS_SLACK: u64 = 64 << 20;

/// What `cosmoe bench` runs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Seed of the random prompt ids.
    pub seed: u64,
}

impl BenchConfig {
    /// Positions the run needs: the prompt's, and one per generated token but the last (sampled,
    /// never evaluated).
    pub fn positions(&self) -> usize {
        self.prompt_tokens + self.gen_tokens.saturating_sub(1)
    }

    /// Whether the run is possible in a context of `n_ctx` positions (checked before any work, so
    /// a run too long fails at once, not after its prefill).
    pub fn check(&self, n_ctx: usize) -> Result<()> {
        if self.prompt_tokens == 0 || self.gen_tokens == 0 {
            return Err(crate::Error::InvalidArgument(format!(
                "a benchmark needs at least 1 prompt token and 1 generated token, got {} and {}",
                self.prompt_tokens, self.gen_tokens
            )));
        }
        if self.positions() > n_ctx {
            return Err(crate::Error::InvalidArgument(format!(
                "{} prompt tokens and {} generated need {} positions; the context holds {}",
                self.prompt_tokens,
                self.gen_tokens,
                self.positions(),
                n_ctx
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `ms`.
    pub fn of(ms: &[f64]) -> Latency {
        if ms.is_empty() {
            return Latency {
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                mean_ms: 0.0,
            };
        }
        let mut v = ms.to_vec();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Latency {
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            max_ms: v[v.len() - 1],
            mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CacheReport {
    pub io: String,
    /// Bytes the cache may hold; `null` when unbounded (resident) or in mmap mode (the OS decides).
    pub budget_bytes: Option<u64>,
    pub total_expert_bytes: u64,
    /// The eviction policy.
    pub policy: String,
    pub prefetch: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub decode_hit_rate: f64,
    pub evictions: u64,
    pub bytes_read: u64,
    pub reads: u64,
    pub stall_ms: f64,
    /// Stall time over decode time.
    pub decode_stall_share: f64,
    pub prefetch_issued: u64,
    pub prefetch_useful: u64,
    pub prefetch_wasted: u64,
    pub prefetch_unused: u64,
    pub prefetch_stale: u64,
    pub prefetch_redundant: u64,
    pub prefetch_dropped_full: u64,
    /// The predictor's own share of the prefetches (hints for a later layer than the running one,
    /// read only while no read of a running layer is queued or in flight): loads started, used,
    /// evicted unused; the flash time they took, the stall they saved (estimated: each used load's
    /// read time before its `get` came), and how long they waited for the running layer's reads.
    pub predicted_issued: u64,
    pub predicted_no_room: u64,
    pub predicted_paused: u64,
    pub predicted_useful: u64,
    pub predicted_wasted: u64,
    pub predicted_read_ms: f64,
    pub predicted_saved_ms: f64,
    pub predicted_deferred_ms: f64,
    pub peak_cached_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    /// Peak resident set of the process (VmHWM), from /proc; `null` where the OS does not say.
    pub peak_rss_bytes: Option<u64>,
    /// Non-expert weights (embeddings, attention, norms, routers, shared experts, LM head).
    pub resident_weight_bytes: u64,
    pub kv_bytes: u64,
    /// budget + resident weights + KV + 64 MiB; `null` without a budget.
    pub rss_bound_bytes: Option<u64>,
    pub within_bound: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RoutingReport {
    pub source: String,
    pub exrep: f64,
    pub exrep_per_layer: Vec<Option<f64>>,
}

/// The statistics of a session's runs since it was created or reset ([`Session::stats`]): the
/// figures `--json` prints, and the C API's `cosmoe_stats`.
#[derive(Clone, Debug, Serialize)]
pub struct SessionStats {
    /// Tokens evaluated as prompts ([`Session::eval`]).
    pub prompt_tokens: usize,
    /// Tokens sampled ([`Session::generate`]).
    pub gen_tokens: usize,
    /// The last prompt's evaluation plus sampling its first token.
    pub ttft_ms: f64,
    /// The prompts' evaluation time.
    pub prefill_ms: f64,
    /// The time of the generated tokens after the first of each generation.
    pub decode_ms: f64,
    /// 0 when nothing was measured (no prompt, no decode step).
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Per generated token after the first of each generation (its forward pass and sampling).
    pub latency: Latency,
    /// The session's own expert fetches (other sessions of the model are not counted).
    pub cache: CacheReport,
    pub memory: MemoryReport,
    pub routing: RoutingReport,
    pub notices: Vec<String>,
}

/// `cosmoe bench`'s report: the run's [`SessionStats`] and how the model was loaded.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub threads: usize,
    /// Opening the files and building the model (experts are not read here).
    pub load_ms: f64,
    #[serde(flatten)]
    pub run: SessionStats,
}

/// Peak resident set size of this process (Linux: VmHWM in /proc/self/status).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Prefills `cfg.prompt_tokens` random ids on a fresh `session`, then decodes `cfg.gen_tokens`
/// greedily, past end-of-sequence tokens.
pub fn bench(
    session: &mut Session,
    load_ms: f64,
    cfg: &BenchConfig,
    name: &str,
) -> Result<BenchReport> {
    cfg.check(session.n_ctx())?;
    let vocab = session.model().config.vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let prompt: Vec<u32> = (0..cfg.prompt_tokens)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    session.reset();
    let gen = GenerateConfig {
        max_new_tokens: cfg.gen_tokens,
        stop_at_eos: false,
        context_shift: None,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        },
    };
    session.complete(&prompt, &gen, |_, _| true)?;
    Ok(BenchReport {
        model: name.to_owned(),
        threads: session.model().n_threads(),
        load_ms,
        run: session.stats(),
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.run;
        let (c, m, l) = (&r.cache, &r.memory, &r.latency);
        writeln!(f, "model              {}", self.model)?;
        writeln!(
            f,
            "tokens             {} prompt + {} generated, {} threads",
            r.prompt_tokens, r.gen_tokens, self.threads
        )?;
        writeln!(
            f,
            "time               load {:.0} ms, first token {:.1} ms, prefill {:.1} tok/s, decode {:.2} tok/s",
            self.load_ms, r.ttft_ms, r.prefill_tok_s, r.decode_tok_s
        )?;
        writeln!(
            f,
            "token latency      p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        )?;
        let budget = match c.budget_bytes {
            Some(b) => format!(
                "{:.1} MiB ({:.0} % of {:.1} MiB of experts)",
                mib(b),
                100.0 * b as f64 / c.total_expert_bytes.max(1) as f64,
                mib(c.total_expert_bytes)
            ),
            None if c.io == "mmap" => "the OS page cache (mmap)".into(),
            None => format!(
                "unbounded (all {:.1} MiB resident)",
                mib(c.total_expert_bytes)
            ),
        };
        writeln!(
            f,
            "expert cache       {budget}, io {}, policy {}, prefetch {}",
            c.io, c.policy, c.prefetch
        )?;
        writeln!(
            f,
            "  hits             {:.1} % ({} of {}; decode {:.1} %), {} evictions",
            100.0 * c.hit_rate,
            c.hits,
            c.requests,
            100.0 * c.decode_hit_rate,
            c.evictions
        )?;
        writeln!(
            f,
            "  flash reads      {:.1} MiB in {} reads, stall {:.1} ms ({:.1} % of decode)",
            mib(c.bytes_read),
            c.reads,
            c.stall_ms,
            100.0 * c.decode_stall_share
        )?;
        if c.prefetch != "none" {
            writeln!(
                f,
                "  prefetch         {} issued: {} useful, {} wasted, {} unused; {} stale, {} redundant, {} dropped",
                c.prefetch_issued,
                c.prefetch_useful,
                c.prefetch_wasted,
                c.prefetch_unused,
                c.prefetch_stale,
                c.prefetch_redundant,
                c.prefetch_dropped_full
            )?;
            writeln!(
                f,
                "  predicted        {} read ({:.1} ms of flash, {:.1} ms waiting for the running layer's reads), {} dropped for want of room, {} paused: {} used, {} evicted unused; stall saved ~{:.1} ms",
                c.predicted_issued,
                c.predicted_read_ms,
                c.predicted_deferred_ms,
                c.predicted_no_room,
                c.predicted_paused,
                c.predicted_useful,
                c.predicted_wasted,
                c.predicted_saved_ms
            )?;
        }
        let peak = m
            .peak_rss_bytes
            .map_or("?".into(), |p| format!("{:.1} MiB", mib(p)));
        write!(
            f,
            "memory             peak RSS {peak}; resident weights {:.1} MiB, KV {:.2} MiB",
            mib(m.resident_weight_bytes),
            mib(m.kv_bytes)
        )?;
        match (m.rss_bound_bytes, m.within_bound) {
            (Some(b), Some(ok)) => writeln!(
                f,
                "; bound {:.1} MiB: {}",
                mib(b),
                if ok { "within" } else { "EXCEEDED" }
            )?,
            _ => writeln!(f)?,
        }
        writeln!(
            f,
            "routing            {}; ExRep {:.3}",
            r.routing.source, r.routing.exrep
        )?;
        for n in &r.notices {
            writeln!(f, "note               {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&v);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(l.mean_ms, 50.5);
        assert_eq!(Latency::of(&[3.0]).p99_ms, 3.0);
        assert_eq!(Latency::of(&[]).max_ms, 0.0);
    }

    #[test]
    fn peak_rss_is_read_from_the_os() {
        if cfg!(target_os = "linux") {
            let p = peak_rss().unwrap();
            assert!(p > 1 << 20, "{p}");
        }
    }
}
