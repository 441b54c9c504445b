//! How the cache reads experts and how much it may hold.

use std::fmt;
use std::str::FromStr;

/// How expert bytes get from the file into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IoMode {
    /// `pread` with `O_DIRECT` into the cache's own buffers, bypassing the page cache so the
    /// budget is the true memory footprint. Linux only; where the file system refuses it (tmpfs on
    /// older kernels: `EINVAL`) or on other systems, falls back to [`IoMode::Buffered`] for that
    /// file and records a notice ([`crate::ExpertCache::notices`]).
    #[default]
    Direct,
    /// `pread` through the page cache into the cache's own buffers.
    Buffered,
    /// Serve experts in place from memory maps of the files; the OS page cache decides what stays
    /// in RAM, so the byte budget does not apply (kept to compare against).
    Mmap,
}

impl IoMode {
    pub const ALL: [IoMode; 3] = [IoMode::Direct, IoMode::Buffered, IoMode::Mmap];

    pub const fn name(self) -> &'static str {
        match self {
            IoMode::Direct => "direct",
            IoMode::Buffered => "buffered",
            IoMode::Mmap => "mmap",
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IoMode {
    type Err = String;

    /// `direct`, `buffered` or `mmap` (any case).
    fn from_str(s: &str) -> Result<IoMode, String> {
        IoMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown I/O mode {s:?}: expected direct, buffered or mmap"))
    }
}

/// How an [`crate::ExpertCache`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes of expert buffers the cache holds (loads in flight included); `None` = unbounded:
    /// resident mode, every expert stays once read. Ignored by [`IoMode::Mmap`].
    pub budget: Option<u64>,
    pub io: IoMode,
    /// Background prefetch threads; 0 = none ([`crate::ExpertCache::prefetch`] then does nothing).
    pub prefetch_threads: usize,
    /// Hints the prefetch queue holds; a hint sent while it is full is dropped and counted.
    pub prefetch_queue: usize,
    /// Which expert leaves when room is needed.
    pub policy: crate::PolicyKind,
}

impl Default for CacheConfig {
    /// Resident, `O_DIRECT` reads, no prefetch thread, a queue of 256 hints.
    fn default() -> Self {
        CacheConfig {
            budget: None,
            io: IoMode::Direct,
            prefetch_threads: 0,
            prefetch_queue: 256,
            policy: crate::PolicyKind::Lru,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_mode_round_trips() {
        for m in IoMode::ALL {
            assert_eq!(m.to_string().parse::<IoMode>(), Ok(m));
        }
        assert_eq!("MMAP".parse::<IoMode>(), Ok(IoMode::Mmap));
        assert!("o_direct"
            .parse::<IoMode>()
            .unwrap_err()
            .contains("direct, buffered or mmap"));
    }
}
