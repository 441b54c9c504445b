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

/// Rebuilds the tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata as a `tokenizers`
/// tokenizer, so a lone `.gguf` runs with text prompts. `Ok(None)` if the file has no vocabulary.
///
/// Supported `tokenizer.ggml.model`s:
///
/// * `"gpt2"`, BPE (`tokens` + `merges`), with every pre-tokenizer (`tokenizer.ggml.pre`) llama.cpp
///   knows, told at [`crate::pretokenize`]; `"gemma4"` is the same with the `gemma4` pre-tokenizer.
/// * `"llama"`, SentencePiece (Llama 2, Mistral, Mixtral, TinyLlama): `tokens`, f32 `scores`, optional
///   `token_type`, `bos/eos/unknown_token_id`, `add_bos_token` (default true), `add_eos_token` (default
///   false), `add_space_prefix` (default true). Encodes as llama.cpp's SPM tokenizer does (llama-vocab.cpp,
///   `llm_tokenizer_spm`, with special tokens parsed); how is told at `spm` below.
///
/// Any other type (`"bert"`, `"t5"`, `"rwkv"`...), and metadata that is missing, mistyped or of the wrong
/// length, is an error naming the key or type, never a panic.
pub fn from_gguf(f: &crate::GgufFile) -> Result<Option<Tokenizer>> {
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
    match model {
        "gpt2" => gpt2(f, None).map(Some),
        // llama.cpp: a Gemma 4 vocabulary is BPE with the gemma4 pre-tokenizer, whatever `pre` says.
        "gemma4" => gpt2(f, Some("gemma4")).map(Some),
        "llama" => spm(f).map(Some),
        _ => Err(err(format!(
            "vocabulary type `{model}` is not supported (only BPE, `gpt2` or `gemma4`, and SentencePiece, `llama`); pass a tokenizer.json with --tokenizer"
        ))),
    }
}

/// `tokenizer.ggml.model = "gpt2"` (or `"gemma4"`, with `pre` forced): BPE, as llama.cpp's
/// `llm_tokenizer_bpe` encodes.
///
/// * pre-tokenizer: llama.cpp's regexes for `tokenizer.ggml.pre` ([`crate::pretokenize`]; none means
///   `default`), each a `Split` (behaviour `Isolated`) of the pieces of the one before, then the GPT-2
///   byte mapping (`ByteLevel` without its own regex) unless the type keeps raw UTF-8;
/// * normalizer: ' ' to '▁' for the types that escape whitespace (Gemma 4, Sarvam);
/// * model: BPE over `merges`, `ignore_merges` where llama.cpp sets it; `<0xXX>` byte fallback for the
///   raw UTF-8 types;
/// * added tokens: CONTROL (special) and USER_DEFINED tokens, matched whole on the raw text;
/// * post-processor: BOS if `tokenizer.ggml.add_bos_token` (default: llama.cpp's for the pre type).
fn gpt2(f: &crate::GgufFile, force_pre: Option<&str>) -> Result<Tokenizer> {
    use serde_json::{json, Map, Value as J};
    let path = f.path();
    let err = |msg: String| LoaderError::Tokenizer {
        path: path.to_owned(),
        msg,
    };
    let strings = |key: &str| -> Result<&[String]> {
        f.get(key)
            .and_then(|v| v.as_array())
            .and_then(|a| a.as_strings())
            .ok_or_else(|| err(format!("{key} is missing or not a list of strings")))
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let types = f
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .and_then(|a| a.to_i64s());
    // llama.cpp: no name, or an empty one, is `default`.
    let pre_name = match force_pre {
        Some(p) => p,
        None => match f.get("tokenizer.ggml.pre") {
            None => "default",
            Some(v) => v
                .as_str()
                .ok_or_else(|| err("tokenizer.ggml.pre is not a string".into()))?,
        },
    };
    let pre_name = if pre_name.is_empty() {
        "default"
    } else {
        pre_name
    };
    let pre = crate::pretokenize::lookup(pre_name).ok_or_else(|| {
        err(format!(
            "pre-tokenizer `{pre_name}` is not supported (it is none of those llama.cpp knows); pass a tokenizer.json with --tokenizer"
        ))
    })?;
    let byte_encode = pre.kind.byte_encode;
    // llama.cpp lets a Kimi-K2 vocabulary go without merges.
    let merges: &[String] = match f.get("tokenizer.ggml.merges") {
        None if pre.name == "kimi-k2" => &[],
        _ => strings("tokenizer.ggml.merges")?,
    };

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

    let add_bos = match f.get("tokenizer.ggml.add_bos_token") {
        None => pre.add_bos,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| err("tokenizer.ggml.add_bos_token is not a bool".into()))?,
    } || pre.forces_bos();
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

    let mut pretokenizers: Vec<J> = pre
        .kind
        .regexes
        .iter()
        .map(|re| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false}))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    if byte_encode {
        pretokenizers.push(byte_level.clone());
    }
    let normalizer = match pre.escape_whitespaces {
        true => json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}),
        false => J::Null,
    };
    let decoder = match (byte_encode, pre.escape_whitespaces) {
        (true, _) => byte_level,
        (false, escaped) => {
            let mut steps = Vec::new();
            if escaped {
                steps.push(
                    json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                );
            }
            steps.push(json!({"type": "ByteFallback"}));
            steps.push(json!({"type": "Fuse"}));
            json!({"type": "Sequence", "decoders": steps})
        }
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretokenizers},
        "post_processor": post,
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": !byte_encode,
                  "ignore_merges": pre.ignore_merges,
                  "vocab": vocab, "merges": merges}
    });
    let text = spec.to_string();
    text.parse::<Tokenizer>()
        .map_err(|e| err(format!("building the tokenizer from GGUF metadata: {e}")))
}

/// `tokenizer.ggml.token_type` values (llama.h `llama_token_type`) that matter here.
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// `tokenizer.ggml.model = "llama"`: a SentencePiece vocabulary, rebuilt to encode as llama.cpp does.
///
/// llama.cpp (llama-vocab.cpp, `llm_tokenizer_spm_session::tokenize`) prepends a space to the text
/// (`add_space_prefix`), replaces every ' ' by U+2581 '▁', splits it into UTF-8 characters and then keeps
/// merging the adjacent pair whose concatenation is a token with the highest score (ties: the leftmost
/// pair); a character that is no token becomes its `<0xXX>` byte tokens. Control, unknown and
/// user-defined tokens are cut out of the text first, and the text after each one gets the space prefix
/// again.
///
/// That is a BPE whose merges are all pairs (a, b) of tokens with a + b a token, ranked by the score of
/// a + b (transformers' `LlamaConverter` builds a tokenizer.json from a tokenizer.model the same way), so
/// the rebuild is
///
/// * model: BPE over those merges, byte fallback, the unknown token; no pre-tokenizer (the text between
///   added tokens is one word, as in llama.cpp);
/// * normalizer: Prepend("▁") if add_space_prefix (it runs on each piece between added tokens), then
///   Replace(" ", "▁");
/// * added tokens: the control and unknown tokens (special) and the user-defined ones, matched on the raw
///   text (llama-tokenize's default, special tokens parsed);
/// * post-processor: BOS and EOS as `add_bos_token` and `add_eos_token` ask;
/// * decoder: Replace("▁", " "), ByteFallback, Fuse, and Strip of one leading space if add_space_prefix.
///
/// One difference remains: of two merges into different tokens of equal score, the one with the lower
/// id wins here and the leftmost one in llama.cpp. SentencePiece gives every normal piece its own score,
/// so this does not arise in trained vocabularies.
fn spm(f: &crate::GgufFile) -> Result<Tokenizer> {
    use std::collections::HashMap;

    use serde_json::{json, Map, Value as J};
    use tokenizers::decoders::{
        byte_fallback::ByteFallback, fuse::Fuse, sequence::Sequence as DecoderSequence,
        strip::Strip, DecoderWrapper,
    };
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence};
    use tokenizers::processors::PostProcessorWrapper;
    use tokenizers::AddedToken;

    let path = f.path();
    let err = |msg: String| LoaderError::Tokenizer {
        path: path.to_owned(),
        msg,
    };
    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .and_then(|a| a.as_strings())
        .ok_or_else(|| err("tokenizer.ggml.tokens is missing or not a list of strings".into()))?;
    let n = tokens.len();
    if u32::try_from(n).is_err() {
        return Err(err(format!("{n} tokens do not fit u32 ids")));
    }
    let scores = f
        .get("tokenizer.ggml.scores")
        .ok_or_else(|| {
            err("tokenizer.ggml.scores is missing (SentencePiece merges by score)".into())
        })?
        .as_array()
        .and_then(|a| match (a.as_f32s(), a.as_i32s()) {
            (Some(s), _) => Some(s.to_vec()),
            // llama.cpp also reads i32 scores.
            (_, Some(s)) => Some(s.iter().map(|&s| s as f32).collect::<Vec<f32>>()),
            _ => None,
        })
        .ok_or_else(|| err("tokenizer.ggml.scores is not a list of f32".into()))?;
    if scores.len() != n {
        return Err(err(format!(
            "tokenizer.ggml.scores has {} entries for {n} tokens",
            scores.len()
        )));
    }
    let types = match f.get("tokenizer.ggml.token_type") {
        None => vec![TYPE_NORMAL; n],
        Some(v) => v
            .as_array()
            .and_then(|a| a.to_i64s())
            .filter(|t| t.len() == n)
            .ok_or_else(|| {
                err(format!(
                    "tokenizer.ggml.token_type is not a list of {n} integers"
                ))
            })?,
    };

    // As llama.cpp: an empty token is renamed, a repeated one is an error.
    let texts: Vec<String> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| match t.is_empty() {
            true => format!("[EMPTY_{id}]"),
            false => t.clone(),
        })
        .collect();
    let mut ids: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (id, t) in (0u32..).zip(&texts) {
        if ids.insert(t, id).is_some() {
            return Err(err(format!(
                "token `{t}` appears twice in tokenizer.ggml.tokens"
            )));
        }
    }

    // Every split of every token into two tokens is a merge, ranked by the whole token's score (highest
    // first), then by ids, as transformers' SentencePieceExtractor orders them.
    let mut ranked: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, t) in (0u32..).zip(&texts) {
        for (i, _) in t.char_indices().skip(1) {
            if let (Some(&a), Some(&b)) = (ids.get(&t[..i]), ids.get(&t[i..])) {
                ranked.push((scores[id as usize], id, a, b));
            }
        }
    }
    ranked.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then_with(|| (x.1, x.2, x.3).cmp(&(y.1, y.2, y.3)))
    });
    let merges = ranked
        .iter()
        .map(|&(_, _, a, b)| (texts[a as usize].clone(), texts[b as usize].clone()))
        .collect();

    let flag = |key: &str, default: bool| -> Result<bool> {
        match f.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| err(format!("{key} is not a bool"))),
        }
    };
    // llama.cpp's defaults for "llama" vocabularies: <unk> 0, <s> 1, </s> 2.
    let special = |key: &str, default: usize| -> Result<Option<usize>> {
        match f.get(key) {
            None => Ok(Some(default).filter(|&id| id < n)),
            Some(v) => match v.as_u64().and_then(|id| usize::try_from(id).ok()) {
                Some(id) if id < n => Ok(Some(id)),
                _ => Err(err(format!("{key} = {v} is not a token id below {n}"))),
            },
        }
    };
    let add_space_prefix = flag("tokenizer.ggml.add_space_prefix", true)?;
    let add_bos = flag("tokenizer.ggml.add_bos_token", true)?;
    let add_eos = flag("tokenizer.ggml.add_eos_token", false)?;
    let unk = special("tokenizer.ggml.unknown_token_id", 0)?;
    let bos = match add_bos {
        true => Some(special("tokenizer.ggml.bos_token_id", 1)?.ok_or_else(|| {
            err("add_bos_token is set but the vocabulary has no BOS token".into())
        })?),
        false => None,
    };
    let eos = match add_eos {
        true => Some(special("tokenizer.ggml.eos_token_id", 2)?.ok_or_else(|| {
            err("add_eos_token is set but the vocabulary has no EOS token".into())
        })?),
        false => None,
    };

    let vocab: Vocab = (0u32..)
        .zip(&texts)
        .map(|(id, t)| (t.clone(), id))
        .collect();
    let mut model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        model = model.unk_token(texts[unk].clone());
    }
    let model = model
        .build()
        .map_err(|e| err(format!("building the SentencePiece model: {e}")))?;
    let mut tokenizer = Tokenizer::new(model);

    let tokenizers_err = |e: tokenizers::Error| err(format!("building the tokenizer: {e}"));
    let spaces = Replace::new(" ", "▁").map_err(tokenizers_err)?;
    let normalizer: NormalizerWrapper = match add_space_prefix {
        true => Sequence::new(vec![Prepend::new("▁".into()).into(), spaces.into()]).into(),
        false => spaces.into(),
    };
    tokenizer.with_normalizer(Some(normalizer));

    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ").map_err(tokenizers_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));

    let added = |wanted: &[i64], special: bool| -> Vec<AddedToken> {
        (0..n)
            .filter(|&id| wanted.contains(&types[id]))
            .map(|id| AddedToken::from(texts[id].clone(), special).normalized(false))
            .collect()
    };
    tokenizer.add_special_tokens(&added(&[TYPE_CONTROL, TYPE_UNKNOWN], true));
    tokenizer.add_tokens(&added(&[TYPE_USER_DEFINED], false));

    if bos.is_some() || eos.is_some() {
        let part = |seq: &str, type_id: u32| -> Vec<J> {
            let token = |id: usize| json!({"SpecialToken": {"id": texts[id], "type_id": type_id}});
            let mut part: Vec<J> = bos.map(token).into_iter().collect();
            part.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
            part.extend(eos.map(token));
            part
        };
        let special_tokens: Map<String, J> = bos
            .iter()
            .chain(&eos)
            .map(|&id| {
                let t = &texts[id];
                (t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}))
            })
            .collect();
        let pair = [part("A", 0), part("B", 1)].concat();
        let spec = json!({
            "type": "TemplateProcessing",
            "single": part("A", 0),
            "pair": pair,
            "special_tokens": special_tokens,
        });
        let post: PostProcessorWrapper = serde_json::from_value(spec)
            .map_err(|e| err(format!("building the post-processor: {e}")))?;
        tokenizer.with_post_processor(Some(post));
    }
    Ok(tokenizer)
}
