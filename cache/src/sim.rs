//! Replays a sequence of expert requests through an eviction policy exactly as [`crate::ExpertCache`]
//! serves one session without reader threads: requests come in visits (one layer of one token, as
//! [`announce`](crate::ExpertCache::announce) makes them), the policy is told of a visit's
//! requests before any of them is served; then each is a hit if the expert is resident (the policy is
//! told [`touch`](EvictionPolicy::touch)), else a miss that evicts the policy's victims until the
//! expert's charge fits the budget, then makes it resident. The same policy objects as the cache's, so
//! a simulated hit rate is the runtime's (tests/simulate.rs checks it end to end), plus [`Belady`]:
//! the offline optimum for experts of one size, the bound no online policy beats, and [`Lookahead`]:
//! an oracle that knows only the next few layer visits, the most a predictor of that reach could give.

use std::collections::HashMap;

use crate::policy::{EvictionPolicy, Stale};
use crate::ExpertKey;

/// What a replay counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Bytes loaded: the misses' `read` bytes.
    pub bytes_read: u64,
}

impl SimStats {
    pub fn hit_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }
}

/// The cost of each expert: what the budget counts (`charge`: the cache's page-rounded buffer) and
/// what a load reads (`read`: its weight bytes).
pub struct Costs<C, R> {
    pub charge: C,
    pub read: R,
}

/// Replays `visits` (each a layer's requests of one token) through `policy` under `budget` bytes.
pub fn replay<C: Fn(ExpertKey) -> u64, R: Fn(ExpertKey) -> u64>(
    visits: &[Vec<ExpertKey>],
    costs: &Costs<C, R>,
    budget: u64,
    policy: &mut dyn EvictionPolicy,
) -> SimStats {
    let mut resident: HashMap<ExpertKey, u64> = HashMap::new();
    let mut held = 0u64;
    let mut s = SimStats::default();
    for visit in visits {
        for &key in visit {
            policy.requested(key);
        }
        for &key in visit {
            s.requests += 1;
            if resident.contains_key(&key) {
                s.hits += 1;
                policy.touch(key);
                continue;
            }
            s.misses += 1;
            let c = (costs.charge)(key);
            s.bytes_read += (costs.read)(key);
            // As the cache's `reserve`: the policy's victims, else any resident expert.
            while held + c > budget {
                let Some(v) = policy.victim().or_else(|| resident.keys().next().copied()) else {
                    break;
                };
                policy.remove(v);
                if let Some(vc) = resident.remove(&v) {
                    held -= vc;
                    s.evictions += 1;
                }
            }
            held += c;
            resident.insert(key, c);
            policy.insert(key);
        }
    }
    s
}

/// Belady's offline policy: evicts the resident expert whose next request lies furthest ahead (or
/// never comes). It knows the whole request sequence, which it must be given as [`replay`] is;
/// optimal when every expert costs the same.
pub struct Belady {
    /// `next[i]`: the index of the next request for the key of request `i` (`usize::MAX`: none).
    next: Vec<usize>,
    /// Requests seen.
    at: usize,
    /// Each resident expert's next request.
    resident: HashMap<ExpertKey, usize>,
    /// The next request of each key requested by the running visit.
    pending: HashMap<ExpertKey, usize>,
}

impl Belady {
    pub fn new(visits: &[Vec<ExpertKey>]) -> Belady {
        let requests: Vec<ExpertKey> = visits.iter().flatten().copied().collect();
        let mut next = vec![usize::MAX; requests.len()];
        let mut seen: HashMap<ExpertKey, usize> = HashMap::new();
        for (i, k) in requests.iter().enumerate().rev() {
            if let Some(&j) = seen.get(k) {
                next[i] = j;
            }
            seen.insert(*k, i);
        }
        Belady {
            next,
            at: 0,
            resident: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    fn next_use(&self, key: ExpertKey) -> usize {
        self.pending.get(&key).copied().unwrap_or(usize::MAX)
    }
}

impl EvictionPolicy for Belady {
    fn requested(&mut self, key: ExpertKey) {
        // Resident and wanted by the running visit: needed now, the last to go.
        if let Some(n) = self.resident.get_mut(&key) {
            *n = self.at;
        }
        let n = self.next.get(self.at).copied().unwrap_or(usize::MAX);
        self.pending.insert(key, n);
        self.at += 1;
    }
    fn insert(&mut self, key: ExpertKey) {
        self.resident.insert(key, self.next_use(key));
    }
    fn touch(&mut self, key: ExpertKey) {
        self.resident.insert(key, self.next_use(key));
    }
    fn victim(&mut self) -> Option<ExpertKey> {
        // Ties (never requested again) broken by key, so replays are reproducible.
        self.resident
            .iter()
            .max_by_key(|(k, &n)| (n, std::cmp::Reverse(**k)))
            .map(|(k, _)| *k)
    }
    fn remove(&mut self, key: ExpertKey) {
        self.resident.remove(&key);
    }
}

/// An oracle that knows the experts of the next `horizon` layer visits exactly and nothing beyond:
/// it evicts experts not needed within the horizon first, in [`Stale`]'s order, then those needed
/// latest. With a horizon of 1 it is a perfect next-layer predictor (what the `gate` predictor
/// aims at), with n_layers a perfect predictor of the next token's routing: how much any predictor
/// of that reach could add to the online policies. Offline, for study, like [`Belady`].
pub struct Lookahead {
    exact: Belady,
    stale: Stale,
    /// Index of each visit's first request, and the total at the end.
    starts: Vec<usize>,
    horizon: usize,
    /// The running visit.
    visit: usize,
}

impl Lookahead {
    pub fn new(visits: &[Vec<ExpertKey>], n_layers: usize, horizon: usize) -> Lookahead {
        let mut starts = Vec::with_capacity(visits.len() + 1);
        let mut at = 0;
        for v in visits {
            starts.push(at);
            at += v.len();
        }
        starts.push(at);
        Lookahead {
            exact: Belady::new(visits),
            stale: Stale::new(n_layers, Stale::DEFAULT_HALF_LIFE),
            starts,
            horizon,
            visit: 0,
        }
    }
}

impl EvictionPolicy for Lookahead {
    fn requested(&mut self, key: ExpertKey) {
        let i = self.exact.at;
        while self.visit + 2 < self.starts.len() && self.starts[self.visit + 1] <= i {
            self.visit += 1;
        }
        self.exact.requested(key);
        self.stale.requested(key);
    }
    fn insert(&mut self, key: ExpertKey) {
        self.exact.insert(key);
        self.stale.insert(key);
    }
    fn touch(&mut self, key: ExpertKey) {
        self.exact.touch(key);
        self.stale.touch(key);
    }
    fn victim(&mut self) -> Option<ExpertKey> {
        let end = self.starts[(self.visit + 1 + self.horizon).min(self.starts.len() - 1)];
        // Unknown beyond the horizon (ranked by the estimate) before anything known to be needed.
        let rank = |k: ExpertKey, n: usize| match n < end {
            true => (0, n as f64),
            false => (1, self.stale.expected_next_use(k)),
        };
        self.exact
            .resident
            .iter()
            .map(|(&k, &n)| (rank(k, n), k))
            .max_by(|(a, ka), (b, kb)| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(kb.cmp(ka)))
            .map(|(_, k)| k)
    }
    fn remove(&mut self, key: ExpertKey) {
        self.exact.remove(key);
        self.stale.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{LayerCyclic, Lru, Stale};

    /// One visit per request.
    fn keys(v: &[usize]) -> Vec<Vec<ExpertKey>> {
        v.iter().map(|&e| vec![(0, e)]).collect()
    }

    type Cost = fn(ExpertKey) -> u64;

    fn unit() -> Costs<Cost, Cost> {
        Costs {
            charge: |_| 1,
            read: |_| 1,
        }
    }

    #[test]
    fn lru_and_belady_on_a_textbook_sequence() {
        // 3 slots, the textbook's reference string: LRU faults 9 times, the optimum 7 (the first
        // requests of each expert included).
        let r = keys(&[7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2]);
        let lru = replay(&r, &unit(), 3, &mut Lru::new());
        let opt = replay(&r, &unit(), 3, &mut Belady::new(&r));
        assert_eq!((lru.misses, opt.misses), (9, 7));
        assert_eq!(lru.requests, 13);
        assert_eq!(opt.hits + opt.misses, 13);
        assert_eq!(opt.bytes_read, 7);
        // Room for everything: only the first requests miss.
        let all = replay(&r, &unit(), 100, &mut Lru::new());
        assert_eq!((all.misses, all.evictions), (6, 0));
    }

    #[test]
    fn belady_bounds_every_online_policy() {
        // A cyclic pattern over 2 layers, 4 experts each, 2 a token, with some reuse.
        let mut r = Vec::new();
        for t in 0..60usize {
            for l in 0..2 {
                let mut v = vec![(l, (t / 3 + l) % 4), (l, (t / 5 + 2 * l + 1) % 4)];
                v.dedup();
                r.push(v);
            }
        }
        for budget in 2..8 {
            let opt = replay(&r, &unit(), budget, &mut Belady::new(&r)).hits;
            let lru = replay(&r, &unit(), budget, &mut Lru::new()).hits;
            let layer = replay(&r, &unit(), budget, &mut LayerCyclic::new(2)).hits;
            let stale = replay(&r, &unit(), budget, &mut Stale::new(2, 8.0)).hits;
            // Knowing the whole future within a horizon longer than the trace is Belady.
            let far = replay(&r, &unit(), budget, &mut Lookahead::new(&r, 2, r.len())).hits;
            let near = replay(&r, &unit(), budget, &mut Lookahead::new(&r, 2, 1)).hits;
            assert!(
                opt >= lru && opt >= layer && opt >= stale && opt >= near,
                "budget {budget}: {opt} {lru} {layer} {stale} {near}"
            );
            assert_eq!(far, opt, "budget {budget}");
        }
    }
}
