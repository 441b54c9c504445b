//! What fetching experts cost: a snapshot of the cache's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::IoMode;

/// Counters since the cache was opened; a snapshot is taken with [`crate::ExpertCache::stats`].
///
/// Each [`crate::ExpertCache::get`] is one request and exactly one of a hit (the expert was ready in
/// the cache, or is served in place) or a miss (it had to be read, or the call waited for a read
/// already in flight, e.g. a prefetch: that wait counts as stall). Prefetch hints end in exactly one
/// of `prefetch_dropped_full`, `prefetch_stale`, `prefetch_redundant`, `predicted_no_room`, `predicted_paused` or
/// `prefetch_issued` (hints sent after shutdown began are not counted); every issued prefetch ends in exactly one of
/// `prefetch_useful`, `prefetch_wasted`, `prefetch_unused` or `prefetch_failed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Expert fetches requested (`hits + misses`).
    pub requests: u64,
    /// Fetches served from memory without waiting for a read.
    pub hits: u64,
    /// Fetches that read the file or waited for a read in flight.
    pub misses: u64,
    /// Bytes moved into cache buffers: bytes returned by `pread` (with `O_DIRECT`, whole aligned
    /// blocks) plus bytes copied from memory parts; by gets and prefetches alike. 0 in mmap mode.
    pub bytes_read: u64,
    /// Expert loads (one per expert brought into the cache, each reading its three parts).
    pub reads: u64,
    /// Nanoseconds `get` calls spent waiting for loads (their own, or one in flight), summed over
    /// threads.
    pub stall_ns: u64,
    /// Experts evicted to make room.
    pub evictions: u64,
    /// Prefetch loads started.
    pub prefetch_issued: u64,
    /// Prefetched experts whose first use came from a `get` (ready, or still in flight).
    pub prefetch_useful: u64,
    /// Prefetched experts evicted before any `get` used them.
    pub prefetch_wasted: u64,
    /// Prefetched experts still in the cache, not yet used by any `get`.
    pub prefetch_unused: u64,
    /// Prefetch loads that failed (the error reaches any `get` that waited for it).
    pub prefetch_failed: u64,
    /// Hints dropped because their position stamp was already behind the current position.
    pub prefetch_stale: u64,
    /// Hints for experts already cached, in flight or served in place.
    pub prefetch_redundant: u64,
    /// Hints dropped because the prefetch queue was full.
    pub prefetch_dropped_full: u64,
    /// Of the issued prefetches, the predicted ones: hints for a position after the user's
    /// current one (a predictor's guess at a later layer, not the running layer's read-ahead).
    /// They wait while any read for a running layer is queued or in flight, so they only use idle
    /// read capacity.
    pub predicted_issued: u64,
    /// Predicted hints dropped for want of room: a prediction evicts only other unused
    /// predictions and experts the policy does not expect back soon.
    pub predicted_no_room: u64,
    /// Predicted hints dropped because predictions did not pay lately: the stall they saved was
    /// less than the read time of those evicted unused (one in 32 still goes, to measure).
    pub predicted_paused: u64,
    /// Predicted experts whose first use came from a `get`.
    pub predicted_useful: u64,
    /// Predicted experts evicted before any `get` used them.
    pub predicted_wasted: u64,
    /// Nanoseconds predicted loads spent reading: the flash time the predictor consumed.
    pub predicted_read_ns: u64,
    /// Nanoseconds of stall the predicted loads saved, estimated: for each used one, the read time
    /// it had spent before the `get` came (all of it when the expert was ready).
    pub predicted_saved_ns: u64,
    /// Nanoseconds predicted hints waited for reads of a running layer to finish.
    pub predicted_deferred_ns: u64,
    /// Bytes of expert buffers the cache holds now (ready experts plus loads in flight).
    pub cached_bytes: u64,
    /// Most `cached_bytes` ever held.
    pub peak_cached_bytes: u64,
    /// The byte budget; `None` when unbounded (resident) or in mmap mode (the OS decides).
    pub budget: Option<u64>,
    pub io: IoMode,
}

impl CacheStats {
    /// `hits / requests` (0 with no requests).
    pub fn hit_rate(&self) -> f64 {
        match self.requests {
            0 => 0.0,
            r => self.hits as f64 / r as f64,
        }
    }

    /// Stall time in milliseconds.
    pub fn stall_ms(&self) -> f64 {
        self.stall_ns as f64 / 1e6
    }
}

/// The counters that are not kept under the cache's lock.
#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bytes_read: AtomicU64,
    pub reads: AtomicU64,
    pub stall_ns: AtomicU64,
    pub prefetch_issued: AtomicU64,
    pub prefetch_useful: AtomicU64,
    pub prefetch_failed: AtomicU64,
    pub prefetch_stale: AtomicU64,
    pub prefetch_redundant: AtomicU64,
    pub prefetch_dropped_full: AtomicU64,
    pub predicted_issued: AtomicU64,
    pub predicted_no_room: AtomicU64,
    pub predicted_paused: AtomicU64,
    pub predicted_useful: AtomicU64,
    pub predicted_wasted: AtomicU64,
    pub predicted_read_ns: AtomicU64,
    pub predicted_saved_ns: AtomicU64,
    pub predicted_deferred_ns: AtomicU64,
    /// A user's share of what the cache keeps under its lock (unused for the cache's totals).
    pub evictions: AtomicU64,
    pub prefetch_wasted: AtomicU64,
    pub prefetch_unused: AtomicU64,
}

/// Adds `n` to a counter (no ordering needed: each counter is independent).
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a counter that holds at least `n`.
pub(crate) fn sub(c: &AtomicU64, n: u64) {
    c.fetch_sub(n, Ordering::Relaxed);
}

pub(crate) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
