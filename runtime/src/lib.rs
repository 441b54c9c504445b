//! cosmoe: an on-device inference runtime for sparse Mixture-of-Experts language models.
//!
//! - [`Model`]: a checkpoint loaded once and shared (weights, config, tokenizer, the expert cache);
//!   [`Session`]: one conversation with it (KV cache, routing, statistics). Several sessions of one
//!   model run at once on different threads.
//! - [`forward`]: the pass itself; [`attention`] and [`moe`] its layers.
//! - [`arch`]: what differs between architectures (one place per difference) and their tensor names.
//! - [`quant`]: llama-quantize's file types (`Q4_K_M`, ...) for `convert`, `synth` and `--quantize`.
//! - [`sampler`], [`generate`]: from logits to tokens.
//! - [`report`]: what a run measured; [`inspect`]: sizes, parameter counts, the expert/resident split.
//! - [`outfile`]: files written safely (checked first, through `OUT.part`, removed on failure).
//! - [`capi`]: the C ABI (`include/cosmoe.h`).

pub mod arch;
pub mod attention;
pub mod bench;
pub mod capi;
pub mod chat;
pub mod compare;
pub mod convert;
mod error;
pub mod forward;
pub mod generate;
pub mod inspect;
pub mod kv;
pub mod model;
pub mod moe;
pub mod outfile;
pub mod perplexity;
pub mod quant;
pub mod report;
pub mod rope;
pub mod routing;
pub mod sampler;
pub mod session;
mod state;
pub mod synth;

pub use error::{Error, Result};
pub use kv::KvCache;
pub use model::{LoadOptions, Model, TokenizerSource};
pub use session::{CancelHandle, Session};
