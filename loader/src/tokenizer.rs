//! `tokenizer.json`, read offline from the model folder.

use std::path::Path;

use crate::{LoaderError, Result};

pub use tokenizers::Tokenizer;

/// Loads `dir/tokenizer.json`; `Ok(None)` if the folder has none.
pub fn load_from_dir(dir: &Path) -> Result<Option<Tokenizer>> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Ok(None);
    }
    load(&path).map(Some)
}

/// Loads one `tokenizer.json` file.
pub fn load(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| LoaderError::Tokenizer {
        path: path.to_owned(),
        msg: e.to_string(),
    })
}
