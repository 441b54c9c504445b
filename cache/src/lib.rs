//! cosmoe-cache: where each expert's weights live, and what fetching them cost.
//!
//! The runtime asks [`ExpertStore::get`] for `(layer, expert)` and gets the weights as an `Arc`, so an
//! expert in use can never be freed under a running matvec. Today every expert is resident (used in
//! place from the checkpoint's memory map); the bounded byte-budget cache, flash reads and prefetch
//! (DESIGN.md, "The expert cache") replace the inside of this type without changing its callers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cosmoe_loader::Weight;

/// One routed expert: a SwiGLU MLP.
#[derive(Clone, Debug)]
pub struct ExpertWeights {
    /// (ffn, hidden)
    pub gate: Weight,
    /// (ffn, hidden)
    pub up: Weight,
    /// (hidden, ffn)
    pub down: Weight,
}

impl ExpertWeights {
    /// Bytes of weights this expert occupies.
    pub fn n_bytes(&self) -> usize {
        self.gate.bytes.len() + self.up.bytes.len() + self.down.bytes.len()
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.gate.rows * self.gate.cols
            + self.up.rows * self.up.cols
            + self.down.rows * self.down.cols
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("no expert {expert} in layer {layer} (the layer has {n_experts})")]
    UnknownExpert {
        layer: usize,
        expert: usize,
        n_experts: usize,
    },
}

/// Counters of one run; a snapshot is taken with [`ExpertStore::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Expert fetches requested.
    pub requests: u64,
    /// Fetches served without reading the file.
    pub hits: u64,
    /// Fetches that had to read the file.
    pub misses: u64,
    /// Bytes read from the file for misses.
    pub bytes_read: u64,
}

/// All routed experts of a model, by layer.
pub struct ExpertStore {
    /// `layers[l][e]`; empty for dense layers.
    layers: Vec<Vec<Arc<ExpertWeights>>>,
    requests: AtomicU64,
    hits: AtomicU64,
}

impl ExpertStore {
    /// A store that keeps every expert resident.
    pub fn resident(layers: Vec<Vec<ExpertWeights>>) -> Self {
        ExpertStore {
            layers: layers
                .into_iter()
                .map(|l| l.into_iter().map(Arc::new).collect())
                .collect(),
            requests: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The weights of `expert` in `layer`.
    pub fn get(&self, layer: usize, expert: usize) -> Result<Arc<ExpertWeights>, CacheError> {
        let found = self.layers.get(layer).and_then(|l| l.get(expert));
        let Some(w) = found else {
            return Err(CacheError::UnknownExpert {
                layer,
                expert,
                n_experts: self.layers.get(layer).map_or(0, Vec::len),
            });
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Ok(w.clone())
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Experts in `layer` (0 for a dense layer).
    pub fn n_experts(&self, layer: usize) -> usize {
        self.layers.get(layer).map_or(0, Vec::len)
    }

    /// All experts with their keys.
    pub fn iter(&self) -> impl Iterator<Item = ((usize, usize), &ExpertWeights)> {
        self.layers.iter().enumerate().flat_map(|(l, es)| {
            es.iter()
                .enumerate()
                .map(move |(e, w)| ((l, e), w.as_ref()))
        })
    }

    /// Total bytes of all experts.
    pub fn total_bytes(&self) -> usize {
        self.iter().map(|(_, w)| w.n_bytes()).sum()
    }

    pub fn stats(&self) -> CacheStats {
        let requests = self.requests.load(Ordering::Relaxed);
        let hits = self.hits.load(Ordering::Relaxed);
        CacheStats {
            requests,
            hits,
            misses: requests - hits,
            bytes_read: 0,
        }
    }
}
