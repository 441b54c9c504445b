//! A Hugging Face `tokenizer.json` as the `tokenizer.ggml.*` metadata of a GGUF file, with the keys,
//! types and conventions of llama.cpp's converter (docs/llama-cpp-gguf-notes.md, section 8):
//!
//! - byte-level BPE (GPT-2, Llama 3, Qwen2/3, OLMoE...): `model = "gpt2"`, the tokens in id order, the
//!   merges as `"a b"` strings, and `pre` named after the pre-tokenizer's split regex (llama.cpp picks the
//!   regex by that name, so only those it knows are accepted: `gpt-2`, `llama-bpe`, `qwen2`);
//! - BPE with byte fallback (Llama 2, Mistral, Mixtral, TinyLlama): `model = "llama"` (SentencePiece
//!   style), with each token's score the negated rank of the merge that makes it, so llama.cpp's
//!   highest-score-first merging replays the merges in order.
//!
//! The list is padded with `[PAD{i}]` tokens (type UNUSED) to the model's vocabulary size, since llama.cpp
//! sizes the embedding by the token count. Added tokens are CONTROL when special, else USER_DEFINED.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as J;

use crate::gguf::{Array, Value};
use crate::{LoaderError, Result};

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// What the model (config.json) says about its vocabulary.
#[derive(Clone, Debug, Default)]
pub struct VocabInfo {
    /// Rows of the embedding: the token list is padded to this length.
    pub vocab_size: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// The `tokenizer.ggml.*` keys for `tokenizer_json` (with `tokenizer_config.json` beside it read for the
/// special tokens and the add-BOS/EOS flags, where present).
pub fn gguf_vocab(tokenizer_json: &Path, info: &VocabInfo) -> Result<Vec<(String, Value)>> {
    let err = |msg: String| LoaderError::Tokenizer {
        path: tokenizer_json.to_owned(),
        msg,
    };
    let text = std::fs::read_to_string(tokenizer_json).map_err(|e| LoaderError::Io {
        path: tokenizer_json.to_owned(),
        err: e,
    })?;
    let t: J = serde_json::from_str(&text).map_err(|e| LoaderError::Json {
        path: tokenizer_json.to_owned(),
        err: e,
    })?;
    let config: Option<J> = tokenizer_json
        .parent()
        .map(|d| d.join("tokenizer_config.json"))
        .filter(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str(&s).ok());

    let model = &t["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(err(format!(
            "tokenizer model {} cannot be written to GGUF yet (BPE only)",
            model["type"]
        )));
    }
    let byte_fallback = model["byte_fallback"].as_bool().unwrap_or(false);
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| err("model.vocab is not an object".into()))?;

    // Tokens by id: the model's vocabulary, then the added tokens.
    let mut by_id: HashMap<u32, (String, i32)> = HashMap::new();
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| err(format!("token {tok:?} has a bad id {id}")))?;
        let ty = if byte_fallback && is_byte_token(tok) {
            BYTE
        } else {
            NORMAL
        };
        by_id.insert(id, (tok.clone(), ty));
    }
    let mut specials: HashMap<String, u32> = HashMap::new();
    for a in t["added_tokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
            return Err(err(format!("malformed added token {a}")));
        };
        let id = u32::try_from(id).map_err(|_| err(format!("added token id {id}")))?;
        let special = a["special"].as_bool().unwrap_or(false);
        let ty = if special { CONTROL } else { USER_DEFINED };
        specials.insert(content.to_owned(), id);
        by_id.insert(id, (content.to_owned(), ty));
    }
    let max_id = by_id.keys().max().copied().unwrap_or(0) as usize;
    if max_id >= info.vocab_size {
        return Err(err(format!(
            "token id {max_id} is outside the model's vocabulary of {} (config.json vocab_size)",
            info.vocab_size
        )));
    }
    let mut tokens = Vec::with_capacity(info.vocab_size);
    let mut types = Vec::with_capacity(info.vocab_size);
    for i in 0..info.vocab_size {
        match by_id.remove(&(i as u32)) {
            Some((tok, ty)) => {
                tokens.push(tok);
                types.push(ty);
            }
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = tokens.iter().find(|t| !seen.insert(t.as_str())) {
        return Err(err(format!(
            "token {dup:?} appears twice (llama.cpp needs unique tokens)"
        )));
    }

    let merges = merges(model).map_err(err)?;

    let mut kv: Vec<(String, Value)> = Vec::new();
    let mut set = |k: &str, v: Value| kv.push((format!("tokenizer.ggml.{k}"), v));
    if byte_fallback {
        // SentencePiece style: merged tokens scored by merge rank, highest first.
        let index: HashMap<&str, usize> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut scores = vec![0f32; tokens.len()];
        for (rank, m) in merges.iter().enumerate() {
            if let Some((a, b)) = m.split_once(' ') {
                if let Some(&i) = index.get(format!("{a}{b}").as_str()) {
                    if scores[i] == 0.0 {
                        scores[i] = -(rank as f32) - 1.0;
                    }
                }
            }
        }
        for (s, &ty) in scores.iter_mut().zip(&types) {
            if ty == CONTROL || ty == USER_DEFINED || ty == UNUSED {
                *s = -1000.0;
            }
        }
        set("model", Value::String("llama".into()));
        set("pre", Value::String("default".into()));
        set("tokens", Value::Array(Array::String(tokens)));
        set("scores", Value::Array(Array::F32(scores)));
        set("token_type", Value::Array(Array::I32(types)));
        let prefix = add_prefix_space(&t);
        set("add_space_prefix", Value::Bool(prefix));
    } else {
        let pre = pre_name(&t["pre_tokenizer"]).map_err(err)?;
        set("model", Value::String("gpt2".into()));
        set("pre", Value::String(pre.into()));
        set("tokens", Value::Array(Array::String(tokens)));
        set("token_type", Value::Array(Array::I32(types)));
        set("merges", Value::Array(Array::String(merges)));
    }

    // Special tokens: tokenizer_config.json's strings looked up among the added tokens (as the
    // converter does), else config.json's ids.
    let special_id = |key: &str| -> Option<u32> {
        let v = config.as_ref()?.get(key)?;
        let s = v
            .as_str()
            .or_else(|| v.get("content").and_then(J::as_str))?;
        specials
            .get(s)
            .copied()
            .or_else(|| vocab.get(s).and_then(J::as_u64).map(|i| i as u32))
    };
    if let Some(id) = special_id("bos_token").or(info.bos_token_id) {
        set("bos_token_id", Value::U32(id));
    }
    if let Some(id) = special_id("eos_token").or(info.eos_token_id) {
        set("eos_token_id", Value::U32(id));
    }
    if let Some(id) = special_id("unk_token") {
        set("unknown_token_id", Value::U32(id));
    }
    if let Some(id) = special_id("pad_token") {
        set("padding_token_id", Value::U32(id));
    }
    let (bos, eos) = template_flags(&t["post_processor"]);
    let flag = |key: &str, default: bool| {
        config
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(J::as_bool)
            .unwrap_or(default)
    };
    set("add_bos_token", Value::Bool(flag("add_bos_token", bos)));
    set("add_eos_token", Value::Bool(flag("add_eos_token", eos)));
    if let Some(tpl) = config
        .as_ref()
        .and_then(|c| c.get("chat_template"))
        .and_then(J::as_str)
    {
        kv.push((
            "tokenizer.chat_template".into(),
            Value::String(tpl.to_owned()),
        ));
    }
    Ok(kv)
}

fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && u8::from_str_radix(&t[3..5], 16).is_ok()
}

/// Merges as `"a b"`, from either form tokenizer.json uses (strings, or `[a, b]` pairs, whose parts may
/// hold spaces: llama.cpp's converter writes those as U+0120, the byte-level symbol of a space).
fn merges(model: &J) -> Result<Vec<String>, String> {
    let Some(list) = model["merges"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|m| match m {
            J::String(s) => Ok(s.clone()),
            J::Array(p) => match (p.first().and_then(J::as_str), p.get(1).and_then(J::as_str)) {
                (Some(a), Some(b)) if p.len() == 2 => Ok(format!(
                    "{} {}",
                    a.replace(' ', "\u{120}"),
                    b.replace(' ', "\u{120}")
                )),
                _ => Err(format!("malformed merge {m}")),
            },
            _ => Err(format!("malformed merge {m}")),
        })
        .collect()
}

/// The llama.cpp pre-tokenizer name whose regex this tokenizer's pre-tokenizer uses.
fn pre_name(pre: &J) -> Result<&'static str, String> {
    let byte_level_regex =
        |p: &J| p["type"] == "ByteLevel" && p["use_regex"].as_bool() != Some(false);
    if byte_level_regex(pre) {
        return Ok("gpt-2");
    }
    let parts: Vec<&J> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default(),
        _ => vec![pre],
    };
    for p in &parts {
        if p["type"] == "Split" {
            if let Some(re) = p["pattern"]["Regex"].as_str() {
                for name in ["gpt-2", "llama-bpe", "qwen2"] {
                    if crate::pretokenize::tokenizer_json_regex(name) == Some(re) {
                        return Ok(name);
                    }
                }
                return Err(format!(
                    "pre-tokenizer regex {re:?} is none of those llama.cpp knows by name (gpt-2, llama-bpe, qwen2)"
                ));
            }
        }
        if byte_level_regex(p) {
            return Ok("gpt-2");
        }
    }
    Err(format!("unsupported pre-tokenizer {pre}"))
}

/// Whether a SentencePiece-style tokenizer prepends "▁" (a `Prepend` normaliser or a `Metaspace`
/// pre-tokenizer with a prepend scheme).
fn add_prefix_space(t: &J) -> bool {
    let norm = t["normalizer"].to_string();
    let pre = &t["pre_tokenizer"];
    norm.contains("\"Prepend\"")
        || (pre["type"] == "Metaspace" && pre["prepend_scheme"].as_str() != Some("never"))
}

/// Whether the post-processor adds a special token before / after a single sequence.
fn template_flags(pp: &J) -> (bool, bool) {
    let procs: Vec<&J> = match pp["type"].as_str() {
        Some("Sequence") => pp["processors"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default(),
        _ => vec![pp],
    };
    for p in procs {
        if p["type"] == "TemplateProcessing" {
            if let Some(single) = p["single"].as_array() {
                let special = |x: Option<&J>| x.is_some_and(|x| x.get("SpecialToken").is_some());
                return (special(single.first()), special(single.last()));
            }
        }
    }
    (false, false)
}
