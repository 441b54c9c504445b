//! Which expert leaves the cache when room is needed.

use crate::ExpertKey;

/// An eviction policy: it is told which experts are resident and how they are used, and names the
/// next one to evict. The cache calls it under its lock, so calls are serialised; it never sees
/// loads in flight, only ready experts.
///
/// LRU ([`Lru`]) is what the cache uses by default; LFU, frequency-weighted or trace-optimal
/// (Belady, for study) policies plug in through [`crate::ExpertCache::open_with_policy`].
pub trait EvictionPolicy: Send {
    /// `key` became resident (it was not).
    fn insert(&mut self, key: ExpertKey);
    /// `key`, resident, was fetched again.
    fn touch(&mut self, key: ExpertKey);
    /// The resident key to evict next (without forgetting it: the cache then calls [`remove`]);
    /// `None` only when nothing is resident.
    ///
    /// [`remove`]: EvictionPolicy::remove
    fn victim(&mut self) -> Option<ExpertKey>;
    /// `key` left the cache.
    fn remove(&mut self, key: ExpertKey);
    /// The forward pass asked for `key` (resident or not), before any load: where the run is.
    fn requested(&mut self, _key: ExpertKey) {}
    /// `key`, resident, is not expected back soon: a predicted load may evict it. None by default
    /// (predictions then only take free room).
    fn expendable(&self, _key: ExpertKey) -> bool {
        false
    }
}

/// The policies a run can choose by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// [`Lru`].
    #[default]
    Lru,
    /// [`LayerCyclic`].
    Layer,
    /// [`Lfu`].
    Lfu,
    /// [`Stale`].
    Stale,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Lru,
        PolicyKind::Layer,
        PolicyKind::Lfu,
        PolicyKind::Stale,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Layer => "layer",
            PolicyKind::Lfu => "lfu",
            PolicyKind::Stale => "stale",
        }
    }

    /// A new policy of this kind for a model of `n_layers` layers: what the cache uses, and what
    /// `simulate` replays.
    pub fn build(self, n_layers: usize) -> Box<dyn EvictionPolicy> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new()),
            PolicyKind::Layer => Box::new(LayerCyclic::new(n_layers)),
            PolicyKind::Lfu => Box::new(Lfu::new(Lfu::DEFAULT_HALF_LIFE)),
            PolicyKind::Stale => Box::new(Stale::new(n_layers, Stale::DEFAULT_HALF_LIFE)),
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PolicyKind::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PolicyKind::ALL.iter().map(|p| p.name()).collect();
                format!("unknown cache policy `{s}` ({})", names.join(", "))
            })
    }
}

/// Belady's choice under the guess that the next token reuses this token's experts. An expert its
/// layer did not use on its latest visit is not expected back soon: those go first, least recently
/// used first. Then, since layers run in a cycle, the experts of the layer just finished (needed again
/// furthest in the future), then of the layer before it, and so on; the running layer's last.
///
/// LRU evicts in exactly the wrong order for this cyclic pattern: once the budget is below one
/// token's working set (k experts in every layer), nearly every request misses.
pub struct LayerCyclic {
    /// Resident experts of each layer, most recently used first.
    layers: Vec<lru::LruCache<usize, ()>>,
    /// The layer of the last request.
    current: usize,
    /// Tokens seen (a request for a lower layer than the last starts a new token).
    token: u64,
    /// The token of each layer's latest visit.
    visited: Vec<u64>,
    /// Each resident expert's last use: (token, tick).
    used: std::collections::HashMap<ExpertKey, (u64, u64)>,
    tick: u64,
}

impl LayerCyclic {
    pub fn new(n_layers: usize) -> LayerCyclic {
        let n = n_layers.max(1);
        LayerCyclic {
            layers: (0..n).map(|_| lru::LruCache::unbounded()).collect(),
            current: 0,
            token: 0,
            visited: vec![0; n],
            used: Default::default(),
            tick: 0,
        }
    }

    fn mark(&mut self, key: ExpertKey) {
        self.tick += 1;
        self.used.insert(key, (self.token, self.tick));
    }
}

impl EvictionPolicy for LayerCyclic {
    fn insert(&mut self, key: ExpertKey) {
        if let Some(q) = self.layers.get_mut(key.0) {
            q.put(key.1, ());
            self.mark(key);
        }
    }

    fn touch(&mut self, key: ExpertKey) {
        if let Some(q) = self.layers.get_mut(key.0) {
            q.promote(&key.1);
            self.mark(key);
        }
    }

    fn victim(&mut self) -> Option<ExpertKey> {
        // Experts their layer's latest visit did not use (the running layer's included: the forward
        // pass tells of a visit's requests before it loads any, `ExpertCache::announce`), least
        // recently used first.
        let stale = self
            .used
            .iter()
            .filter(|(&(l, _), &(t, _))| t < self.visited[l])
            .min_by_key(|(_, &(_, tick))| tick)
            .map(|(&k, _)| k);
        if stale.is_some() {
            return stale;
        }
        let n = self.layers.len();
        // Layers in the order they are next needed, read backwards: current - 1 first, current last.
        (1..=n)
            .map(|back| (self.current + n - back) % n)
            .find_map(|l| self.layers[l].peek_lru().map(|(&e, _)| (l, e)))
    }

    fn remove(&mut self, key: ExpertKey) {
        if let Some(q) = self.layers.get_mut(key.0) {
            q.pop(&key.1);
            self.used.remove(&key);
        }
    }

    /// Not used on its layer's latest visit.
    fn expendable(&self, key: ExpertKey) -> bool {
        self.used
            .get(&key)
            .is_some_and(|&(t, _)| self.visited.get(key.0).is_some_and(|&v| t < v))
    }

    fn requested(&mut self, key: ExpertKey) {
        let l = key.0;
        if l >= self.layers.len() {
            return;
        }
        if l < self.current {
            self.token += 1;
        }
        self.current = l;
        self.visited[l] = self.token;
        if self.used.contains_key(&key) {
            self.mark(key);
        }
    }
}

/// Least recently used first.
pub struct Lru {
    /// Resident keys, most recently used first.
    order: lru::LruCache<ExpertKey, ()>,
}

impl Lru {
    pub fn new() -> Lru {
        Lru {
            order: lru::LruCache::unbounded(),
        }
    }
}

impl Default for Lru {
    fn default() -> Self {
        Lru::new()
    }
}

impl EvictionPolicy for Lru {
    fn insert(&mut self, key: ExpertKey) {
        self.order.put(key, ());
    }

    fn touch(&mut self, key: ExpertKey) {
        self.order.promote(&key);
    }

    fn victim(&mut self) -> Option<ExpertKey> {
        self.order.peek_lru().map(|(k, _)| *k)
    }

    fn remove(&mut self, key: ExpertKey) {
        self.order.pop(&key);
    }
}

/// Least frequently used, with ageing: each expert's requests are counted (resident or not), every
/// count halving over `half_life` tokens, so experts a run has moved away from lose their claim; the
/// expert with the smallest decayed count goes first, the least recently requested among equals.
/// Tokens are told apart as [`LayerCyclic`] does: a request for a lower layer than the last starts one.
pub struct Lfu {
    half_life: f64,
    /// Every expert ever requested: (decayed count as of `at`, `at`, last request tick).
    seen: std::collections::HashMap<ExpertKey, (f64, u64, u64)>,
    resident: std::collections::HashSet<ExpertKey>,
    token: u64,
    layer: usize,
    tick: u64,
}

impl Lfu {
    /// Counts halve every `half_life_tokens` tokens.
    pub fn new(half_life_tokens: f64) -> Lfu {
        Lfu {
            half_life: half_life_tokens.max(1e-9),
            seen: Default::default(),
            resident: Default::default(),
            token: 0,
            layer: 0,
            tick: 0,
        }
    }

    /// The half-life [`PolicyKind::Lfu`] uses, in tokens.
    pub const DEFAULT_HALF_LIFE: f64 = 16.0;

    /// `key`'s count decayed to now.
    fn score(&self, key: &ExpertKey) -> (f64, u64) {
        self.seen.get(key).map_or((0.0, 0), |&(c, at, tick)| {
            let age = (self.token - at) as f64 / self.half_life;
            (c * (-age).exp2(), tick)
        })
    }
}

impl EvictionPolicy for Lfu {
    fn requested(&mut self, key: ExpertKey) {
        if key.0 < self.layer {
            self.token += 1;
        }
        self.layer = key.0;
        self.tick += 1;
        let (c, _) = self.score(&key);
        self.seen.insert(key, (c + 1.0, self.token, self.tick));
    }
    fn insert(&mut self, key: ExpertKey) {
        self.resident.insert(key);
    }
    fn touch(&mut self, _key: ExpertKey) {}
    fn victim(&mut self) -> Option<ExpertKey> {
        self.resident
            .iter()
            .map(|k| (self.score(k), *k))
            .min_by(|(a, ka), (b, kb)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(ka.cmp(kb)))
            .map(|(_, k)| k)
    }
    fn remove(&mut self, key: ExpertKey) {
        self.resident.remove(&key);
    }
}

/// Least stale: evicts the expert whose next use is expected furthest ahead, Belady's rule with the
/// future estimated (SpecMD's "least stale", arXiv 2602.03921). Layers run in a cycle, so an expert
/// of layer l is needed at the earliest `d(l)` layer visits from now (1 for the next layer, n_layers
/// for the running one), and then, if its layer picks it with probability p per token, after
/// `n_layers * (1/p - 1)` more visits on average. p is the larger of two estimates: the expert's
/// request count with ageing (as [`Lfu`]'s, halving every `half_life` tokens) over the count of an
/// expert requested every token; and, for an expert its layer's latest visit used, the share of
/// such experts the next visit used again so far (1 - ExRep: what the `layer` policy bets on).
/// Experts the running visit has yet to be served are kept above all. Ties go to the least recently
/// requested.
///
/// The router's scores add nothing here: on the trained models' traces the last visit's router
/// logits predict the next visit's experts no better than the counts (docs/benchmarks.md), and a
/// perfect predictor of the next layer's experts would add about one point (`simulate`'s
/// `oracle-layer`).
pub struct Stale {
    n_layers: usize,
    counts: Lfu,
    /// The running visit: (token, layer).
    token: u64,
    layer: usize,
    /// Experts the running visit requested and has not been served yet.
    wanted: std::collections::HashSet<ExpertKey>,
    /// The experts of each layer's latest visit (the running one's so far).
    latest: Vec<Vec<usize>>,
    /// The running visit's layer's experts before it.
    before: Vec<usize>,
    /// Experts of a layer's visit, and how many of them its next visit used again (with a prior of
    /// one half).
    reuse: (f64, f64),
}

impl Stale {
    pub fn new(n_layers: usize, half_life_tokens: f64) -> Stale {
        Stale {
            n_layers: n_layers.max(1),
            counts: Lfu::new(half_life_tokens),
            token: 0,
            layer: 0,
            wanted: Default::default(),
            latest: vec![Vec::new(); n_layers.max(1)],
            before: Vec::new(),
            reuse: (1.0, 0.5),
        }
    }

    /// The half-life [`PolicyKind::Stale`] uses, in tokens (the best of 4-32 on the trained traces).
    pub const DEFAULT_HALF_LIFE: f64 = 8.0;

    /// Layer visits until `key` is expected to be requested again (0: the running visit still
    /// wants it).
    pub fn expected_next_use(&self, key: ExpertKey) -> f64 {
        let (l, n) = (key.0, self.n_layers);
        if self.wanted.contains(&key) {
            return 0.0;
        }
        let d = match (l + n - self.layer % n) % n {
            0 => n,
            d => d,
        } as f64;
        // An expert requested every token reaches a count of 1 / (1 - 2^(-1/h)).
        let full = 1.0 / (1.0 - (-1.0 / self.counts.half_life).exp2());
        let mut p = (self.counts.score(&key).0 / full).clamp(1e-9, 1.0);
        if self.latest.get(l).is_some_and(|v| v.contains(&key.1)) {
            p = p.max(self.reuse.1 / self.reuse.0);
        }
        d + n as f64 * (1.0 / p - 1.0)
    }
}

impl EvictionPolicy for Stale {
    fn requested(&mut self, key: ExpertKey) {
        if key.0 >= self.latest.len() {
            return;
        }
        self.counts.requested(key);
        if (self.counts.token, key.0) != (self.token, self.layer) {
            // A new visit: the one before it tells how much a visit reuses of the last.
            if let Some(done) = self.latest.get(self.layer) {
                let again = self.before.iter().filter(|e| done.contains(e)).count();
                self.reuse.0 += self.before.len() as f64;
                self.reuse.1 += again as f64;
            }
            self.wanted.clear();
            self.before = std::mem::take(&mut self.latest[key.0]);
        }
        (self.token, self.layer) = (self.counts.token, key.0);
        self.wanted.insert(key);
        if !self.latest[key.0].contains(&key.1) {
            self.latest[key.0].push(key.1);
        }
    }
    fn insert(&mut self, key: ExpertKey) {
        self.counts.insert(key);
        self.wanted.remove(&key);
    }
    fn touch(&mut self, key: ExpertKey) {
        self.wanted.remove(&key);
    }
    /// Not expected back within two tokens.
    fn expendable(&self, key: ExpertKey) -> bool {
        self.expected_next_use(key) > 2.0 * self.n_layers as f64
    }
    fn victim(&mut self) -> Option<ExpertKey> {
        self.counts
            .resident
            .iter()
            .map(|&k| (self.expected_next_use(k), self.counts.score(&k).1, k))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)))
            .map(|(_, _, k)| k)
    }
    fn remove(&mut self, key: ExpertKey) {
        self.counts.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_keeps_the_frequent_and_forgets_with_age() {
        let mut p = Lfu::new(2.0);
        // Token 0: expert 1 requested three times, expert 2 once.
        for k in [(0, 1), (0, 1), (0, 1), (0, 2)] {
            p.requested(k);
        }
        p.insert((0, 1));
        p.insert((0, 2));
        assert_eq!(p.victim(), Some((0, 2)));
        // Many tokens later expert 1's count has decayed below a fresh single request of 3.
        for t in 0..12 {
            p.requested((1, t % 4));
            p.requested((0, 9));
        }
        p.requested((0, 3));
        p.insert((0, 3));
        p.remove((0, 2));
        assert_eq!(p.victim(), Some((0, 1)));
    }

    #[test]
    fn stale_evicts_the_expert_expected_back_last() {
        let mut p = Stale::new(2, 8.0);
        // Token 0: layer 0 uses 0 and 1, layer 1 uses 0 and 1. Tokens 1-3: layer 0 uses 0 and 2.
        let visit = |p: &mut Stale, l: usize, es: &[usize]| {
            for &e in es {
                p.requested((l, e));
            }
            for &e in es {
                match p.counts.resident.contains(&(l, e)) {
                    true => p.touch((l, e)),
                    false => p.insert((l, e)),
                }
            }
        };
        visit(&mut p, 0, &[0, 1]);
        visit(&mut p, 1, &[0, 1]);
        for _ in 0..3 {
            visit(&mut p, 0, &[0, 2]);
            visit(&mut p, 1, &[0, 1]);
        }
        // Layer 0 runs next: its rare expert 1 goes first, then the running layer's (equal counts,
        // but layer 1 is needed a visit later than layer 0), then layer 0's.
        assert_eq!(p.victim(), Some((0, 1)));
        p.remove((0, 1));
        assert!(p.expected_next_use((1, 0)) > p.expected_next_use((0, 0)));
        // Used every token: not expendable.
        assert!(!p.expendable((1, 0)));
        // Layer 0's visit wants expert 2 and 3: 2 is kept until it is served.
        p.requested((0, 2));
        p.requested((0, 3));
        assert_eq!(p.expected_next_use((0, 2)), 0.0);
        assert_ne!(p.victim(), Some((0, 2)));
        p.touch((0, 2));
        assert!(p.expected_next_use((0, 2)) > 0.0);
    }

    #[test]
    fn lru_order() {
        let mut p = Lru::new();
        p.insert((0, 0));
        p.insert((0, 1));
        p.insert((0, 2));
        p.touch((0, 0));
        assert_eq!(p.victim(), Some((0, 1)));
        p.remove((0, 1));
        assert_eq!(p.victim(), Some((0, 2)));
        p.remove((0, 2));
        p.remove((0, 0));
        assert_eq!(p.victim(), None);
    }

    #[test]
    fn layer_cyclic_evicts_the_layer_just_finished_first_and_the_current_last() {
        let mut p = LayerCyclic::new(4);
        for l in 0..4 {
            p.insert((l, 0));
            p.insert((l, 1));
        }
        p.requested((2, 0));
        // Layer 1 ran last before 2; layer 2 is running.
        assert_eq!(p.victim(), Some((1, 0)));
        p.touch((1, 0));
        assert_eq!(p.victim(), Some((1, 1)));
        p.remove((1, 1));
        p.remove((1, 0));
        assert_eq!(p.victim(), Some((0, 0)));
        p.remove((0, 0));
        p.remove((0, 1));
        assert_eq!(p.victim(), Some((3, 0)));
        p.remove((3, 0));
        p.remove((3, 1));
        assert_eq!(p.victim(), Some((2, 0)));
    }

    #[test]
    fn layer_cyclic_evicts_experts_their_layer_stopped_using_first() {
        let mut p = LayerCyclic::new(2);
        // Token 0 uses (0,0) and (1,0); token 1 uses (0,1) and (1,0) again.
        for key in [(0, 0), (1, 0)] {
            p.requested(key);
            p.insert(key);
        }
        p.requested((0, 1));
        p.insert((0, 1));
        p.requested((1, 0));
        p.touch((1, 0));
        // (0,0) was not used on layer 0's latest visit: it goes before anything of the last set,
        // and a prediction may evict it.
        assert!(p.expendable((0, 0)) && !p.expendable((0, 1)) && !p.expendable((1, 0)));
        assert_eq!(p.victim(), Some((0, 0)));
        p.remove((0, 0));
        // Then the cyclic order: layer 1 is running, layer 0 finished last.
        assert_eq!(p.victim(), Some((0, 1)));
    }
}
