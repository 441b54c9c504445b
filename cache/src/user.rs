//! A user of a shared cache (one session of the runtime): its own position stamp and its own share
//! of the counters, so that several users of one cache each see what their own requests cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::stats::Counters;

/// One user of an [`crate::ExpertCache`]: pass it to [`crate::ExpertCache::get_as`],
/// [`crate::ExpertCache::prefetch_as`] and [`crate::ExpertCache::stats_of`].
///
/// What is counted to a user:
/// - its requests: hits, misses and stall of its `get_as` calls;
/// - the loads it caused (by a `get_as` or by one of its prefetch hints): bytes read, reads, and the
///   evictions made to give them room;
/// - the fate of its prefetch hints: dropped, stale, redundant, issued, and of the experts they
///   loaded: useful (whoever used them), wasted, unused, failed.
///
/// Its hints go stale against its own position ([`CacheUser::set_position`]), not another user's.
#[derive(Default)]
pub struct CacheUser {
    pub(crate) counters: Counters,
    pub(crate) position: AtomicU64,
}

impl CacheUser {
    pub fn new() -> Arc<CacheUser> {
        Arc::new(CacheUser::default())
    }

    /// Sets this user's position stamp (e.g. `token_index * n_layers + layer`); its hints whose
    /// `needed_at` is below it are dropped as stale when a prefetch thread reaches them. May go
    /// down (a new sequence).
    pub fn set_position(&self, stamp: u64) {
        self.position.store(stamp, Ordering::Relaxed);
    }

    pub(crate) fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for CacheUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheUser")
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}
