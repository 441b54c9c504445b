use std::path::PathBuf;

/// Errors of the runtime: loading, running, sampling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] cosmoe_loader::LoaderError),
    #[error(transparent)]
    Cache(#[from] cosmoe_cache::CacheError),
    #[error("token id {id} is outside the vocabulary (vocab_size = {vocab_size})")]
    TokenOutOfRange { id: u32, vocab_size: usize },
    #[error("no input tokens")]
    EmptyInput,
    #[error("context full: {needed} positions needed, the context holds {max}")]
    ContextFull { needed: usize, max: usize },
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// An output file refused before any work (see [`crate::outfile`]).
    #[error("cannot write {path}: {msg}")]
    Output { path: PathBuf, msg: String },
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
