//! cosmoe: an on-device inference runtime for sparse Mixture-of-Experts language models.
//!
//! - [`arch`]: what differs between architectures (one place per difference) and their tensor names.
//! - [`model`]: a checkpoint loaded into a [`Model`]; [`forward`] runs it over tokens with a [`KvCache`].
//! - [`sampler`], [`generate`]: from logits to tokens.
//! - [`inspect`]: sizes, parameter counts and the expert/resident byte split.

pub mod arch;
pub mod bench;
pub mod convert;
mod error;
pub mod forward;
pub mod generate;
pub mod inspect;
pub mod kv;
pub mod model;
pub mod report;
pub mod rope;
pub mod routing;
pub mod sampler;
pub mod synth;

pub use error::{Error, Result};
pub use kv::KvCache;
pub use model::{LoadOptions, Model};
