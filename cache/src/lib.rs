//! cosmoe-cache: where each routed expert's weights live, which of them are in RAM, and what
//! fetching them cost.
//!
//! The runtime describes every expert once, as an [`ExpertLayout`]: for each `(layer, expert)` the
//! gate, up and down projections, each a slice of a GGUF/safetensors file or bytes already in
//! memory. [`ExpertCache::open`] checks the layout (every part's length matches its shape, every file
//! part lies inside its file) and then serves [`ExpertCache::get`]`(layer, expert)` as an
//! `Arc<`[`ExpertWeights`]`>`.
//!
//! # How experts are held
//!
//! - With a budget ([`CacheConfig::budget`]) and [`IoMode::Direct`] or [`IoMode::Buffered`], a
//!   fetched expert is read (`pread`, with `O_DIRECT` where the file system allows it) into one
//!   owned, 4096-aligned buffer holding all three parts; the [`Weight`]s handed out are windows
//!   onto that buffer. Ready experts sit in a map ordered by an
//!   [`EvictionPolicy`] (LRU by default) behind one `parking_lot` mutex; loads in flight are tracked
//!   so that any number of concurrent requests for one expert cause exactly one read.
//! - Without a budget (resident mode) the same code path runs with nothing ever evicted; experts
//!   whose parts are all in memory are served in place, without copying.
//! - With [`IoMode::Mmap`] every part is served in place from a map of its file and the OS page
//!   cache decides what stays in RAM; the budget does not apply ([`CacheStats::budget`] is `None`).
//!
//! # Guarantees
//!
//! - **The bound.** The bytes of expert buffers the cache holds, ready experts *plus loads in
//!   flight*, never exceed the budget ([`CacheStats::cached_bytes`] `<=` budget at every moment):
//!   room is reserved (by evicting ready experts, or by waiting for loads in flight to finish)
//!   before a buffer is allocated. Expert memory beyond the budget is only experts that callers
//!   still hold (`Arc`s from `get` whose experts were evicted meanwhile) — at most what the callers
//!   use at once, e.g. the `k` experts of one layer per thread. An expert is charged its buffer
//!   size ([`ExpertCache::expert_bytes`]): its three parts, each aligned (with `O_DIRECT`, widened to
//!   whole 4096-byte blocks), rounded up to a page. An expert larger than the whole budget is an
//!   error at open; [`ExpertCache::check_budget`] says whether the budget holds the `k` largest
//!   experts of every layer.
//! - **No use after free.** Evicting an expert only drops the cache's `Arc`; a caller's matvec
//!   keeps its buffer alive.
//! - **One read per expert at a time.** A `get` that finds the expert loading (by another `get` or
//!   by the prefetcher) waits for that load; the wait counts as a miss and as stall.
//! - **Errors, not crashes.** A file truncated or replaced under the runtime makes `get` return
//!   [`CacheError::ShortRead`] / [`CacheError::Io`] naming the file and offset: Direct and Buffered
//!   modes read with `pread` and never map a file. Mmap mode checks the file's length (`fstat`)
//!   before serving each expert ([`CacheError::Truncated`]); a truncation between that check and the
//!   caller's reads can still raise SIGBUS — the inherent hazard of mapping files, and one reason
//!   this mode is kept only for comparison. A failed load is not cached; the next `get` retries.
//! - **Counted.** Every request is exactly one hit or miss; see [`CacheStats`] for the prefetch
//!   accounting. Counters are atomics or kept under the lock and are exact under concurrency.
//!
//! # Prefetch
//!
//! With [`CacheConfig::prefetch_threads`] > 0, [`ExpertCache::prefetch`] queues [`PrefetchHint`]s on
//! a bounded channel (a full queue drops the hint, counted) for background threads that load the
//! experts through the same path as `get`. The runtime stamps its progress with
//! [`ExpertCache::set_position`] (e.g. `token * n_layers + layer`); a hint whose `needed_at` is
//! already behind the position is dropped as stale. Dropping the cache closes the channel and joins
//! the threads.
//!
//! # Users
//!
//! One cache serves several users at once (the sessions of one model): each holds a [`CacheUser`]
//! and calls [`ExpertCache::get_as`] / [`ExpertCache::prefetch_as`]; [`ExpertCache::stats_of`] gives
//! the counters of its own requests and loads, [`ExpertCache::stats`] the totals. Each user's hints
//! go stale against its own position. The calls without a user act for a built-in default one.

mod buffer;
mod cache;
mod config;
mod error;
mod io;
mod layout;
mod policy;
pub mod sim;
mod stats;
mod user;

pub use buffer::ALIGN;
pub use cache::ExpertCache;
pub use config::{CacheConfig, IoMode};
pub use error::CacheError;
pub use layout::{ExpertLayout, ExpertLoc, ExpertPart, PartLoc};
pub use policy::{EvictionPolicy, LayerCyclic, Lfu, Lru, PolicyKind, Stale};
pub use stats::CacheStats;
pub use user::CacheUser;

use cosmoe_loader::Weight;

/// `(layer, expert)`.
pub type ExpertKey = (usize, usize);

/// The name the runtime knows the cache by: [`ExpertCache::resident`] builds the all-in-RAM store.
pub type ExpertStore = ExpertCache;

/// One routed expert: a SwiGLU MLP, `down(silu(gate x) * up x)`.
#[derive(Clone, Debug)]
pub struct ExpertWeights {
    /// (ffn, hidden); of a weight-decomposed expert the left factor L, (ffn, rank)
    pub gate: Weight,
    /// (ffn, hidden); or L, (ffn, rank)
    pub up: Weight,
    /// (hidden, ffn); or L, (hidden, rank)
    pub down: Weight,
    /// A weight-decomposed expert's right factors: each matrix is `gate . right.gate` etc.
    pub right: Option<Box<RightFactors>>,
}

/// The right factors R of a weight-decomposed expert (M = L . R, computed as L (R x)).
#[derive(Clone, Debug)]
pub struct RightFactors {
    /// (rank, hidden)
    pub gate: Weight,
    /// (rank, hidden)
    pub up: Weight,
    /// (rank, ffn)
    pub down: Weight,
}

impl ExpertWeights {
    /// Every matrix: gate, up, down, then the right factors, if any.
    pub fn matrices(&self) -> Vec<&Weight> {
        let mut v = vec![&self.gate, &self.up, &self.down];
        if let Some(r) = &self.right {
            v.extend([&r.gate, &r.up, &r.down]);
        }
        v
    }

    /// Bytes of weights this expert occupies.
    pub fn n_bytes(&self) -> usize {
        self.matrices().iter().map(|w| w.bytes.len()).sum()
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.matrices().iter().map(|w| w.rows * w.cols).sum()
    }

    /// An expert from its matrices in [`matrices`](Self::matrices)' order (3 or 6 of them).
    pub fn from_matrices(mut m: Vec<Weight>) -> Option<ExpertWeights> {
        let right = match m.len() {
            3 => None,
            6 => {
                let (down, up, gate) = (m.pop()?, m.pop()?, m.pop()?);
                Some(Box::new(RightFactors { gate, up, down }))
            }
            _ => return None,
        };
        let (down, up, gate) = (m.pop()?, m.pop()?, m.pop()?);
        Some(ExpertWeights {
            gate,
            up,
            down,
            right,
        })
    }
}

/// "Expert `expert` of `layer` will be needed at position `needed_at`" (the stamp the runtime will
/// pass to [`ExpertCache::set_position`] when it gets there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefetchHint {
    pub layer: usize,
    pub expert: usize,
    pub needed_at: u64,
}
