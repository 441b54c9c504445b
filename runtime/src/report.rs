//! `cosmoe bench`: one prefill and a greedy decode on a loaded model, and what it cost: latency,
//! throughput, the expert cache's counters, memory (peak RSS from the OS against the bound
//! budget + resident weights + KV + 64 MiB), and the routing's ExRep. docs/report.md lists every field.

use std::fmt;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::forward::Logits;
use crate::routing::ExRep;
use crate::sampler::argmax;
use crate::{Model, Result};

/// Overhead allowed over budget + resident weights + KV in the peak-RSS bound (code, stacks,
/// allocator slack, activations, tokenizer).
pub const RSS_SLACK: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Seed of the random prompt ids.
    pub seed: u64,
    /// How the routing was chosen, for the report ("model", "trace FILE", "synthetic:exrep=...").
    pub routing: String,
    pub threads: usize,
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

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub load_ms: f64,
    /// Prefill of the prompt plus sampling the first token.
    pub ttft_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Per generated token after the first.
    pub latency: Latency,
    pub cache: CacheReport,
    pub memory: MemoryReport,
    pub routing: RoutingReport,
    pub notices: Vec<String>,
}

/// Peak resident set size of this process (Linux: VmHWM in /proc/self/status).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What one run measured, for [`report`].
#[derive(Clone, Debug)]
pub struct Measured {
    pub prompt_tokens: usize,
    /// Tokens generated (the first by the prefill).
    pub gen_tokens: usize,
    /// Prefill and first sample, seconds.
    pub ttft_s: f64,
    /// Per decoded token after the first, ms.
    pub latency_ms: Vec<f64>,
    pub decode_s: f64,
    /// The cache's counters when the prefill ended.
    pub after_prefill: cosmoe_cache::CacheStats,
    pub kv_bytes: u64,
}

/// Runs the benchmark on `model` (loaded in `load_ms`).
pub fn bench(model: &Model, load_ms: f64, cfg: &BenchConfig, name: &str) -> Result<BenchReport> {
    let c = &model.config;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let prompt: Vec<u32> = (0..cfg.prompt_tokens.max(1))
        .map(|_| rng.random_range(0..c.vocab_size as u32))
        .collect();
    let mut kv = model.new_kv_cache();

    let t0 = Instant::now();
    let logits = model.forward(&prompt, &mut kv, Logits::Last)?;
    let mut next = argmax(&logits);
    let ttft = t0.elapsed().as_secs_f64();
    let after_prefill = model.experts.stats();

    let mut lat = Vec::with_capacity(cfg.gen_tokens);
    let t1 = Instant::now();
    for _ in 1..cfg.gen_tokens {
        let t = Instant::now();
        let logits = model.forward(&[next], &mut kv, Logits::Last)?;
        next = argmax(&logits);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let m = Measured {
        prompt_tokens: prompt.len(),
        gen_tokens: cfg.gen_tokens,
        ttft_s: ttft,
        latency_ms: lat,
        decode_s,
        after_prefill,
        kv_bytes: kv.n_bytes() as u64,
    };
    Ok(report(model, load_ms, cfg, name, &m))
}

/// The report of a measured run.
pub fn report(
    model: &Model,
    load_ms: f64,
    cfg: &BenchConfig,
    name: &str,
    m: &Measured,
) -> BenchReport {
    let c = &model.config;
    let (ttft, lat, decode_s, after_prefill) =
        (m.ttft_s, &m.latency_ms, m.decode_s, m.after_prefill);
    model.experts.wait_prefetches();
    let s = model.experts.stats();

    let n_pos = m.prompt_tokens + m.gen_tokens.saturating_sub(1);
    let exrep: ExRep = match &c.moe {
        Some(m) => model
            .routing
            .trace(n_pos, c.n_layers, m.n_experts, m.top_k)
            .exrep(),
        None => ExRep::default(),
    };
    let total_bytes: u64 = model
        .source
        .tensor_stats()
        .iter()
        .map(|t| t.n_bytes as u64)
        .sum();
    let expert_bytes = model.experts.total_bytes() as u64;
    let resident = total_bytes.saturating_sub(expert_bytes);
    let kv_bytes = m.kv_bytes;
    let budget = model.experts.budget();
    let peak = peak_rss();
    let bound = budget.map(|b| b + resident + kv_bytes + RSS_SLACK);
    let d_req = s.requests - after_prefill.requests;
    let d_hits = s.hits - after_prefill.hits;
    let d_stall = (s.stall_ns - after_prefill.stall_ns) as f64 / 1e9;
    BenchReport {
        model: name.to_owned(),
        threads: cfg.threads,
        prompt_tokens: m.prompt_tokens,
        gen_tokens: m.gen_tokens,
        load_ms,
        ttft_ms: ttft * 1e3,
        prefill_tok_s: m.prompt_tokens as f64 / ttft.max(1e-9),
        decode_tok_s: lat.len() as f64 / decode_s.max(1e-9),
        latency: Latency::of(lat),
        cache: CacheReport {
            io: model.experts.config().io.to_string(),
            budget_bytes: budget,
            total_expert_bytes: model.experts.total_expert_bytes(),
            prefetch: model.routing.prefetch.name().into(),
            requests: s.requests,
            hits: s.hits,
            misses: s.misses,
            hit_rate: s.hit_rate(),
            decode_hit_rate: if d_req == 0 {
                0.0
            } else {
                d_hits as f64 / d_req as f64
            },
            evictions: s.evictions,
            bytes_read: s.bytes_read,
            reads: s.reads,
            stall_ms: s.stall_ms(),
            decode_stall_share: d_stall / decode_s.max(1e-9),
            prefetch_issued: s.prefetch_issued,
            prefetch_useful: s.prefetch_useful,
            prefetch_wasted: s.prefetch_wasted,
            prefetch_unused: s.prefetch_unused,
            prefetch_stale: s.prefetch_stale,
            prefetch_redundant: s.prefetch_redundant,
            prefetch_dropped_full: s.prefetch_dropped_full,
            peak_cached_bytes: s.peak_cached_bytes,
        },
        memory: MemoryReport {
            peak_rss_bytes: peak,
            resident_weight_bytes: resident,
            kv_bytes,
            rss_bound_bytes: bound,
            within_bound: bound.zip(peak).map(|(b, p)| p <= b),
        },
        routing: RoutingReport {
            source: cfg.routing.clone(),
            exrep: exrep.overall,
            exrep_per_layer: exrep.per_layer,
        },
        notices: model.experts.notices(),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cache;
        let m = &self.memory;
        let l = &self.latency;
        writeln!(f, "model              {}", self.model)?;
        writeln!(
            f,
            "tokens             {} prompt + {} generated, {} threads",
            self.prompt_tokens, self.gen_tokens, self.threads
        )?;
        writeln!(
            f,
            "time               load {:.0} ms, first token {:.1} ms, prefill {:.1} tok/s, decode {:.2} tok/s",
            self.load_ms, self.ttft_ms, self.prefill_tok_s, self.decode_tok_s
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
            "expert cache       {budget}, io {}, prefetch {}",
            c.io, c.prefetch
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
            self.routing.source, self.routing.exrep
        )?;
        for n in &self.notices {
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
