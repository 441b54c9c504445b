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

/// The pre-tokenizer regex llama.cpp uses for a `tokenizer.ggml.pre` name (llama-vocab.cpp).
pub(crate) fn pre_regex(pre: &str) -> Option<&'static str> {
    const GPT2: &str =
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "default" | "gpt-2" | "gpt2" | "olmo" | "mpt" => GPT2,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => LLAMA3,
        "qwen2" | "deepseek-r1-qwen" => QWEN2,
        _ => return None,
    })
}

/// Rebuilds the tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata as a `tokenizers`
/// tokenizer, so a lone `.gguf` runs with text prompts. `Ok(None)` if the file has no vocabulary.
///
/// Supported: byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) with the pre-tokenizers of
/// the GPT-2, Llama 3 and Qwen2 families. SentencePiece vocabularies (`"llama"`) get an error that
/// suggests `--tokenizer`.
pub fn from_gguf(f: &crate::GgufFile) -> Result<Option<Tokenizer>> {
    use serde_json::{json, Map, Value as J};
    let path = f.path();
    let err = |msg: String| LoaderError::Tokenizer {
        path: path.to_owned(),
        msg,
    };
    let Some(model) = f.get("tokenizer.ggml.model") else {
        return Ok(None);
    };
    let model = model
        .as_str()
        .ok_or_else(|| err("tokenizer.ggml.model is not a string".into()))?;
    if model != "gpt2" {
        return Err(err(format!(
            "vocabulary type `{model}` is not supported yet (only byte-level BPE, `gpt2`); pass a tokenizer.json with --tokenizer"
        )));
    }
    let strings = |key: &str| -> Result<&[String]> {
        f.get(key)
            .and_then(|v| v.as_array())
            .and_then(|a| a.as_strings())
            .ok_or_else(|| err(format!("{key} is missing or not a list of strings")))
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types = f
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .and_then(|a| a.to_i64s());
    let pre = f
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let regex = pre_regex(pre).ok_or_else(|| {
        err(format!(
            "pre-tokenizer `{pre}` is not supported (gpt-2, llama-bpe, qwen2 families); pass a tokenizer.json with --tokenizer"
        ))
    })?;

    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        if vocab.insert(t.clone(), J::from(id)).is_some() {
            return Err(err(format!(
                "token `{t}` appears twice in tokenizer.ggml.tokens"
            )));
        }
        // CONTROL (3) and USER_DEFINED (4) tokens are matched whole, before the BPE model.
        let ty = types.as_ref().and_then(|v| v.get(id)).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(
                json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == 3}),
            );
        }
    }
    let merges: Vec<J> = merges
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(err(format!(
                "merge `{m}` is not two tokens separated by a space"
            ))),
        })
        .collect::<Result<_>>()?;

    let add_bos = f
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let bos = f
        .get("tokenizer.ggml.bos_token_id")
        .and_then(|v| v.as_u64())
        .and_then(|id| tokens.get(id as usize).map(|t| (id, t.clone())));
    let post = match (add_bos, bos) {
        (true, Some((id, tok))) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tok.clone(): {"id": tok, "ids": [id], "tokens": [tok]}}
        }),
        _ => J::Null,
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": pre_regex(pre) == pre_regex("llama-bpe"),
                  "vocab": vocab, "merges": merges}
    });
    let text = spec.to_string();
    text.parse::<Tokenizer>()
        .map(Some)
        .map_err(|e| err(format!("building the tokenizer from GGUF metadata: {e}")))
}
