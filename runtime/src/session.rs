//! A [`Session`]: one conversation with a shared [`Model`]: its KV cache, its routing, its account at
//! the expert cache, its buffers, and the statistics of its runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cosmoe_cache::{CacheStats, CacheUser};

use crate::forward::{forward, Logits, PassState, Scratch};
use crate::generate::{GenerateConfig, Generation, StopReason};
use crate::report::{
    peak_rss, CacheReport, Latency, MemoryReport, RoutingReport, SessionStats, RSS_SLACK,
};
use crate::routing::{Prefetch, RoutingRecord, RoutingSource, RoutingTrace, SyntheticRouting};
use crate::sampler::Sampler;
use crate::{Error, Model, Result};

/// One conversation with a model. Several sessions of one model may run at the same time on
/// different threads, sharing its weights and expert cache; each gives exactly the outputs it would
/// give alone. A session is used by one thread at a time (`Send`, not `Sync`).
///
/// The context holds every token evaluated, plus the last token [`generate`](Self::generate)
/// sampled: that one is evaluated by the next `eval` or `generate` (a generation does not spend a
/// forward pass on a token whose logits nobody may want).
pub struct Session {
    model: Arc<Model>,
    pub(crate) st: PassState,
    /// Whether `st.scratch.logits` holds the logits of a pass since the last reset.
    pub(crate) has_logits: bool,
    /// Sampled and in the context, not yet evaluated.
    pub(crate) pending: Option<u32>,
    /// The context's tokens, for the repeat penalty (empty after `load_state`: a state keeps no
    /// tokens).
    pub(crate) tokens: Vec<u32>,
    routing_name: String,
    log: RunLog,
}

/// A handle that cancels what a session is running, from any thread.
#[derive(Clone, Debug)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// The session's running `eval` or `generate` returns [`Error::Cancelled`] at its next layer or
    /// token. Does nothing when nothing runs (the next call starts afresh).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the session's runs measured since it was created or reset.
#[derive(Clone, Debug, Default)]
struct RunLog {
    prompt_tokens: usize,
    prefill_s: f64,
    /// The last `eval`'s time, then (once its first token is sampled) the time to first token.
    last_eval_s: f64,
    ttft_s: f64,
    gen_tokens: usize,
    decode_s: f64,
    latency_ms: Vec<f64>,
    /// The session's cache counters over its decode steps alone.
    decode_requests: u64,
    decode_hits: u64,
    decode_stall_ns: u64,
}

impl Session {
    /// A new, empty session of `model`, with the model's prefetch predictor.
    pub fn new(model: Arc<Model>) -> Session {
        let st = PassState {
            kv: model.new_kv_cache(),
            n_ctx: model.config.max_position_embeddings,
            discarded: 0,
            routing: RoutingRecord::default(),
            cache_user: CacheUser::new(),
            prefetch: model.prefetch,
            cancel: Arc::new(AtomicBool::new(false)),
            scratch: Scratch::default(),
        };
        Session {
            model,
            st,
            has_logits: false,
            pending: None,
            tokens: Vec::new(),
            routing_name: "the model's routers".into(),
            log: RunLog::default(),
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Positions in the context (evaluated tokens and the pending sampled one).
    pub fn n_past(&self) -> usize {
        self.st.kv.len() + usize::from(self.pending.is_some())
    }

    /// The most positions the context holds: the model's trained context unless
    /// [`set_n_ctx`](Self::set_n_ctx) made it smaller.
    pub fn n_ctx(&self) -> usize {
        self.st.n_ctx
    }

    /// Limits the context to `n` positions, so the KV cache never holds more than `n` positions'
    /// keys and values. `n` must hold what the context holds now, and not exceed the model's
    /// trained context.
    pub fn set_n_ctx(&mut self, n: usize) -> Result<()> {
        let max = self.model.config.max_position_embeddings;
        if n == 0 || n > max {
            return Err(Error::InvalidArgument(format!(
                "a context of {n} positions: this model's is 1 to {max}"
            )));
        }
        if n < self.n_past() {
            return Err(Error::InvalidArgument(format!(
                "a context of {n} positions: it holds {} already",
                self.n_past()
            )));
        }
        self.st.n_ctx = n;
        Ok(())
    }

    /// Context shift, as llama.cpp's: keeps the first `keep` positions, drops the oldest half of the
    /// others, and moves the rest down (their keys rotated back by as many positions), making room
    /// for more tokens. Returns how many positions were dropped. The logits and the pending token
    /// are kept; the routing record keeps counting tokens, not positions.
    pub fn shift_context(&mut self, keep: usize) -> Result<usize> {
        let n = self.st.kv.len();
        if keep + 2 > n {
            return Err(Error::InvalidArgument(format!(
                "cannot shift a context of {n} positions keeping {keep}: nothing would be dropped"
            )));
        }
        let n_discard = (n - keep) / 2;
        let model = self.model.clone();
        let hd = model.config.head_dim;
        // RoPE by -n_discard: the rotation by n_discard with its sine negated.
        let (mut cos, mut sin) = (vec![0.0; hd / 2], vec![0.0; hd / 2]);
        model.rope.cos_sin(n_discard, &mut cos, &mut sin);
        sin.iter_mut().for_each(|s| *s = -*s);
        let rope = if model.spec.rope_interleaved {
            cosmoe_kernels::rope_interleaved
        } else {
            cosmoe_kernels::rope_neox
        };
        self.st.kv.discard(keep, n_discard, |row| {
            row.chunks_exact_mut(hd)
                .for_each(|head| rope(head, &cos, &sin));
        });
        self.st.discarded += n_discard;
        let t = keep.min(self.tokens.len());
        self.tokens
            .drain(t..(keep + n_discard).min(self.tokens.len()));
        Ok(n_discard)
    }

    /// Routes by `source` from now on (a trace or generator instead of the routers), named `name`
    /// in the statistics.
    pub fn set_routing(&mut self, source: RoutingSource, name: impl Into<String>) {
        self.st.routing.source = source;
        self.routing_name = name.into();
    }

    /// Routes by the trace recorded in `path` (`run --record-routing`'s JSON) instead of the
    /// routers; it must have this model's layers, experts and top-k.
    pub fn route_by_trace(&mut self, path: &std::path::Path) -> Result<()> {
        let trace = RoutingTrace::load(path)?;
        self.route_by(trace, format!("trace {}", path.display()))
    }

    /// Routes by the model's routers, preferring experts in the expert cache
    /// (`cache-aware[:lambda=X|margin=X][,keep=J]`, [`CacheAware`](crate::routing::CacheAware)).
    pub fn route_cache_aware(&mut self, spec: &str) -> Result<()> {
        let ca = crate::routing::CacheAware::parse(spec)?;
        if self.model.config.moe.is_none() {
            return Err(Error::InvalidArgument(
                "cache-aware routing needs a mixture-of-experts model".into(),
            ));
        }
        self.set_routing(RoutingSource::CacheAware(ca), spec);
        Ok(())
    }

    /// Routes by a generator (`synthetic:exrep=0.44[,skew=1.0][,seed=N]`, [`SyntheticRouting`])
    /// for `n_tokens` positions instead of the routers.
    pub fn route_synthetic(&mut self, spec: &str, n_tokens: usize) -> Result<()> {
        let c = &self.model.config;
        let Some(m) = &c.moe else {
            return Err(Error::InvalidArgument(
                "synthetic routing needs a mixture-of-experts model".into(),
            ));
        };
        let sparse: Vec<bool> = (0..c.n_layers).map(|l| c.is_sparse_layer(l)).collect();
        let trace =
            SyntheticRouting::parse(spec)?.generate(&sparse, m.n_experts, m.top_k, n_tokens);
        self.route_by(trace, spec)
    }

    /// Routes by `trace` (checked against the model's shape), reported as `name`.
    pub fn route_by(&mut self, trace: RoutingTrace, name: impl Into<String>) -> Result<()> {
        let c = &self.model.config;
        let Some(m) = &c.moe else {
            return Err(Error::InvalidArgument(
                "a routing trace needs a mixture-of-experts model".into(),
            ));
        };
        trace.check_fits(c.n_layers, m.n_experts, m.top_k)?;
        self.set_routing(RoutingSource::Trace(Arc::new(trace)), name);
        Ok(())
    }

    /// Keeps the router's logits of every position evaluated from now on, for
    /// [`routing_trace`](Self::routing_trace)'s `scores` (`n_layers x n_experts` floats a position).
    pub fn record_router_scores(&mut self, on: bool) {
        self.st.routing.keep_scores(on);
    }

    /// The expert predictor for prefetching (it needs the model's cache to have reader threads).
    pub fn set_prefetch(&mut self, p: Prefetch) {
        self.st.prefetch = p;
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.st.cancel.clone())
    }

    /// Empties the context and the statistics; keeps the routing source and the buffers.
    pub fn reset(&mut self) {
        self.st.kv.clear();
        self.st.routing.truncate(0);
        // A new account, so the statistics start from zero (late prefetch outcomes of the old one
        // are not counted to it).
        self.st.cache_user = CacheUser::new();
        self.has_logits = false;
        self.pending = None;
        self.tokens.clear();
        self.st.discarded = 0;
        self.log = RunLog::default();
    }

    /// Appends `tokens` to the context and returns their logits: the last token's `(vocab)` or every
    /// token's `(n, vocab)`. On error the context is as it was (the pending token, if any, stays
    /// pending).
    pub fn eval(&mut self, tokens: &[u32], want: Logits) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(Error::EmptyInput);
        }
        self.check_fits(tokens)?;
        self.begin();
        let t0 = Instant::now();
        let mut input = Vec::with_capacity(tokens.len() + 1);
        input.extend(self.pending);
        input.extend_from_slice(tokens);
        self.pass(&input, want)?;
        let extra = usize::from(self.pending.take().is_some());
        self.tokens.extend_from_slice(tokens);
        let s = t0.elapsed().as_secs_f64();
        self.log.prompt_tokens += tokens.len();
        self.log.prefill_s += s;
        self.log.last_eval_s = s;
        let v = self.model.config.vocab_size;
        if want == Logits::All && extra == 1 {
            // The pending token's row is not one of `tokens`'.
            return Ok(&self.st.scratch.logits[v..]);
        }
        Ok(&self.st.scratch.logits)
    }

    /// The logits of the last evaluated position, `(vocab)`; `None` before anything is evaluated.
    pub fn logits(&self) -> Option<&[f32]> {
        let logits = &self.st.scratch.logits;
        let v = self.model.config.vocab_size;
        self.has_logits
            .then(|| logits.get(logits.len().saturating_sub(v)..))
            .flatten()
    }

    /// Samples up to `cfg.max_new_tokens` tokens from the current logits on, evaluating each before
    /// sampling the next; `on_token(token, last)` gets each token as soon as it is sampled, with
    /// `last` set when the generation ends with it (end of sequence, the tokens asked for, a full
    /// context), and returns `false` to stop. When the context fills, the token sampled from its
    /// last position is returned but not kept (no position is left for it). Needs something evaluated first
    /// ([`eval`](Self::eval), or an earlier generation).
    ///
    /// On error (a failed expert read, a cancel) the tokens sampled so far stay in the context.
    pub fn generate(
        &mut self,
        cfg: &GenerateConfig,
        mut on_token: impl FnMut(u32, bool) -> bool,
    ) -> Result<Generation> {
        self.begin();
        let mut sampler = Sampler::new(cfg.sampler.clone())?;
        if !self.has_logits && self.pending.is_none() {
            return Err(Error::InvalidArgument(
                "nothing to generate from: evaluate a prompt first".into(),
            ));
        }
        let before = self.cache_stats();
        let t0 = Instant::now();
        let mut g = Generation::default();
        let r = self.generate_loop(cfg, &mut sampler, &mut g, &mut on_token, t0);
        let after = self.cache_stats();
        self.log.decode_requests += after.requests - before.requests;
        self.log.decode_hits += after.hits - before.hits;
        self.log.decode_stall_ns += after.stall_ns - before.stall_ns;
        self.log.gen_tokens += g.tokens.len();
        r.map(|()| g)
    }

    fn generate_loop(
        &mut self,
        cfg: &GenerateConfig,
        sampler: &mut Sampler,
        g: &mut Generation,
        on_token: &mut impl FnMut(u32, bool) -> bool,
        t0: Instant,
    ) -> Result<()> {
        let model = self.model.clone();
        let eos = &model.config.eos_token_ids;
        loop {
            if g.tokens.len() >= cfg.max_new_tokens {
                g.stop = StopReason::MaxTokens;
                return Ok(());
            }
            if self.st.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let t = Instant::now();
            let stepped = match self.pending {
                Some(p) => {
                    if self.st.kv.len() >= self.n_ctx() {
                        match cfg.context_shift {
                            Some(keep) => {
                                self.shift_context(keep)?;
                            }
                            None => {
                                g.stop = StopReason::ContextFull;
                                return Ok(());
                            }
                        }
                    }
                    self.pass(&[p], Logits::Last)?;
                    self.pending = None;
                    true
                }
                None => false,
            };
            let tok = match self.logits() {
                Some(l) => sampler.sample(l, &self.tokens),
                None => return Err(Error::InvalidArgument("no logits to sample from".into())),
            };
            if stepped {
                let s = t.elapsed().as_secs_f64();
                self.log.decode_s += s;
                self.log.latency_ms.push(s * 1e3);
            } else {
                self.log.ttft_s = self.log.last_eval_s + t0.elapsed().as_secs_f64();
            }
            self.pending = Some(tok);
            self.tokens.push(tok);
            g.tokens.push(tok);
            // Known before the callback, so a text stream can flush what it holds back.
            let stop = if cfg.stop_at_eos && eos.contains(&tok) {
                Some(StopReason::Eos)
            } else if g.tokens.len() >= cfg.max_new_tokens {
                Some(StopReason::MaxTokens)
            } else if self.st.kv.len() >= self.n_ctx() && cfg.context_shift.is_none() {
                Some(StopReason::ContextFull)
            } else {
                None
            };
            if !on_token(tok, stop.is_some()) {
                g.stop = StopReason::Callback;
                return Ok(());
            }
            if let Some(stop) = stop {
                if stop == StopReason::ContextFull {
                    // Its position is past the context: it is returned, not kept.
                    self.pending = None;
                    self.tokens.pop();
                }
                g.stop = stop;
                return Ok(());
            }
        }
    }

    /// Evaluates `prompt`, then generates (nothing when `cfg.max_new_tokens` is 0): what a command
    /// line or a benchmark runs.
    pub fn complete(
        &mut self,
        prompt: &[u32],
        cfg: &GenerateConfig,
        on_token: impl FnMut(u32, bool) -> bool,
    ) -> Result<Generation> {
        Sampler::new(cfg.sampler.clone())?;
        if prompt.is_empty() {
            return Err(Error::EmptyInput);
        }
        self.check_fits(prompt)?;
        self.eval(prompt, Logits::Last)?;
        if cfg.max_new_tokens == 0 {
            return Ok(Generation::default());
        }
        self.generate(cfg, on_token)
    }

    /// Whether `tokens` are in the vocabulary and fit the context after what it holds, checked before
    /// any work (the forward pass checks again).
    pub fn check_fits(&self, tokens: &[u32]) -> Result<()> {
        let vocab_size = self.model.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange { id, vocab_size });
        }
        let needed = self.n_past() + tokens.len();
        if needed > self.n_ctx() {
            return Err(Error::ContextFull {
                needed,
                max: self.n_ctx(),
            });
        }
        Ok(())
    }

    /// A new call starts: a cancel meant for an earlier one is forgotten.
    fn begin(&self) {
        self.st.cancel.store(false, Ordering::Relaxed);
    }

    fn pass(&mut self, tokens: &[u32], want: Logits) -> Result<()> {
        let (model, st) = (&*self.model, &mut self.st);
        model.on_pool(|| forward(model, st, tokens, want))?;
        self.has_logits = true;
        Ok(())
    }

    /// This session's own counters at the expert cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.model.experts.stats_of(&self.st.cache_user)
    }

    /// The experts every evaluated position chose (`None` for a dense model).
    pub fn routing_trace(&self) -> Option<RoutingTrace> {
        let c = &self.model.config;
        let m = c.moe.as_ref()?;
        Some(self.st.routing.trace(c.n_layers, m.n_experts, m.top_k))
    }

    /// Bytes the KV cache holds.
    pub fn kv_bytes(&self) -> usize {
        self.st.kv.n_bytes()
    }

    /// The statistics of the session's runs since it was created or reset. Waits for the prefetches
    /// in flight, so their outcomes are counted.
    pub fn stats(&self) -> SessionStats {
        let model = &*self.model;
        model.experts.wait_prefetches();
        let s = self.cache_stats();
        let log = &self.log;
        let exrep = self.routing_trace().map(|t| t.exrep()).unwrap_or_default();
        let kv_bytes = self.kv_bytes() as u64;
        let budget = model.experts.budget();
        let peak = peak_rss();
        let bound = budget.map(|b| b + model.resident_bytes + kv_bytes + RSS_SLACK);
        SessionStats {
            prompt_tokens: log.prompt_tokens,
            gen_tokens: log.gen_tokens,
            ttft_ms: log.ttft_s * 1e3,
            prefill_ms: log.prefill_s * 1e3,
            decode_ms: log.decode_s * 1e3,
            prefill_tok_s: per_second(log.prompt_tokens, log.prefill_s),
            decode_tok_s: per_second(log.latency_ms.len(), log.decode_s),
            latency: Latency::of(&log.latency_ms),
            cache: CacheReport {
                io: model.experts.config().io.to_string(),
                budget_bytes: budget,
                total_expert_bytes: model.experts.total_expert_bytes(),
                policy: model.experts.config().policy.name().into(),
                prefetch: self.st.prefetch.name().into(),
                requests: s.requests,
                hits: s.hits,
                misses: s.misses,
                hit_rate: s.hit_rate(),
                decode_hit_rate: match log.decode_requests {
                    0 => 0.0,
                    r => log.decode_hits as f64 / r as f64,
                },
                evictions: s.evictions,
                bytes_read: s.bytes_read,
                reads: s.reads,
                stall_ms: s.stall_ms(),
                decode_stall_share: log.decode_stall_ns as f64 / 1e9 / log.decode_s.max(1e-9),
                prefetch_issued: s.prefetch_issued,
                prefetch_useful: s.prefetch_useful,
                prefetch_wasted: s.prefetch_wasted,
                prefetch_unused: s.prefetch_unused,
                prefetch_stale: s.prefetch_stale,
                prefetch_redundant: s.prefetch_redundant,
                prefetch_dropped_full: s.prefetch_dropped_full,
                predicted_issued: s.predicted_issued,
                predicted_no_room: s.predicted_no_room,
                predicted_paused: s.predicted_paused,
                predicted_useful: s.predicted_useful,
                predicted_wasted: s.predicted_wasted,
                predicted_read_ms: s.predicted_read_ns as f64 / 1e6,
                predicted_saved_ms: s.predicted_saved_ns as f64 / 1e6,
                predicted_deferred_ms: s.predicted_deferred_ns as f64 / 1e6,
                peak_cached_bytes: s.peak_cached_bytes,
            },
            memory: MemoryReport {
                peak_rss_bytes: peak,
                resident_weight_bytes: model.resident_bytes,
                kv_bytes,
                rss_bound_bytes: bound,
                within_bound: bound.zip(peak).map(|(b, p)| p <= b),
            },
            routing: RoutingReport {
                source: self.routing_name.clone(),
                exrep: exrep.overall,
                exrep_per_layer: exrep.per_layer,
            },
            notices: model.experts.notices(),
        }
    }
}

/// `n` per second over `s` seconds; 0 when nothing was measured.
fn per_second(n: usize, s: f64) -> f64 {
    if n == 0 || s <= 0.0 {
        0.0
    } else {
        n as f64 / s
    }
}

// Sessions move between threads; the model is shared.
const _: () = {
    const fn send<T: Send>() {}
    send::<Session>();
};
