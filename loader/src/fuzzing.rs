//! Entry points of the fuzz targets (`loader/fuzz/`), also run over the committed corpus by the
//! normal test suite (`loader/tests/fuzz_corpus.rs`). Each takes arbitrary bytes, drives the loader as
//! a model load would, and must return (with an error or not) without panicking, hanging or
//! allocating far beyond the input's size.

use std::path::Path;

use crate::{tokenizer, Bytes, Checkpoint, GgufFile, ModelConfig, WeightSource};

/// Reads every tensor of `src` in the shapes it declares, as the model builder would.
fn read_all(src: &dyn WeightSource, shapes: Vec<(String, Vec<usize>)>) {
    for (name, shape) in shapes {
        let _ = match shape[..] {
            [len] => src.vector(&name, len).map(|_| ()),
            [rows, cols] => src.matrix(&name, rows, cols).map(|_| ()),
            // Only shapes whose every dimension is non-zero: a model's dims are positive.
            [n, rows, cols] if n > 0 && rows > 0 && cols > 0 => {
                src.stacked(&name, n, rows, cols).map(|_| ())
            }
            _ => Ok(()),
        };
    }
}

/// A GGUF file: parse, model config, tokenizer, every tensor.
pub fn gguf(data: &[u8]) {
    let Ok(f) = GgufFile::parse(Bytes::from_vec(data.to_vec()), Path::new("fuzz.gguf")) else {
        return;
    };
    let _ = ModelConfig::from_gguf(&f);
    let _ = tokenizer::from_gguf(&f);
    let shapes = f
        .tensors()
        .iter()
        .map(|t| (t.name().to_owned(), t.shape()))
        .collect();
    read_all(&f, shapes);
}

/// `[config length: u16 LE][config.json bytes][model.safetensors bytes]`: config parse, checkpoint
/// parse, every tensor.
pub fn safetensors_config(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let (config, weights) = rest.split_at(len);
    if let Ok(text) = std::str::from_utf8(config) {
        let _ = ModelConfig::from_json_str(text, Path::new("config.json"));
    }
    let Ok(ck) = Checkpoint::from_bytes(
        Bytes::from_vec(weights.to_vec()),
        Path::new("model.safetensors"),
    ) else {
        return;
    };
    let shapes = ck
        .tensors()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    read_all(&ck, shapes);
}
