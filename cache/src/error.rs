//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong opening the cache or fetching an expert. Every variant names the file, offset,
/// layer or expert it is about. The type is `Clone` (I/O errors are shared behind an `Arc`) because
/// one failed read is reported to every caller that was waiting for it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no expert {expert} in layer {layer} (the layer has {n_experts} experts)")]
    UnknownExpert {
        layer: usize,
        expert: usize,
        n_experts: usize,
    },

    #[error("{}: I/O error at offset {offset}: {source}", path.display())]
    Io {
        path: PathBuf,
        offset: u64,
        #[source]
        source: Arc<io::Error>,
    },

    #[error(
        "{}: short read at offset {offset}: wanted {wanted} bytes, got {got} \
         (was the file truncated or replaced while in use?)",
        path.display()
    )]
    ShortRead {
        path: PathBuf,
        offset: u64,
        wanted: usize,
        got: usize,
    },

    #[error(
        "{}: the file is now {file_len} bytes, but layer {layer} expert {expert} needs bytes up to \
         {needed} (was the file truncated while in use?)",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        layer: usize,
        expert: usize,
        needed: u64,
        file_len: u64,
    },

    #[error(
        "expert {expert} of layer {layer} needs {bytes} bytes, more than the whole expert cache \
         budget of {budget} bytes ({budget_mib:.1} MiB)",
        budget_mib = *budget as f64 / MIB
    )]
    ExpertTooLarge {
        layer: usize,
        expert: usize,
        bytes: u64,
        budget: u64,
    },

    #[error(
        "expert cache budget {budget_mib:.1} MiB cannot hold the k={k} experts of layer {layer} \
         ({needed_mib:.1} MiB); give at least that much",
        budget_mib = *budget as f64 / MIB,
        needed_mib = *needed as f64 / MIB
    )]
    BudgetTooSmall {
        budget: u64,
        k: usize,
        layer: usize,
        needed: u64,
    },

    #[error("layer {layer} expert {expert} {part}: {msg}")]
    Layout {
        layer: usize,
        expert: usize,
        /// `gate`, `up` or `down`.
        part: &'static str,
        msg: String,
    },

    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    #[error("cannot allocate {bytes} bytes for layer {layer} expert {expert}")]
    Alloc {
        layer: usize,
        expert: usize,
        bytes: usize,
    },

    #[error("cannot start the prefetch thread: {0}")]
    Spawn(#[source] Arc<io::Error>),

    #[error("the load of layer {layer} expert {expert} was abandoned (a loader thread panicked)")]
    Abandoned { layer: usize, expert: usize },
}

const MIB: f64 = 1024.0 * 1024.0;

impl CacheError {
    pub(crate) fn io(path: &std::path::Path, offset: u64, e: io::Error) -> CacheError {
        CacheError::Io {
            path: path.to_owned(),
            offset,
            source: Arc::new(e),
        }
    }
}
