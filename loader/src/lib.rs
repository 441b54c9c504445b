//! cosmoe-loader: model files.
//!
//! - [`config`]: `config.json` of a Hugging Face checkpoint into one typed [`ModelConfig`], accepting the
//!   transformers 4.x (`rope_theta`, `rope_scaling`) and 5.x (`rope_parameters`) forms.
//! - [`safetensors`]: `*.safetensors` files (single or sharded) over a memory map; tensors are used in
//!   place as [`Bytes`] that keep their map alive.
//! - [`gguf`]: GGUF files (versions 2 and 3) over a memory map, validated against hostile input;
//!   metadata, tensor infos, weights and per-expert slices used in place.
//! - [`tokenizer`]: `tokenizer.json` through the `tokenizers` crate.
//! - [`quant`]: llama-quantize's file types (`Q4_K_M`, ...) and the type each tensor gets in them.
//! - [`pretokenize`]: the pre-tokenizers llama.cpp knows for BPE vocabularies in GGUF files, by
//!   `tokenizer.ggml.pre` name.
//!
//! Every error names the file, and the tensor or key where there is one.

mod bytes;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod gguf;
mod gguf_config;
pub mod gguf_vocab;
pub mod gguf_writer;
pub mod pretokenize;
pub mod quant;
pub mod safetensors;
pub mod source;
pub mod tokenizer;

use std::path::PathBuf;

pub use bytes::Bytes;
pub use config::{Architecture, ModelConfig, MoeConfig, RopeConfig, RopeScaling};
pub use cosmoe_kernels::DType;
pub use gguf::{GgmlType, GgufFile, GgufTensorInfo};
pub use gguf_config::gguf_rope_interleaved;
pub use gguf_writer::GgufWriter;
pub use quant::{Blocks, FileType, QuantScheme};
pub use safetensors::{Checkpoint, TensorInfo, Weight};
pub use source::{ModelPath, TensorStat, WeightSource};

/// Everything that can go wrong reading a model's files.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    // The underlying error is part of the message (not a `source`), so a report that prints the
    // chain does not repeat it.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}; expected a GGUF file (known by its first four bytes, `GGUF`), a Hugging Face checkpoint folder (config.json and *.safetensors) or a file in one")]
    NotAModel { path: PathBuf, msg: String },
    #[error("{path}: malformed JSON: {err}")]
    Json {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("{path}: missing required key `{key}`")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: key `{key}`: {msg}")]
    BadValue {
        path: PathBuf,
        key: String,
        msg: String,
    },
    #[error("{path}: unsupported architecture `{arch}` (cosmoe runs {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    #[error("{path}: not a valid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("{path}: no weights found (expected model.safetensors, model.safetensors.index.json or *.safetensors)")]
    NoWeights { path: PathBuf },
    #[error(
        "{path}: tensor `{tensor}` has unsupported dtype {dtype} (cosmoe reads F32, F16 and BF16)"
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("{path}: tensor `{tensor}` not found")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` appears in both {path} and {other}")]
    DuplicateTensor {
        path: PathBuf,
        other: PathBuf,
        tensor: String,
    },
    #[error("{path}: tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        tensor: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: not a valid GGUF file: {msg}")]
    Gguf { path: PathBuf, msg: String },
    #[error("{path}: tensor `{tensor}` {msg}")]
    GgufTensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("{path}: tensor `{tensor}` has ggml type {ggml_type}, which cosmoe does not compute with yet (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL and IQ4_XS)")]
    UnsupportedGgmlType {
        path: PathBuf,
        tensor: String,
        ggml_type: String,
    },
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("unknown quantisation type `{name}` (accepted: {accepted}; see docs/formats.md)")]
    UnknownFileType { name: String, accepted: String },
    #[error("tensor `{tensor}`: {msg}")]
    Quantize { tensor: String, msg: String },
    /// What the kernels refuse, such as a plan to quantise to a type cosmoe has no quantiser for.
    #[error(transparent)]
    Kernel(#[from] cosmoe_kernels::KernelError),
}

pub type Result<T, E = LoaderError> = std::result::Result<T, E>;
