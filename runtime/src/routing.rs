//! Which experts each token uses: recorded from the router, replayed from a trace, or generated with a
//! chosen locality; and the paper's ExRep measured on any of them.
//!
//! ExRep (../shared/PAPER.md): for each layer, the experts that enter the top-k set from token t to token
//! t+1, summed over t and divided by k x (T - 1); 0 = the same experts every token, 1 = all new every token.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The experts chosen for each token at each MoE layer: `tokens[t][l]` = the top-k experts of token t
/// in layer l (empty for a dense layer); and, when recorded, the router's logits for every expert:
/// `scores[t][l]` (`n_experts` of them, empty for a dense layer), what a cache policy or a predictor
/// can learn from beyond the choice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingTrace {
    pub n_layers: usize,
    pub n_experts: usize,
    pub top_k: usize,
    pub tokens: Vec<Vec<Vec<u32>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<Vec<Vec<f32>>>,
}

impl RoutingTrace {
    pub fn new(n_layers: usize, n_experts: usize, top_k: usize) -> Self {
        RoutingTrace {
            n_layers,
            n_experts,
            top_k,
            tokens: Vec::new(),
            scores: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        let t: RoutingTrace = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidArgument(format!("{}: not a routing trace: {e}", path.display()))
        })?;
        t.validate()
            .map_err(|m| Error::InvalidArgument(format!("{}: {m}", path.display())))?;
        Ok(t)
    }

    /// Writes the trace as JSON through `PATH.part` ([`crate::outfile`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| Error::InvalidArgument(format!("routing trace: {e}")))?;
        crate::outfile::write(path, text.as_bytes())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !self.scores.is_empty() && self.scores.len() != self.tokens.len() {
            return Err(format!(
                "scores for {} tokens, choices for {}",
                self.scores.len(),
                self.tokens.len()
            ));
        }
        for (t, layers) in self.scores.iter().enumerate() {
            let bad = layers.len() != self.n_layers
                || layers
                    .iter()
                    .any(|s| !s.is_empty() && s.len() != self.n_experts);
            if bad {
                return Err(format!(
                    "token {t}: scores are not {} layers of {} experts",
                    self.n_layers, self.n_experts
                ));
            }
        }
        for (t, layers) in self.tokens.iter().enumerate() {
            if layers.len() != self.n_layers {
                return Err(format!(
                    "token {t} has {} layers, expected {}",
                    layers.len(),
                    self.n_layers
                ));
            }
            for (l, es) in layers.iter().enumerate() {
                if !es.is_empty() && es.len() != self.top_k {
                    return Err(format!(
                        "token {t} layer {l}: {} experts, expected {}",
                        es.len(),
                        self.top_k
                    ));
                }
                if let Some(e) = es.iter().find(|&&e| e as usize >= self.n_experts) {
                    return Err(format!(
                        "token {t} layer {l}: expert {e} of {}",
                        self.n_experts
                    ));
                }
                // A router picks k distinct experts; a repeated one would be weighted twice.
                if let Some((i, e)) = es.iter().enumerate().find(|&(i, e)| es[..i].contains(e)) {
                    return Err(format!(
                        "token {t} layer {l}: expert {e} chosen twice (slots {} and {i})",
                        es.iter().position(|x| x == e).unwrap_or(0)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the trace fits a model's shape.
    pub fn check_fits(&self, n_layers: usize, n_experts: usize, top_k: usize) -> Result<()> {
        if (self.n_layers, self.n_experts, self.top_k) != (n_layers, n_experts, top_k) {
            return Err(Error::InvalidArgument(format!(
                "routing trace is for {} layers x {} experts, top-{}; the model has {n_layers} x {n_experts}, top-{top_k}",
                self.n_layers, self.n_experts, self.top_k
            )));
        }
        if self.tokens.is_empty() {
            return Err(Error::InvalidArgument("routing trace has no tokens".into()));
        }
        Ok(())
    }

    pub fn exrep(&self) -> ExRep {
        exrep(&self.tokens, self.n_layers, self.top_k)
    }

    /// The trace for a deeper model with the same experts and top-k: its layer `l` of `n_layers`
    /// follows this trace's layer `l * self.n_layers / n_layers`, so each recorded layer drives a run
    /// of consecutive layers and keeps its own ExRep. It replays a small trained model's routing at a
    /// larger shape (cosmoe-phone driven by a 4-layer model's choices, docs/paper.md).
    pub fn stretch(&self, n_layers: usize) -> Result<RoutingTrace> {
        if n_layers < self.n_layers || self.n_layers == 0 {
            return Err(Error::InvalidArgument(format!(
                "a routing trace of {} layers cannot be stretched to {n_layers}",
                self.n_layers
            )));
        }
        let src = |l: usize| l * self.n_layers / n_layers;
        let map = |t: &Vec<Vec<u32>>| (0..n_layers).map(|l| t[src(l)].clone()).collect();
        let map_f = |t: &Vec<Vec<f32>>| (0..n_layers).map(|l| t[src(l)].clone()).collect();
        Ok(RoutingTrace {
            n_layers,
            n_experts: self.n_experts,
            top_k: self.top_k,
            tokens: self.tokens.iter().map(map).collect(),
            scores: self.scores.iter().map(map_f).collect(),
        })
    }

    /// The expert fetches of the first `n_tokens` tokens, as the forward pass makes them one token at a
    /// time: a visit of each MoE layer in turn, each with the layer's experts in index order
    /// ([`cosmoe_cache::sim::replay`]'s input).
    pub fn requests(&self, n_tokens: usize) -> Vec<Vec<(usize, usize)>> {
        let mut r = Vec::new();
        for layers in self.tokens.iter().take(n_tokens) {
            for (l, es) in layers.iter().enumerate() {
                if es.is_empty() {
                    continue;
                }
                let mut es: Vec<usize> = es.iter().map(|&e| e as usize).collect();
                es.sort_unstable();
                r.push(es.into_iter().map(|e| (l, e)).collect());
            }
        }
        r
    }

    /// `usage[l][e]`: how many tokens layer `l` routed to expert `e`.
    pub fn usage(&self) -> Vec<Vec<u64>> {
        let mut usage = vec![vec![0u64; self.n_experts]; self.n_layers];
        for layers in &self.tokens {
            for (l, es) in layers.iter().enumerate() {
                for &e in es {
                    if let Some(n) = usage.get_mut(l).and_then(|u| u.get_mut(e as usize)) {
                        *n += 1;
                    }
                }
            }
        }
        usage
    }

    /// Appends `other`'s tokens (a trace of the same shape: a later, separate run); the scores stay
    /// only if both have them for every token.
    pub fn append(&mut self, other: RoutingTrace) {
        let scored =
            self.scores.len() == self.tokens.len() && other.scores.len() == other.tokens.len();
        self.tokens.extend(other.tokens);
        if scored {
            self.scores.extend(other.scores);
        } else {
            self.scores.clear();
        }
    }
}

/// ExRep's sums for one layer: experts entering the top-k from one token to the next, and the
/// pairs of consecutive tokens counted. Sums of separate runs add up (a run's boundary is no pair).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExRepCount {
    pub new: usize,
    pub pairs: usize,
}

/// [`ExRepCount`] of every layer of `tokens[t][l]`.
pub fn exrep_counts(tokens: &[Vec<Vec<u32>>], n_layers: usize) -> Vec<ExRepCount> {
    (0..n_layers)
        .map(|l| {
            let mut c = ExRepCount::default();
            for w in tokens.windows(2) {
                let (a, b) = (&w[0][l], &w[1][l]);
                if a.is_empty() || b.is_empty() {
                    continue;
                }
                c.new += b.iter().filter(|e| !a.contains(e)).count();
                c.pairs += 1;
            }
            c
        })
        .collect()
}

/// ExRep from the sums of every layer (see [`exrep`]).
pub fn exrep_of_counts(counts: &[ExRepCount], top_k: usize) -> ExRep {
    let per_layer: Vec<Option<f64>> = counts
        .iter()
        .map(|c| (c.pairs > 0).then(|| c.new as f64 / (top_k * c.pairs) as f64))
        .collect();
    let vals: Vec<f64> = per_layer.iter().flatten().copied().collect();
    let overall = if vals.is_empty() {
        0.0
    } else {
        vals.iter().sum::<f64>() / vals.len() as f64
    };
    ExRep { overall, per_layer }
}

/// ExRep per layer and overall (the mean over MoE layers).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ExRep {
    pub overall: f64,
    pub per_layer: Vec<Option<f64>>,
}

/// ExRep of `tokens[t][l]` (see the module docs); `None` for layers without experts or with fewer than
/// two tokens.
pub fn exrep(tokens: &[Vec<Vec<u32>>], n_layers: usize, top_k: usize) -> ExRep {
    exrep_of_counts(&exrep_counts(tokens, n_layers), top_k)
}

/// A generator of routing with a chosen ExRep and skewed expert popularity: per layer, each of the k
/// slots keeps its expert with probability 1 - exrep, or draws a new one (not already chosen) from a
/// Zipf-like popularity (weight 1 / rank^skew, ranks shuffled per layer).
#[derive(Clone, Debug)]
pub struct SyntheticRouting {
    pub exrep: f64,
    pub skew: f64,
    pub seed: u64,
}

fn spec_error(spec: &str, msg: &str) -> Error {
    Error::InvalidArgument(format!("--routing {spec}: {msg}"))
}

/// The `key=value` pairs of a `--routing` spec `NAME[:k=v][,k=v]...` whose name is `name`; `usage`
/// shows the form in the error when the name differs.
fn spec_pairs<'a>(spec: &'a str, name: &str, usage: &str) -> Result<Vec<(&'a str, &'a str)>> {
    let rest = spec
        .strip_prefix(name)
        .ok_or_else(|| spec_error(spec, &format!("expected {usage}")))?;
    rest.trim_start_matches(':')
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| spec_error(spec, "expected key=value"))
        })
        .collect()
}

impl SyntheticRouting {
    /// Parses `synthetic:exrep=0.44[,skew=1.0][,seed=N]`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: &str| spec_error(s, m);
        let mut r = SyntheticRouting {
            exrep: 0.44,
            skew: 1.0,
            seed: 0,
        };
        for (k, v) in spec_pairs(s, "synthetic", "synthetic:exrep=P[,skew=S][,seed=N]")? {
            match k {
                "exrep" => r.exrep = v.parse().map_err(|_| bad("exrep is not a number"))?,
                "skew" => r.skew = v.parse().map_err(|_| bad("skew is not a number"))?,
                "seed" => r.seed = v.parse().map_err(|_| bad("seed is not an integer"))?,
                _ => return Err(bad(&format!("unknown key `{k}`"))),
            }
        }
        if !(0.0..=1.0).contains(&r.exrep) || !r.skew.is_finite() || r.skew < 0.0 {
            return Err(bad("exrep must be in [0, 1] and skew >= 0"));
        }
        Ok(r)
    }

    /// A trace of `n_tokens` tokens for a model of this shape; `moe_layers[l]` says which layers route.
    pub fn generate(
        &self,
        moe_layers: &[bool],
        n_experts: usize,
        top_k: usize,
        n_tokens: usize,
    ) -> RoutingTrace {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let n_layers = moe_layers.len();
        // Per layer: popularity weights over a shuffled ranking.
        let weights: Vec<Vec<f64>> = (0..n_layers)
            .map(|_| {
                let mut w: Vec<f64> = (0..n_experts)
                    .map(|r| 1.0 / ((r + 1) as f64).powf(self.skew))
                    .collect();
                for i in (1..w.len()).rev() {
                    let j = rng.random_range(0..=i);
                    w.swap(i, j);
                }
                w
            })
            .collect();
        let draw = |rng: &mut ChaCha8Rng, w: &[f64], taken: &[u32]| -> u32 {
            let total: f64 = w
                .iter()
                .enumerate()
                .filter(|(e, _)| !taken.contains(&(*e as u32)))
                .map(|(_, x)| x)
                .sum();
            let mut u = rng.random::<f64>() * total;
            for (e, x) in w.iter().enumerate() {
                if taken.contains(&(e as u32)) {
                    continue;
                }
                if u < *x {
                    return e as u32;
                }
                u -= x;
            }
            (0..n_experts as u32)
                .rev()
                .find(|e| !taken.contains(e))
                .unwrap_or(0)
        };
        let mut trace = RoutingTrace::new(n_layers, n_experts, top_k);
        let mut cur: Vec<Vec<u32>> = vec![Vec::new(); n_layers];
        for t in 0..n_tokens {
            for l in 0..n_layers {
                if !moe_layers[l] {
                    continue;
                }
                if t == 0 {
                    let mut set = Vec::new();
                    while set.len() < top_k.min(n_experts) {
                        let e = draw(&mut rng, &weights[l], &set);
                        set.push(e);
                    }
                    cur[l] = set;
                    continue;
                }
                let old = cur[l].clone();
                for i in 0..cur[l].len() {
                    if rng.random::<f64>() < self.exrep {
                        // A new expert: one not in the previous set nor already in this one.
                        let mut taken = old.clone();
                        taken.extend(cur[l].iter().copied());
                        if taken.len() < n_experts {
                            cur[l][i] = draw(&mut rng, &weights[l], &taken);
                        }
                    }
                }
            }
            trace.tokens.push(cur.clone());
        }
        trace
    }
}

/// Where a run's routing comes from.
#[derive(Clone, Debug, Default)]
pub enum RoutingSource {
    /// The model's routers.
    #[default]
    Model,
    /// A recorded trace, replayed token by token (wrapping around at its end).
    Trace(std::sync::Arc<RoutingTrace>),
    /// The model's routers, preferring experts already in the expert cache ([`CacheAware`]).
    CacheAware(CacheAware),
}

/// Cache-aware routing as "Mixture of Cache-Conditional Experts" (arXiv 2412.00099) calls
/// Cache-Prior: the router's logits of experts resident in the expert cache are raised by `lambda` x
/// the layer's running mean of the logits' range (max - min), and the top-k taken on the raised
/// logits, but always keeping the original top `keep`. The chosen experts are weighted by their
/// original router probabilities, renormalised (as a replayed trace is). `lambda = 0` is exact routing.
/// With `margin` instead, the bonus is that many logits, fixed: a cached expert replaces an uncached
/// one only if its logit is at most `margin` below it, the bound on the score given up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheAware {
    pub lambda: f32,
    /// A fixed bonus in logits, used instead of `lambda` x the running range when set.
    pub margin: Option<f32>,
    pub keep: usize,
}

impl CacheAware {
    /// Parses `cache-aware[:lambda=X|margin=X][,keep=J]` (defaults: lambda 0.5, keep 1).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |m: &str| spec_error(s, m);
        let mut c = CacheAware {
            lambda: 0.5,
            margin: None,
            keep: 1,
        };
        let mut lambda_given = false;
        let form = "cache-aware[:lambda=X|margin=X][,keep=J]";
        for (k, v) in spec_pairs(s, "cache-aware", form)? {
            match k {
                "lambda" => {
                    c.lambda = v.parse().map_err(|_| bad("lambda is not a number"))?;
                    lambda_given = true;
                }
                "margin" => {
                    let m: f32 = v.parse().map_err(|_| bad("margin is not a number"))?;
                    if !m.is_finite() || !(0.0..=1000.0).contains(&m) {
                        return Err(bad("margin must be in [0, 1000] (logits)"));
                    }
                    c.margin = Some(m);
                }
                "keep" => c.keep = v.parse().map_err(|_| bad("keep is not an integer"))?,
                _ => return Err(bad(&format!("unknown key `{k}` (lambda, margin, keep)"))),
            }
        }
        if lambda_given && c.margin.is_some() {
            return Err(bad(
                "lambda and margin are two ways to set the bonus: give one",
            ));
        }
        if !c.lambda.is_finite() || !(0.0..=100.0).contains(&c.lambda) {
            return Err(bad("lambda must be in [0, 100]"));
        }
        Ok(c)
    }

    /// The top-k of `logits` with `bonus` added to the experts `resident` says are in the cache, the
    /// original top `keep` kept; in the order chosen. Ties go to the lower index, as in `route`.
    pub fn choose(&self, logits: &[f32], top_k: usize, bonus: f32, resident: &[bool]) -> Vec<u32> {
        let order = |key: &dyn Fn(usize) -> f32, idx: &mut Vec<usize>| {
            idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)))
        };
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        order(&|e| logits[e], &mut idx);
        let keep = self.keep.min(top_k).min(idx.len());
        let mut rest = idx.split_off(keep);
        let raised = |e: usize| {
            logits[e]
                + if resident.get(e) == Some(&true) {
                    bonus
                } else {
                    0.0
                }
        };
        order(&raised, &mut rest);
        idx.extend(rest.into_iter().take(top_k.saturating_sub(keep)));
        idx.into_iter().map(|e| e as u32).collect()
    }
}

impl RoutingSource {
    /// The forced experts of layer `l` for the `t`-th token of a run, if any.
    pub fn forced(&self, t: usize, l: usize) -> Option<&[u32]> {
        match self {
            RoutingSource::Model | RoutingSource::CacheAware(_) => None,
            RoutingSource::Trace(tr) => tr
                .tokens
                .get(t % tr.tokens.len().max(1))
                .and_then(|ls| ls.get(l))
                .map(Vec::as_slice)
                .filter(|s| !s.is_empty()),
        }
    }
}

/// How the next layer's experts are predicted for prefetching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prefetch {
    #[default]
    None,
    /// Speculative gating: the next layer's router applied to this layer's hidden state.
    Gate,
    /// The previous token's experts of the next layer.
    History,
    /// Both.
    GateHistory,
}

impl Prefetch {
    pub fn gate(self) -> bool {
        matches!(self, Prefetch::Gate | Prefetch::GateHistory)
    }
    pub fn history(self) -> bool {
        matches!(self, Prefetch::History | Prefetch::GateHistory)
    }
    pub fn name(self) -> &'static str {
        match self {
            Prefetch::None => "none",
            Prefetch::Gate => "gate",
            Prefetch::History => "history",
            Prefetch::GateHistory => "gate+history",
        }
    }
}

impl std::str::FromStr for Prefetch {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            Prefetch::None,
            Prefetch::Gate,
            Prefetch::History,
            Prefetch::GateHistory,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| format!("unknown predictor `{s}` (none, gate, history, gate+history)"))
    }
}

/// A session's routing: where it comes from, and what each position chose (for ExRep, traces and
/// the `history` predictor).
#[derive(Clone, Debug, Default)]
pub struct RoutingRecord {
    pub source: RoutingSource,
    /// `chosen[pos][layer]`: the experts position `pos` used (empty for dense layers).
    chosen: Vec<Vec<Vec<u32>>>,
    /// `scores[pos][layer]`: the router's logits, when asked for ([`Self::keep_scores`]).
    scores: Option<Vec<Vec<Vec<f32>>>>,
    /// Cache-aware routing: each layer's running mean of the router logits' range, and its count.
    ranges: Vec<(f64, u64)>,
}

impl RoutingRecord {
    /// Cache-aware routing's choice for one token's router `logits` in layer `l` (updating the layer's
    /// running mean range first); `None` unless the source is [`RoutingSource::CacheAware`].
    pub fn cache_aware_choice(
        &mut self,
        l: usize,
        logits: &[f32],
        top_k: usize,
        resident: &[bool],
    ) -> Option<Vec<u32>> {
        let RoutingSource::CacheAware(ca) = self.source else {
            return None;
        };
        if self.ranges.len() <= l {
            self.ranges.resize(l + 1, (0.0, 0));
        }
        let (lo, hi) = logits
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let (mean, n) = &mut self.ranges[l];
        *n += 1;
        *mean += (f64::from(hi - lo) - *mean) / *n as f64;
        let bonus = ca.margin.unwrap_or(ca.lambda * *mean as f32);
        Some(ca.choose(logits, top_k, bonus, resident))
    }

    /// Forced experts of position `pos` in layer `l`, if the source forces them.
    pub fn forced(&self, pos: usize, l: usize) -> Option<&[u32]> {
        self.source.forced(pos, l)
    }

    /// Records what position `pos` chose in layer `l` of `n_layers`.
    pub fn record(&mut self, pos: usize, l: usize, n_layers: usize, experts: &[u32]) {
        if self.chosen.len() <= pos {
            self.chosen.resize(pos + 1, vec![Vec::new(); n_layers]);
        }
        self.chosen[pos][l].clear();
        self.chosen[pos][l].extend_from_slice(experts);
    }

    /// Keeps the router's logits of every position from now on (or stops, and forgets them).
    pub fn keep_scores(&mut self, on: bool) {
        self.scores = on.then(Vec::new);
    }

    pub fn wants_scores(&self) -> bool {
        self.scores.is_some()
    }

    /// Records the router's logits of position `pos` in layer `l` of `n_layers`, if kept.
    pub fn record_scores(&mut self, pos: usize, l: usize, n_layers: usize, logits: &[f32]) {
        if let Some(scores) = &mut self.scores {
            if scores.len() <= pos {
                scores.resize(pos + 1, vec![Vec::new(); n_layers]);
            }
            scores[pos][l] = logits.to_vec();
        }
    }

    /// What position `pos` chose in layer `l`.
    pub fn chosen(&self, pos: usize, l: usize) -> Option<&[u32]> {
        self.chosen
            .get(pos)
            .and_then(|ls| ls.get(l))
            .map(Vec::as_slice)
            .filter(|e| !e.is_empty())
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.chosen.truncate(len);
        if let Some(s) = &mut self.scores {
            s.truncate(len);
        }
    }

    /// The choices of every recorded position as a trace.
    pub fn trace(&self, n_layers: usize, n_experts: usize, top_k: usize) -> RoutingTrace {
        RoutingTrace {
            n_layers,
            n_experts,
            top_k,
            tokens: self.chosen.clone(),
            scores: self.scores.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_separate_runs_add_up_without_their_boundary() {
        let a = vec![vec![vec![0, 1]], vec![vec![0, 2]]];
        let b = vec![vec![vec![3, 4]], vec![vec![3, 4]]];
        let (ca, cb) = (exrep_counts(&a, 1), exrep_counts(&b, 1));
        assert_eq!(ca, vec![ExRepCount { new: 1, pairs: 1 }]);
        let sum = vec![ExRepCount {
            new: ca[0].new + cb[0].new,
            pairs: ca[0].pairs + cb[0].pairs,
        }];
        // 1 new expert over 2 pairs of k = 2; the joined list would count {0,2} -> {3,4} too.
        assert_eq!(exrep_of_counts(&sum, 2).overall, 0.25);
        let joined: Vec<_> = a.iter().chain(&b).cloned().collect();
        assert_eq!(exrep(&joined, 1, 2).overall, 3.0 / 6.0);

        let mut t = RoutingTrace::new(1, 5, 2);
        t.append(RoutingTrace {
            tokens: a.clone(),
            scores: vec![vec![vec![0.0; 5]]; 2],
            ..RoutingTrace::new(1, 5, 2)
        });
        assert_eq!(t.scores.len(), 2);
        // A run without scores: the trace keeps none rather than scores that do not line up.
        t.append(RoutingTrace {
            tokens: b,
            ..RoutingTrace::new(1, 5, 2)
        });
        assert_eq!((t.tokens.len(), t.scores.len()), (4, 0));
        assert_eq!(t.usage(), vec![vec![2, 1, 1, 2, 2]]);
    }

    #[test]
    fn a_stretched_trace_repeats_each_layer_over_a_run_and_keeps_its_exrep() {
        // Two layers, 4 experts, top-1 over three tokens; scores follow their layer.
        let t = RoutingTrace {
            tokens: vec![
                vec![vec![0], vec![1]],
                vec![vec![0], vec![2]],
                vec![vec![3], vec![2]],
            ],
            scores: vec![vec![vec![0.0; 4], vec![1.0; 4]]; 3],
            ..RoutingTrace::new(2, 4, 1)
        };
        let s = t.stretch(5).unwrap();
        assert_eq!(s.n_layers, 5);
        // Layers 0-2 follow trace layer 0 (l * 2 / 5 = 0, 0, 0), 3-4 follow layer 1.
        assert_eq!(
            s.tokens[1],
            vec![vec![0], vec![0], vec![0], vec![2], vec![2]]
        );
        assert_eq!(s.scores[0][4], vec![1.0; 4]);
        assert_eq!(s.scores[0][2], vec![0.0; 4]);
        s.check_fits(5, 4, 1).unwrap();
        let (a, b) = (t.exrep(), s.exrep());
        assert_eq!(b.per_layer[0], a.per_layer[0]);
        assert_eq!(b.per_layer[4], a.per_layer[1]);
        assert!(t.stretch(1).is_err());
        assert_eq!(t.stretch(2).unwrap(), t);
    }

    #[test]
    fn cache_aware_keeps_the_top_expert_and_prefers_cached_ones_within_the_bonus() {
        let ca = CacheAware::parse("cache-aware:lambda=1,keep=1").unwrap();
        assert_eq!(
            ca,
            CacheAware {
                lambda: 1.0,
                margin: None,
                keep: 1
            }
        );
        let logits = [3.0, 2.0, 1.9, 0.5, -1.0];
        let none = [false; 5];
        // No expert cached, or no bonus: exact top-k.
        assert_eq!(ca.choose(&logits, 2, 5.0, &none), vec![0, 1]);
        let cached = [false, false, true, true, false];
        assert_eq!(ca.choose(&logits, 2, 0.0, &cached), vec![0, 1]);
        // A bonus of 0.2 lifts expert 2 (1.9 + 0.2) over expert 1, not expert 3 (0.5 + 0.2).
        assert_eq!(ca.choose(&logits, 2, 0.2, &cached), vec![0, 2]);
        // A bonus of 3 lifts expert 3 (3.5) over expert 1 (2.0) too; expert 0, the original top, stays.
        assert_eq!(ca.choose(&logits, 3, 3.0, &cached), vec![0, 2, 3]);
        let keep2 = CacheAware {
            lambda: 1.0,
            margin: None,
            keep: 2,
        };
        assert_eq!(keep2.choose(&logits, 2, 3.0, &cached), vec![0, 1]);
        for bad in [
            "cache-aware:lambda=-1",
            "cache-aware:x=1",
            "cache-aware:lambda=nan",
            "cache-aware:margin=-0.5",
            "cache-aware:margin=inf",
            "cache-aware:lambda=0.5,margin=1",
            "cache",
        ] {
            assert!(CacheAware::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CacheAware::parse("cache-aware").unwrap(),
            CacheAware {
                lambda: 0.5,
                margin: None,
                keep: 1
            }
        );
        let m = CacheAware::parse("cache-aware:margin=0.2,keep=0").unwrap();
        assert_eq!((m.margin, m.keep), (Some(0.2), 0));
    }

    #[test]
    fn a_margin_is_a_fixed_bonus_and_lambda_scales_with_the_layers_range() {
        let cached = [false, true, false];
        // Expert 1 is 0.5 below expert 0 (top-1, nothing kept).
        let logits = [1.0, 0.5, -1.0];
        let record = |spec: &str| {
            let mut r = RoutingRecord {
                source: RoutingSource::CacheAware(CacheAware::parse(spec).unwrap()),
                ..Default::default()
            };
            r.cache_aware_choice(0, &logits, 1, &cached).unwrap()
        };
        assert_eq!(record("cache-aware:margin=0.4,keep=0"), vec![0]);
        assert_eq!(record("cache-aware:margin=0.6,keep=0"), vec![1]);
        // The range is 2: lambda 0.2 gives 0.4, lambda 0.3 gives 0.6.
        assert_eq!(record("cache-aware:lambda=0.2,keep=0"), vec![0]);
        assert_eq!(record("cache-aware:lambda=0.3,keep=0"), vec![1]);
    }

    #[test]
    fn exrep_counts_entering_experts() {
        // One layer, k = 2: {0,1} -> {0,2} (1 new) -> {3,4} (2 new): 3 / (2 * 2) = 0.75.
        let tokens = vec![vec![vec![0, 1]], vec![vec![2, 0]], vec![vec![3, 4]]];
        let x = exrep(&tokens, 1, 2);
        assert_eq!(x.per_layer, vec![Some(0.75)]);
        assert_eq!(x.overall, 0.75);
        // A dense layer has none and does not count.
        let tokens = vec![vec![vec![0, 1], vec![]], vec![vec![0, 1], vec![]]];
        let x = exrep(&tokens, 2, 2);
        assert_eq!(x.per_layer, vec![Some(0.0), None]);
        assert_eq!(x.overall, 0.0);
    }

    #[test]
    fn synthetic_routing_hits_the_requested_exrep() {
        for want in [0.07, 0.44, 0.9] {
            let g = SyntheticRouting::parse(&format!("synthetic:exrep={want},seed=3")).unwrap();
            let tr = g.generate(&[true; 12], 8, 2, 400);
            tr.validate().unwrap();
            let got = tr.exrep().overall;
            assert!((got - want).abs() < 0.04, "asked {want}, got {got}");
            // Experts of one token are distinct.
            for layers in &tr.tokens {
                for es in layers {
                    assert_ne!(es[0], es[1]);
                }
            }
        }
        // Skewed popularity: the most used expert of a layer is used far more than the least.
        let g = SyntheticRouting::parse("synthetic:exrep=0.5,skew=1.5").unwrap();
        let tr = g.generate(&[true], 16, 2, 2000);
        let mut counts = vec![0usize; 16];
        for t in &tr.tokens {
            for &e in &t[0] {
                counts[e as usize] += 1;
            }
        }
        let (max, min) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
        assert!(*max > 5 * (*min).max(1), "{counts:?}");
    }

    #[test]
    fn bad_specs_and_traces_are_errors() {
        for s in [
            "synthetic:exrep=2",
            "synthetic:foo=1",
            "trace",
            "synthetic:exrep=x",
        ] {
            assert!(SyntheticRouting::parse(s).is_err(), "{s}");
        }
        let mut tr = RoutingTrace::new(1, 4, 2);
        tr.tokens.push(vec![vec![0, 9]]);
        assert!(tr.validate().unwrap_err().contains("expert 9"));
        let mut tr = RoutingTrace::new(1, 4, 2);
        tr.tokens.push(vec![vec![3, 3]]);
        assert!(tr.validate().unwrap_err().contains("expert 3 chosen twice"));
        assert!(RoutingTrace::new(2, 4, 2).check_fits(2, 4, 2).is_err());
    }
}
