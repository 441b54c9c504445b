//! The expert cache: a byte-bounded map of ready experts, loads in flight, and the prefetcher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cosmoe_loader::{Bytes, Weight};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::buffer::Filling;
use crate::io::DataFile;
use crate::layout::{validate, ExpertLoc, ExpertPart, PartLoc, Plan};
use crate::policy::{EvictionPolicy, Lru};
use crate::stats::{add, get, sub, Counters};
use crate::user::CacheUser;
use crate::{
    CacheConfig, CacheError, CacheStats, ExpertKey, ExpertLayout, ExpertWeights, IoMode,
    PrefetchHint,
};

/// Routed experts of a model behind a byte-bounded cache; see the crate docs for the guarantees.
///
/// `ExpertCache` is `Send + Sync`: share it (e.g. in an `Arc` or inside the model) and call
/// [`get`](Self::get) from any thread. Dropping it stops and joins the prefetch threads.
pub struct ExpertCache {
    inner: Arc<Inner>,
    /// Hint queues: the running layer's read-ahead, and predicted hints (served after it).
    hints: Option<[Sender<Queued>; 2]>,
    threads: Vec<JoinHandle<()>>,
}

struct Inner {
    layout: ExpertLayout,
    config: CacheConfig,
    files: Vec<DataFile>,
    /// `plans[l][e]`: the buffer layout of each expert loaded into the cache.
    plans: Vec<Vec<Plan>>,
    /// `in_place[l][e]`: experts served where they are (memory parts in resident mode; mmap mode),
    /// never loaded or evicted.
    in_place: Vec<Vec<Option<Arc<ExpertWeights>>>>,
    state: Mutex<State>,
    /// Signalled when held bytes drop (a load finished or failed), for loads waiting for room.
    room: Condvar,
    /// Totals over all users.
    counters: Counters,
    /// The user of the calls that name none ([`ExpertCache::get`], ...).
    default_user: Arc<CacheUser>,
    notices: Mutex<Vec<String>>,
    /// Hints sent and not yet fully handled by a prefetch thread.
    pending: Mutex<u64>,
    idle: Condvar,
    /// Reads for a running layer queued or in flight (read-ahead hints, `get` misses); predicted
    /// loads wait for none.
    demand: Mutex<u64>,
    demand_idle: Condvar,
    /// Origin of the loads' read-start stamps.
    epoch: Instant,
    /// What predictions earned lately (ns): stall they saved, less the read time of those evicted
    /// unused, within +-[`CREDIT_CAP_NS`]. Below zero, predictions pause (all but one in
    /// [`PROBE_EVERY`], so the account can recover when reads get cheaper).
    credit: Mutex<(i64, u64)>,
    shutdown: AtomicBool,
    /// Test hook: sleep this long before each load (nanoseconds).
    read_delay_ns: AtomicU64,
    /// Test hook: `O_DIRECT` reads fail with `EINVAL`, as on a file system that refuses them.
    fake_direct_einval: AtomicBool,
}

struct State {
    ready: HashMap<ExpertKey, Entry>,
    in_flight: HashMap<ExpertKey, Arc<Load>>,
    policy: Box<dyn EvictionPolicy>,
    /// Bytes of ready experts plus bytes reserved by loads in flight; `<= budget` always.
    held: u64,
    peak: u64,
    evictions: u64,
    prefetch_wasted: u64,
    /// Ready entries with `prefetched_unused` set.
    prefetch_unused: u64,
}

struct Entry {
    weights: Arc<ExpertWeights>,
    charge: u64,
    /// Loaded by this user's prefetch hint and not yet fetched by any `get`.
    prefetched_unused: Option<Arc<CacheUser>>,
    /// With `prefetched_unused`: the hint was predicted, and its read took this long (ns).
    predicted_read_ns: Option<u64>,
}

/// The most (and least) the predictions' account holds, in ns: it weighs about the last few
/// hundred milliseconds of reads, so it follows a change of phase.
const CREDIT_CAP_NS: i64 = 200_000_000;

/// While predictions do not pay, one in this many still goes, to measure again.
const PROBE_EVERY: u64 = 32;

/// A hint on its way to a prefetch thread.
struct Queued {
    hint: PrefetchHint,
    user: Arc<CacheUser>,
    /// For a later position than the user's when sent (else read-ahead, counted in `demand`).
    predicted: bool,
}

/// One load in flight; everyone who wants the expert meanwhile waits on it.
struct Load {
    result: Mutex<Option<Result<Arc<ExpertWeights>, CacheError>>>,
    done: Condvar,
    /// The user whose prefetch hint started this load.
    by_prefetch: Option<Arc<CacheUser>>,
    /// The hint was a predicted one.
    predicted: bool,
    /// When the read began (ns since the cache's epoch; 0: not yet).
    read_start_ns: AtomicU64,
    /// A `get` waited for this prefetch (read and written under the state lock).
    claimed: AtomicBool,
}

impl Load {
    fn wait(&self) -> Result<Arc<ExpertWeights>, CacheError> {
        let mut r = self.result.lock();
        loop {
            if let Some(r) = r.as_ref() {
                return r.clone();
            }
            self.done.wait(&mut r);
        }
    }

    fn publish(&self, r: Result<Arc<ExpertWeights>, CacheError>) {
        *self.result.lock() = Some(r);
        self.done.notify_all();
    }
}

impl ExpertCache {
    /// Opens the files of `layout` and checks it (see [`CacheError::Layout`]); every expert must
    /// fit the budget alone ([`CacheError::ExpertTooLarge`]). Uses LRU eviction.
    pub fn open(layout: ExpertLayout, config: CacheConfig) -> Result<ExpertCache, CacheError> {
        let policy = config.policy.build(layout.layers.len());
        Self::open_with_policy(layout, config, policy)
    }

    /// [`open`](Self::open) with another eviction policy.
    pub fn open_with_policy(
        layout: ExpertLayout,
        config: CacheConfig,
        policy: Box<dyn EvictionPolicy>,
    ) -> Result<ExpertCache, CacheError> {
        let notices = Mutex::new(Vec::new());
        let files = layout
            .files
            .iter()
            .map(|p| DataFile::open(p, config.io, &notices))
            .collect::<Result<Vec<_>, _>>()?;
        let file_lens: Vec<u64> = files.iter().map(|f| f.len).collect();
        let mut plans = Vec::with_capacity(layout.layers.len());
        let mut in_place = Vec::with_capacity(layout.layers.len());
        for (l, experts) in layout.layers.iter().enumerate() {
            let mut layer_plans = Vec::with_capacity(experts.len());
            let mut layer_in_place = Vec::with_capacity(experts.len());
            for (e, loc) in experts.iter().enumerate() {
                validate(l, e, loc, &layout.files, &file_lens)?;
                let plan = Plan::new(loc, |f| files.get(f).is_some_and(DataFile::plans_direct))
                    .ok_or_else(|| CacheError::Layout {
                        layer: l,
                        expert: e,
                        part: "gate",
                        msg: "expert size overflows".into(),
                    })?;
                let here = serve_in_place(loc, &config, &files)
                    .map(|w| {
                        w.ok_or_else(|| CacheError::Layout {
                            layer: l,
                            expert: e,
                            part: "gate",
                            msg: "part does not lie inside its mapped file".into(),
                        })
                    })
                    .transpose()?;
                if let (None, Some(budget), true) =
                    (&here, config.budget, config.io != IoMode::Mmap)
                {
                    if plan.size as u64 > budget {
                        return Err(CacheError::ExpertTooLarge {
                            layer: l,
                            expert: e,
                            bytes: plan.size as u64,
                            budget,
                        });
                    }
                }
                layer_plans.push(plan);
                layer_in_place.push(here.map(Arc::new));
            }
            plans.push(layer_plans);
            in_place.push(layer_in_place);
        }
        Self::start(layout, config, files, plans, in_place, policy, notices)
    }

    /// Every expert resident and served in place from memory (no copy): the cache with no budget
    /// over [`PartLoc::Memory`] parts. This is what [`crate::ExpertStore::resident`] was.
    pub fn resident(layers: Vec<Vec<ExpertWeights>>) -> ExpertCache {
        let layout = ExpertLayout {
            files: Vec::new(),
            layers: layers
                .iter()
                .map(|l| l.iter().map(ExpertLoc::from_weights).collect())
                .collect(),
        };
        let plans = layout
            .layers
            .iter()
            .map(|l| {
                l.iter()
                    .map(|loc| Plan::new(loc, |_| false).unwrap_or_default())
                    .collect()
            })
            .collect();
        let in_place = layers
            .into_iter()
            .map(|l| l.into_iter().map(|w| Some(Arc::new(w))).collect())
            .collect();
        let config = CacheConfig {
            budget: None,
            io: IoMode::Buffered,
            prefetch_threads: 0,
            ..CacheConfig::default()
        };
        ExpertCache {
            inner: Arc::new(Inner::new(
                layout,
                config,
                Vec::new(),
                plans,
                in_place,
                Box::new(Lru::new()),
                Mutex::new(Vec::new()),
            )),
            hints: None,
            threads: Vec::new(),
        }
    }

    fn start(
        layout: ExpertLayout,
        config: CacheConfig,
        files: Vec<DataFile>,
        plans: Vec<Vec<Plan>>,
        in_place: Vec<Vec<Option<Arc<ExpertWeights>>>>,
        policy: Box<dyn EvictionPolicy>,
        notices: Mutex<Vec<String>>,
    ) -> Result<ExpertCache, CacheError> {
        let inner = Arc::new(Inner::new(
            layout, config, files, plans, in_place, policy, notices,
        ));
        let mut cache = ExpertCache {
            inner,
            hints: None,
            threads: Vec::new(),
        };
        if config.prefetch_threads > 0 {
            let (tx, rx) = crossbeam_channel::bounded(config.prefetch_queue.max(1));
            let (ptx, prx) = crossbeam_channel::bounded(config.prefetch_queue.max(1));
            cache.hints = Some([tx, ptx]);
            for i in 0..config.prefetch_threads {
                let (inner, rx) = (cache.inner.clone(), [rx.clone(), prx.clone()]);
                let t = std::thread::Builder::new()
                    .name(format!("cosmoe-prefetch-{i}"))
                    .spawn(move || prefetch_loop(&inner, &rx))
                    .map_err(|e| CacheError::Spawn(Arc::new(e)))?; // Drop joins those started
                cache.threads.push(t);
            }
        }
        Ok(cache)
    }

    /// The weights of `expert` in `layer`: from the cache (a hit), or read now, or from a read
    /// already in flight (a miss; the wait counts as stall). The `Arc` keeps the weights alive
    /// while the caller uses them, even if the cache evicts the expert meanwhile.
    pub fn get(&self, layer: usize, expert: usize) -> Result<Arc<ExpertWeights>, CacheError> {
        self.get_as(&self.inner.default_user, layer, expert)
    }

    /// [`get`](Self::get) on behalf of `user`, whose counters it adds to besides the cache's.
    pub fn get_as(
        &self,
        user: &CacheUser,
        layer: usize,
        expert: usize,
    ) -> Result<Arc<ExpertWeights>, CacheError> {
        self.fetch(user, layer, expert, false)
    }

    /// Which experts of `layer` are in memory now (resident ones, and cached ones not being read).
    pub fn resident_mask(&self, layer: usize) -> Vec<bool> {
        let inner = &*self.inner;
        let Some(in_place) = inner.in_place.get(layer) else {
            return Vec::new();
        };
        let st = inner.state.lock();
        in_place
            .iter()
            .enumerate()
            .map(|(e, w)| w.is_some() || st.ready.contains_key(&(layer, e)))
            .collect()
    }

    /// Tells the eviction policy that a visit of `layer` is about to fetch `experts` (unknown ones
    /// are ignored), before any of them is read or fetched: making room for one then never evicts
    /// another the visit uses, and the `layer` policy keeps what a layer still uses and replaces what
    /// it stopped using (with room for k experts a layer, exactly the CoSMoEs paper's offloading
    /// rule). Fetch them with [`get_announced_as`](Self::get_announced_as).
    pub fn announce(&self, layer: usize, experts: &[usize]) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        for &e in experts {
            if inner.check_key(layer, e).is_ok() && inner.in_place[layer][e].is_none() {
                st.policy.requested((layer, e));
            }
        }
    }

    /// [`get_as`](Self::get_as) for an expert [`announce`](Self::announce)d (the policy is not told
    /// of the request twice).
    pub fn get_announced_as(
        &self,
        user: &CacheUser,
        layer: usize,
        expert: usize,
    ) -> Result<Arc<ExpertWeights>, CacheError> {
        self.fetch(user, layer, expert, true)
    }

    /// [`get_as`](Self::get_as); `announced`: the policy was told of the request already.
    fn fetch(
        &self,
        user: &CacheUser,
        layer: usize,
        expert: usize,
        announced: bool,
    ) -> Result<Arc<ExpertWeights>, CacheError> {
        let inner = &*self.inner;
        inner.check_key(layer, expert)?;
        let count = |f: fn(&Counters) -> &AtomicU64, n: u64| inner.count(user, f, n);
        if let Some(w) = inner.in_place[layer][expert].as_ref() {
            inner.check_in_place(layer, expert)?;
            count(|c| &c.hits, 1);
            return Ok(w.clone());
        }
        let key = (layer, expert);
        let t0 = Instant::now();
        let mut st = inner.state.lock();
        if !announced {
            st.policy.requested(key);
        }
        let st_ref = &mut *st;
        if let Some(entry) = st_ref.ready.get_mut(&key) {
            let w = entry.weights.clone();
            if let Some(by) = entry.prefetched_unused.take() {
                st_ref.prefetch_unused -= 1;
                sub(&by.counters.prefetch_unused, 1);
                inner.count(&by, |c| &c.prefetch_useful, 1);
                if let Some(ns) = entry.predicted_read_ns.take() {
                    inner.count(&by, |c| &c.predicted_useful, 1);
                    inner.count(&by, |c| &c.predicted_saved_ns, ns);
                    inner.credit(ns as i64);
                }
            }
            st_ref.policy.touch(key);
            drop(st);
            count(|c| &c.hits, 1);
            return Ok(w);
        }
        count(|c| &c.misses, 1);
        let r = match st.in_flight.get(&key).cloned() {
            Some(load) => {
                if let Some(by) = &load.by_prefetch {
                    if !load.claimed.swap(true, Ordering::Relaxed) {
                        inner.count(by, |c| &c.prefetch_useful, 1);
                        if load.predicted {
                            inner.count(by, |c| &c.predicted_useful, 1);
                            let start = load.read_start_ns.load(Ordering::Relaxed);
                            if start > 0 {
                                let done = inner.since_epoch().saturating_sub(start);
                                inner.count(by, |c| &c.predicted_saved_ns, done);
                                inner.credit(done as i64);
                            }
                        }
                    }
                }
                drop(st);
                load.wait()
            }
            None => {
                let _demand = inner.demand_read();
                inner.load(key, st, None, false, user)
            }
        };
        count(|c| &c.stall_ns, t0.elapsed().as_nanos() as u64);
        r
    }

    /// Queues hints for the prefetch threads, without blocking: a hint is dropped (and counted)
    /// when the queue is full. Hints for unknown experts are ignored. Does nothing without
    /// prefetch threads.
    pub fn prefetch(&self, hints: &[PrefetchHint]) {
        self.prefetch_as(&self.inner.default_user, hints)
    }

    /// [`prefetch`](Self::prefetch) on behalf of `user`: its hints go stale against its position,
    /// and their fate is counted to it.
    pub fn prefetch_as(&self, user: &Arc<CacheUser>, hints: &[PrefetchHint]) {
        let Some(tx) = self.hints.as_ref() else {
            return;
        };
        let inner = &*self.inner;
        for &h in hints {
            if inner.check_key(h.layer, h.expert).is_err() {
                continue;
            }
            // Experts already here or on their way need no thread woken (most hints, once warm).
            let key = (h.layer, h.expert);
            let here = inner.in_place[h.layer][h.expert].is_some() || {
                let st = inner.state.lock();
                st.ready.contains_key(&key) || st.in_flight.contains_key(&key)
            };
            if here {
                inner.count(user, |c| &c.prefetch_redundant, 1);
                continue;
            }
            *inner.pending.lock() += 1;
            let predicted = h.needed_at > user.position();
            if !predicted {
                *inner.demand.lock() += 1;
            }
            let q = Queued {
                hint: h,
                user: user.clone(),
                predicted,
            };
            match tx[predicted as usize].try_send(q) {
                Ok(()) => {}
                Err(e) => {
                    if let TrySendError::Full(_) = e {
                        inner.count(user, |c| &c.prefetch_dropped_full, 1);
                    }
                    inner.hint_done(predicted);
                }
            }
        }
    }

    /// Sets the current position stamp (e.g. `token_index * n_layers + layer`); hints whose
    /// `needed_at` is below it are dropped as stale when a prefetch thread reaches them. May go
    /// down (a new sequence).
    pub fn set_position(&self, stamp: u64) {
        self.inner.default_user.set_position(stamp);
    }

    /// Blocks until every hint sent so far has been handled (loaded, or dropped as stale or
    /// redundant). For tests and measurements that want a quiet cache.
    pub fn wait_prefetches(&self) {
        let mut p = self.inner.pending.lock();
        while *p > 0 {
            self.inner.idle.wait(&mut p);
        }
    }

    /// A snapshot of the counters. Each counter is exact; taken while other threads run, the
    /// snapshot may mix counters from slightly different moments.
    pub fn stats(&self) -> CacheStats {
        let inner = &*self.inner;
        let mut s = self.snapshot(&inner.counters);
        let st = inner.state.lock();
        (s.evictions, s.prefetch_wasted, s.prefetch_unused) =
            (st.evictions, st.prefetch_wasted, st.prefetch_unused);
        s
    }

    /// The counters of `user` alone (see [`CacheUser`] for what is counted to whom). What the
    /// cache holds (`cached_bytes`, `peak_cached_bytes`), its budget and I/O mode are the cache's,
    /// shared by all users.
    pub fn stats_of(&self, user: &CacheUser) -> CacheStats {
        let c = &user.counters;
        let mut s = self.snapshot(c);
        (s.evictions, s.prefetch_wasted, s.prefetch_unused) = (
            get(&c.evictions),
            get(&c.prefetch_wasted),
            get(&c.prefetch_unused),
        );
        s
    }

    /// `c`'s atomic counters and the cache's holdings (the counters kept under the lock are 0).
    fn snapshot(&self, c: &Counters) -> CacheStats {
        let inner = &*self.inner;
        let (held, peak) = {
            let st = inner.state.lock();
            (st.held, st.peak)
        };
        let (hits, misses) = (get(&c.hits), get(&c.misses));
        CacheStats {
            requests: hits + misses,
            hits,
            misses,
            bytes_read: get(&c.bytes_read),
            reads: get(&c.reads),
            stall_ns: get(&c.stall_ns),
            evictions: 0,
            prefetch_issued: get(&c.prefetch_issued),
            prefetch_useful: get(&c.prefetch_useful),
            prefetch_wasted: 0,
            prefetch_unused: 0,
            prefetch_failed: get(&c.prefetch_failed),
            prefetch_stale: get(&c.prefetch_stale),
            prefetch_redundant: get(&c.prefetch_redundant),
            prefetch_dropped_full: get(&c.prefetch_dropped_full),
            predicted_issued: get(&c.predicted_issued),
            predicted_no_room: get(&c.predicted_no_room),
            predicted_paused: get(&c.predicted_paused),
            predicted_useful: get(&c.predicted_useful),
            predicted_wasted: get(&c.predicted_wasted),
            predicted_read_ns: get(&c.predicted_read_ns),
            predicted_saved_ns: get(&c.predicted_saved_ns),
            predicted_deferred_ns: get(&c.predicted_deferred_ns),
            cached_bytes: held,
            peak_cached_bytes: peak,
            budget: inner.budget(),
            io: inner.config.io,
        }
    }

    /// Experts ready in the cache now (not counting loads in flight or experts served in place).
    pub fn n_cached(&self) -> usize {
        self.inner.state.lock().ready.len()
    }

    /// Things the runtime should tell the user (e.g. a file read buffered because `O_DIRECT` was
    /// refused).
    pub fn notices(&self) -> Vec<String> {
        self.inner.notices.lock().clone()
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The budget in force: `None` when unbounded or in mmap mode.
    pub fn budget(&self) -> Option<u64> {
        self.inner.budget()
    }

    pub fn layout(&self) -> &ExpertLayout {
        &self.inner.layout
    }

    pub fn n_layers(&self) -> usize {
        self.inner.layout.layers.len()
    }

    /// Experts in `layer` (0 for a dense layer or past the last layer).
    pub fn n_experts(&self, layer: usize) -> usize {
        self.inner.layout.layers.get(layer).map_or(0, Vec::len)
    }

    /// Where the expert's parts live, without loading it.
    pub fn expert_loc(&self, layer: usize, expert: usize) -> Option<&ExpertLoc> {
        self.inner.layout.layers.get(layer)?.get(expert)
    }

    /// Bytes the expert costs in this cache: its buffer (the three parts, each aligned, with
    /// `O_DIRECT` each widened to whole 4096-byte blocks, rounded up to a page), or its weight bytes
    /// when served in place. 0 for an unknown expert.
    pub fn expert_bytes(&self, layer: usize, expert: usize) -> u64 {
        self.inner.charge(layer, expert).unwrap_or(0)
    }

    /// Sum of [`expert_bytes`](Self::expert_bytes): the budget at which nothing is ever evicted.
    pub fn total_expert_bytes(&self) -> u64 {
        let inner = &*self.inner;
        (0..self.n_layers())
            .flat_map(|l| (0..self.n_experts(l)).map(move |e| (l, e)))
            .filter_map(|(l, e)| inner.charge(l, e))
            .sum()
    }

    /// Bytes of all expert weights (without buffer padding).
    pub fn total_bytes(&self) -> usize {
        self.inner
            .layout
            .layers
            .iter()
            .flatten()
            .map(ExpertLoc::n_bytes)
            .sum()
    }

    /// Errs unless the budget holds the `k` largest experts of every layer at once (the runtime
    /// needs all `k` chosen experts of a layer together). Always fine without a budget.
    pub fn check_budget(&self, k: usize) -> Result<(), CacheError> {
        let Some(budget) = self.budget() else {
            return Ok(());
        };
        for l in 0..self.n_layers() {
            let mut charges: Vec<u64> = (0..self.n_experts(l))
                .map(|e| self.expert_bytes(l, e))
                .collect();
            charges.sort_unstable_by(|a, b| b.cmp(a));
            let k = k.min(charges.len());
            let needed: u64 = charges[..k].iter().sum();
            if needed > budget {
                return Err(CacheError::BudgetTooSmall {
                    budget,
                    k,
                    layer: l,
                    needed,
                });
            }
        }
        Ok(())
    }

    /// Experts served in place (all of them in resident mode over memory, and in mmap mode), with
    /// their keys; none when experts are loaded on demand (use [`expert_loc`](Self::expert_loc)).
    pub fn iter(&self) -> impl Iterator<Item = (ExpertKey, &ExpertWeights)> {
        self.inner.in_place.iter().enumerate().flat_map(|(l, es)| {
            es.iter()
                .enumerate()
                .filter_map(move |(e, w)| Some(((l, e), w.as_deref()?)))
        })
    }

    /// Test hook: every load sleeps this long first, so tests can make loads overlap.
    #[doc(hidden)]
    pub fn set_read_delay(&self, d: Duration) {
        self.inner
            .read_delay_ns
            .store(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Test hook: from now on `O_DIRECT` reads fail with `EINVAL` (as on a file system that
    /// refuses them), to exercise the fallback to buffered reads.
    #[doc(hidden)]
    pub fn simulate_direct_einval(&self) {
        self.inner.fake_direct_einval.store(true, Ordering::Relaxed);
    }
}

impl Drop for ExpertCache {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        self.hints = None; // closes the channel: the threads finish their hint and return
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn prefetch_loop(inner: &Inner, rx: &[Receiver<Queued>; 2]) {
    let handle = |q: Queued| {
        if !inner.shutdown.load(Ordering::Relaxed) {
            inner.prefetch_one(&q);
        }
        inner.hint_done(q.predicted);
    };
    while let Some(q) = next_hint(rx) {
        if q.predicted && inner.predictions_paused() {
            inner.count(&q.user, |c| &c.predicted_paused, 1);
            inner.hint_done(true);
            continue;
        }
        if q.predicted {
            // Idle read capacity only: until no read of a running layer is queued or in flight
            // (serving queued read-ahead itself meanwhile), or the hint's layer runs.
            let t0 = Instant::now();
            let mut waited = false;
            loop {
                while let Ok(a) = rx[0].try_recv() {
                    handle(a);
                }
                let mut d = inner.demand.lock();
                if *d == 0
                    || q.hint.needed_at <= q.user.position()
                    || inner.shutdown.load(Ordering::Relaxed)
                {
                    break;
                }
                waited = true;
                inner.demand_idle.wait_for(&mut d, Duration::from_millis(5));
            }
            if waited {
                let ns = t0.elapsed().as_nanos() as u64;
                inner.count(&q.user, |c| &c.predicted_deferred_ns, ns);
            }
        }
        handle(q);
    }
}

/// The next hint, read-ahead before predicted; `None` once both queues are closed and empty.
fn next_hint([ahead, predicted]: &[Receiver<Queued>; 2]) -> Option<Queued> {
    if let Ok(q) = ahead.try_recv() {
        return Some(q);
    }
    let mut sel = crossbeam_channel::Select::new();
    sel.recv(ahead);
    sel.recv(predicted);
    let op = sel.select();
    let r = match op.index() {
        0 => op.recv(ahead),
        _ => op.recv(predicted),
    };
    // Closed (the cache is dropping): what is left in either queue, then none.
    r.ok()
        .or_else(|| ahead.try_recv().ok())
        .or_else(|| predicted.try_recv().ok())
}

/// A read for a running layer, counted in [`Inner::demand`] while it lives.
struct DemandRead<'a>(&'a Inner);

impl Drop for DemandRead<'_> {
    fn drop(&mut self) {
        self.0.demand_done();
    }
}

/// The expert's weights served where they are, if this configuration does that: `Some(None)` if
/// a part should be in a map but is not.
fn serve_in_place(
    loc: &ExpertLoc,
    config: &CacheConfig,
    files: &[DataFile],
) -> Option<Option<ExpertWeights>> {
    let all_memory = loc
        .parts()
        .iter()
        .all(|(_, p)| matches!(p.loc, PartLoc::Memory(_)));
    if !(config.io == IoMode::Mmap || (config.budget.is_none() && all_memory)) {
        return None;
    }
    let weight = |p: &ExpertPart| -> Option<Weight> {
        let bytes = match &p.loc {
            PartLoc::Memory(b) => b.clone(),
            PartLoc::File { file, offset, len } => {
                let start = usize::try_from(*offset).ok()?;
                match files.get(*file)?.map.as_ref() {
                    Some(m) => m.slice(start..start.checked_add(*len)?)?,
                    None if *len == 0 => Bytes::from_vec(Vec::new()),
                    None => return None,
                }
            }
        };
        Some(Weight {
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
            bytes,
        })
    };
    Some((|| {
        let m: Option<Vec<Weight>> = loc.parts().iter().map(|(_, p)| weight(p)).collect();
        ExpertWeights::from_matrices(m?)
    })())
}

impl Inner {
    fn new(
        layout: ExpertLayout,
        config: CacheConfig,
        files: Vec<DataFile>,
        plans: Vec<Vec<Plan>>,
        in_place: Vec<Vec<Option<Arc<ExpertWeights>>>>,
        policy: Box<dyn EvictionPolicy>,
        notices: Mutex<Vec<String>>,
    ) -> Inner {
        Inner {
            layout,
            config,
            files,
            plans,
            in_place,
            state: Mutex::new(State {
                ready: HashMap::new(),
                in_flight: HashMap::new(),
                policy,
                held: 0,
                peak: 0,
                evictions: 0,
                prefetch_wasted: 0,
                prefetch_unused: 0,
            }),
            room: Condvar::new(),
            counters: Counters::default(),
            default_user: CacheUser::new(),
            notices,
            pending: Mutex::new(0),
            idle: Condvar::new(),
            demand: Mutex::new(0),
            demand_idle: Condvar::new(),
            epoch: Instant::now(),
            credit: Mutex::new((0, 0)),
            shutdown: AtomicBool::new(false),
            read_delay_ns: AtomicU64::new(0),
            fake_direct_einval: AtomicBool::new(false),
        }
    }

    /// Adds `n` to the counter `f` picks, in the totals and in `user`'s.
    fn count(&self, user: &CacheUser, f: fn(&Counters) -> &AtomicU64, n: u64) {
        add(f(&self.counters), n);
        add(f(&user.counters), n);
    }

    fn budget(&self) -> Option<u64> {
        match self.config.io {
            IoMode::Mmap => None,
            _ => self.config.budget,
        }
    }

    fn check_key(&self, layer: usize, expert: usize) -> Result<(), CacheError> {
        let n_experts = self.layout.layers.get(layer).map_or(0, Vec::len);
        if expert < n_experts {
            Ok(())
        } else {
            Err(CacheError::UnknownExpert {
                layer,
                expert,
                n_experts,
            })
        }
    }

    fn charge(&self, layer: usize, expert: usize) -> Option<u64> {
        match self.in_place.get(layer)?.get(expert)? {
            Some(w) => Some(w.n_bytes() as u64),
            None => Some(self.plans[layer][expert].size as u64),
        }
    }

    /// For an expert served from a file map: checks (by `fstat`) that the file still holds its
    /// parts, so that a file truncated under us gives an error rather than SIGBUS. Best effort:
    /// a truncation after this check and before the caller's last access is not caught.
    fn check_in_place(&self, layer: usize, expert: usize) -> Result<(), CacheError> {
        let loc = &self.layout.layers[layer][expert];
        for (_, part) in loc.parts() {
            if let PartLoc::File { file, offset, len } = part.loc {
                let Some(f) = self.files.get(file) else {
                    continue;
                };
                let needed = offset + len as u64;
                let file_len = f.current_len()?;
                if file_len < needed {
                    return Err(CacheError::Truncated {
                        path: f.path.clone(),
                        layer,
                        expert,
                        needed,
                        file_len,
                    });
                }
            }
        }
        Ok(())
    }

    fn hint_done(&self, predicted: bool) {
        if !predicted {
            self.demand_done();
        }
        let mut p = self.pending.lock();
        *p = p.saturating_sub(1);
        if *p == 0 {
            self.idle.notify_all();
        }
    }

    fn demand_read(&self) -> DemandRead<'_> {
        *self.demand.lock() += 1;
        DemandRead(self)
    }

    fn demand_done(&self) {
        let mut d = self.demand.lock();
        *d = d.saturating_sub(1);
        if *d == 0 {
            self.demand_idle.notify_all();
        }
    }

    /// Adds `ns` to the predictions' account.
    fn credit(&self, ns: i64) {
        let mut c = self.credit.lock();
        c.0 = (c.0 + ns).clamp(-CREDIT_CAP_NS, CREDIT_CAP_NS);
    }

    /// Whether to drop the next prediction: the account is negative, and it is not a probe.
    fn predictions_paused(&self) -> bool {
        let mut c = self.credit.lock();
        if c.0 >= 0 {
            return false;
        }
        c.1 += 1;
        !c.1.is_multiple_of(PROBE_EVERY)
    }

    fn since_epoch(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    fn prefetch_one(&self, q: &Queued) {
        let (h, user) = (q.hint, &q.user);
        // Behind the user's position; or a prediction whose layer runs already, too late: the
        // layer's read-ahead has its experts.
        let stale =
            || h.needed_at < user.position() || (q.predicted && h.needed_at <= user.position());
        if stale() {
            self.count(user, |c| &c.prefetch_stale, 1);
            return;
        }
        let key = (h.layer, h.expert);
        if self.check_key(h.layer, h.expert).is_err() {
            return;
        }
        if self.in_place[h.layer][h.expert].is_some() {
            self.count(user, |c| &c.prefetch_redundant, 1);
            return;
        }
        let mut st = self.state.lock();
        // Again under the lock: a thread descheduled since the check above could otherwise load an
        // expert that the forward pass, tokens later, has used and replaced (the pass moves its
        // position before it next takes the lock).
        if stale() {
            drop(st);
            self.count(user, |c| &c.prefetch_stale, 1);
            return;
        }
        if st.ready.contains_key(&key) || st.in_flight.contains_key(&key) {
            drop(st);
            self.count(user, |c| &c.prefetch_redundant, 1);
            return;
        }
        if q.predicted && !self.room_for_prediction(&mut st, key, user) {
            drop(st);
            self.count(user, |c| &c.predicted_no_room, 1);
            return;
        }
        self.count(user, |c| &c.prefetch_issued, 1);
        if q.predicted {
            self.count(user, |c| &c.predicted_issued, 1);
        }
        if self
            .load(key, st, Some(user.clone()), q.predicted, user)
            .is_err()
        {
            self.count(user, |c| &c.prefetch_failed, 1);
        }
    }

    /// Loads `key` (which is neither ready nor in flight; `st` is the held state lock): registers
    /// the load, reserves room (evicting, or waiting for loads in flight to finish), reads without
    /// the lock, then makes the expert ready and hands the result to everyone waiting. Its cost is
    /// counted to `user`.
    fn load(
        &self,
        key: ExpertKey,
        mut st: MutexGuard<'_, State>,
        by_prefetch: Option<Arc<CacheUser>>,
        predicted: bool,
        user: &CacheUser,
    ) -> Result<Arc<ExpertWeights>, CacheError> {
        let load = Arc::new(Load {
            result: Mutex::new(None),
            done: Condvar::new(),
            by_prefetch,
            predicted,
            read_start_ns: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
        });
        st.in_flight.insert(key, load.clone());
        let charge = self.plans[key.0][key.1].size as u64;
        let mut ticket = Ticket {
            inner: self,
            key,
            load,
            reserved: 0,
            read_ns: 0,
            guard: Some(st),
            settled: false,
        };
        if let Some(st) = ticket.guard.as_mut() {
            self.reserve(st, charge, user);
        }
        ticket.reserved = charge;
        ticket.guard = None; // unlock for the read

        let t0 = Instant::now();
        ticket
            .load
            .read_start_ns
            .store(self.since_epoch(), Ordering::Relaxed);
        let r = self.read(key, user);
        ticket.read_ns = t0.elapsed().as_nanos() as u64;
        if predicted {
            self.count(user, |c| &c.predicted_read_ns, ticket.read_ns);
        }
        ticket.finish(r)
    }

    /// Makes room for a predicted load of `key` without evicting what the policy expects back
    /// soon: only other unused predictions and experts the policy calls
    /// [`expendable`](EvictionPolicy::expendable) go. `false` when that is not enough (a guess never
    /// evicts an expert the running layers need, so prediction cannot lower the hit rate much).
    fn room_for_prediction(
        &self,
        st: &mut MutexGuard<'_, State>,
        key: ExpertKey,
        user: &CacheUser,
    ) -> bool {
        let Some(budget) = self.budget() else {
            return true;
        };
        let charge = self.plans[key.0][key.1].size as u64;
        while st.held + charge > budget {
            let guess = st
                .ready
                .iter()
                .find(|(_, e)| e.predicted_read_ns.is_some())
                .map(|(&k, _)| k);
            let victim = guess.or_else(|| st.policy.victim().filter(|&v| st.policy.expendable(v)));
            match victim {
                Some(v) if st.ready.contains_key(&v) => self.evict(st, v, user),
                _ => return false,
            }
        }
        true
    }

    /// Makes `charge` bytes of room under the budget and counts them as held: evicts ready experts
    /// in policy order, and if that is not enough (the rest is reserved by loads in flight) waits
    /// for those loads to finish. Cannot wait forever: loads in flight always finish, and a single
    /// expert fits the budget (checked at open).
    fn reserve(&self, st: &mut MutexGuard<'_, State>, charge: u64, user: &CacheUser) {
        if let Some(budget) = self.budget() {
            while st.held + charge > budget {
                let victim = st
                    .policy
                    .victim()
                    .or_else(|| st.ready.keys().next().copied());
                match victim {
                    Some(v) => self.evict(st, v, user),
                    None => self.room.wait(st),
                }
            }
        }
        st.held += charge;
        st.peak = st.peak.max(st.held);
    }

    /// Evicts `key` to make room for a load of `user`'s.
    fn evict(&self, st: &mut State, key: ExpertKey, user: &CacheUser) {
        st.policy.remove(key);
        if let Some(e) = st.ready.remove(&key) {
            st.held -= e.charge;
            st.evictions += 1;
            add(&user.counters.evictions, 1);
            if let Some(by) = e.prefetched_unused {
                st.prefetch_unused -= 1;
                st.prefetch_wasted += 1;
                sub(&by.counters.prefetch_unused, 1);
                add(&by.counters.prefetch_wasted, 1);
                if let Some(ns) = e.predicted_read_ns {
                    self.count(&by, |c| &c.predicted_wasted, 1);
                    self.credit(-(ns as i64));
                }
            }
        }
    }

    /// Reads the expert into a new buffer (no lock held).
    fn read(
        &self,
        (layer, expert): ExpertKey,
        user: &CacheUser,
    ) -> Result<Arc<ExpertWeights>, CacheError> {
        let delay = self.read_delay_ns.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_nanos(delay));
        }
        let loc = &self.layout.layers[layer][expert];
        let plan = &self.plans[layer][expert];
        let mut buf = Filling::new(plan.size).ok_or(CacheError::Alloc {
            layer,
            expert,
            bytes: plan.size,
        })?;
        let mut moved = 0u64;
        for (slot, (_, part)) in plan.slots.iter().zip(loc.parts()) {
            match &part.loc {
                PartLoc::Memory(b) => {
                    buf.zero_until(slot.data);
                    if !buf.extend_from_slice(b) {
                        return Err(CacheError::Alloc {
                            layer,
                            expert,
                            bytes: plan.size,
                        });
                    }
                    moved += b.len() as u64;
                }
                PartLoc::File { file, offset, len } => {
                    let f = &self.files[*file];
                    let fake = self.fake_direct_einval.load(Ordering::Relaxed);
                    moved += f.read_part(&mut buf, slot, *offset, *len, &self.notices, fake)?;
                }
            }
        }
        self.count(user, |c| &c.bytes_read, moved);
        self.count(user, |c| &c.reads, 1);
        let bytes = Bytes::new(Arc::new(buf.finish()));
        let weight = |i: usize| -> Option<Weight> {
            let (_, p) = loc.parts()[i];
            let data = plan.slots[i].data;
            Some(Weight {
                dtype: p.dtype,
                rows: p.rows,
                cols: p.cols,
                bytes: bytes.slice(data..data + p.len())?,
            })
        };
        let m: Option<Vec<Weight>> = (0..loc.parts().len()).map(weight).collect();
        let Some(w) = m.and_then(ExpertWeights::from_matrices) else {
            return Err(CacheError::Layout {
                layer,
                expert,
                part: "gate",
                msg: "buffer plan does not hold the parts".into(),
            });
        };
        Ok(Arc::new(w))
    }
}

/// A registered load; finishing it (or dropping it, should a read or a policy panic) takes it out
/// of the in-flight map, settles its reservation and wakes everyone waiting.
struct Ticket<'a> {
    inner: &'a Inner,
    key: ExpertKey,
    load: Arc<Load>,
    reserved: u64,
    /// How long the read took (ns).
    read_ns: u64,
    /// The state lock, while the load is being registered and its room reserved.
    guard: Option<MutexGuard<'a, State>>,
    settled: bool,
}

impl Ticket<'_> {
    fn finish(
        mut self,
        r: Result<Arc<ExpertWeights>, CacheError>,
    ) -> Result<Arc<ExpertWeights>, CacheError> {
        self.settle(r.clone());
        r
    }

    fn settle(&mut self, r: Result<Arc<ExpertWeights>, CacheError>) {
        self.settled = true;
        let inner = self.inner;
        {
            let mut st = match self.guard.take() {
                Some(g) => g,
                None => inner.state.lock(),
            };
            st.in_flight.remove(&self.key);
            match &r {
                Ok(w) => {
                    let unused = match &self.load.by_prefetch {
                        Some(by) if !self.load.claimed.load(Ordering::Relaxed) => {
                            st.prefetch_unused += 1;
                            add(&by.counters.prefetch_unused, 1);
                            Some(by.clone())
                        }
                        _ => None,
                    };
                    let predicted_read_ns =
                        (unused.is_some() && self.load.predicted).then_some(self.read_ns);
                    let entry = Entry {
                        weights: w.clone(),
                        charge: self.reserved,
                        prefetched_unused: unused,
                        predicted_read_ns,
                    };
                    // A key is loaded at most once at a time, so there is no old entry; were there
                    // one, keep the accounting right anyway.
                    if let Some(old) = st.ready.insert(self.key, entry) {
                        st.held -= old.charge;
                        if let Some(by) = old.prefetched_unused {
                            st.prefetch_unused -= 1;
                            sub(&by.counters.prefetch_unused, 1);
                        }
                    } else {
                        st.policy.insert(self.key);
                    }
                }
                Err(_) => st.held -= self.reserved,
            }
        }
        inner.room.notify_all();
        self.load.publish(r);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let (layer, expert) = self.key;
            self.settle(Err(CacheError::Abandoned { layer, expert }));
        }
    }
}

// The cache is shared between the runtime's threads and its own prefetch threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ExpertCache>();
};
