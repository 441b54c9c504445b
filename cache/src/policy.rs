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

#[cfg(test)]
mod tests {
    use super::*;

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
}
