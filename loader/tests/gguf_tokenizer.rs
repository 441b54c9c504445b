//! A byte-level BPE vocabulary stored in GGUF metadata (as llama.cpp's converter writes it) rebuilt as a
//! tokenizer encodes exactly like the tokenizer.json it came from.

use std::path::Path;

use cosmoe_loader::{tokenizer, Bytes, GgufFile};

/// Minimal GGUF v3 writer for metadata-only files.
enum Kv {
    Str(String),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

fn gguf(kvs: &[(&str, Kv)]) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        s(&mut out, k);
        match v {
            Kv::Str(x) => {
                out.extend(8u32.to_le_bytes());
                s(&mut out, x);
            }
            Kv::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Kv::Bool(x) => {
                out.extend(7u32.to_le_bytes());
                out.push(*x as u8);
            }
            Kv::Strs(xs) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((xs.len() as u64).to_le_bytes());
                xs.iter().for_each(|x| s(&mut out, x));
            }
            Kv::I32s(xs) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((xs.len() as u64).to_le_bytes());
                xs.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
        }
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out
}

fn fixture_tokenizer() -> (tokenizer::Tokenizer, serde_json::Value) {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden/llama/tokenizer.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    (tokenizer::load(&p).unwrap(), json)
}

/// The metadata llama.cpp's converter writes for this tokenizer (tokens by id, "a b" merges, CONTROL
/// type for special added tokens).
fn metadata(json: &serde_json::Value, pre: &str, add_bos: bool) -> Vec<(&'static str, Kv)> {
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let special: Vec<u64> = json["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["special"].as_bool() == Some(true))
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    let types = (0..tokens.len() as u64)
        .map(|i| if special.contains(&i) { 3 } else { 1 })
        .collect();
    let merges = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            m => format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()),
        })
        .collect();
    vec![
        ("general.architecture", Kv::Str("llama".into())),
        ("tokenizer.ggml.model", Kv::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Kv::Str(pre.into())),
        ("tokenizer.ggml.tokens", Kv::Strs(tokens)),
        ("tokenizer.ggml.token_type", Kv::I32s(types)),
        ("tokenizer.ggml.merges", Kv::Strs(merges)),
        ("tokenizer.ggml.bos_token_id", Kv::U32(0)),
        ("tokenizer.ggml.add_bos_token", Kv::Bool(add_bos)),
    ]
}

fn parse(bytes: Vec<u8>) -> GgufFile {
    GgufFile::parse(Bytes::from_vec(bytes), Path::new("test.gguf")).unwrap()
}

const TEXTS: [&str; 6] = [
    "The router chooses a few experts for every token.",
    "Hello world! The cat sat on the old mill wall, 42 times in 2024.",
    "  spaces,\ttabs and\nnew lines; unusual words like zyxwvut and émigré café.",
    "<|endoftext|>special in the middle<|endoftext|>",
    "",
    "naïve ünïcödé — and emoji 🙂 bytes",
];

#[test]
fn gpt2_vocabulary_round_trips() {
    let (reference, json) = fixture_tokenizer();
    let f = parse(gguf(&metadata(&json, "gpt-2", false)));
    let rebuilt = tokenizer::from_gguf(&f).unwrap().expect("a tokenizer");
    for text in TEXTS {
        let want = reference.encode(text, false).unwrap().get_ids().to_vec();
        let got = rebuilt.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "{text:?}");
        assert_eq!(
            rebuilt.decode(&got, false).unwrap(),
            reference.decode(&want, false).unwrap()
        );
    }
}

#[test]
fn add_bos_prepends_the_bos_token() {
    let (_, json) = fixture_tokenizer();
    let f = parse(gguf(&metadata(&json, "gpt-2", true)));
    let t = tokenizer::from_gguf(&f).unwrap().unwrap();
    let ids = t.encode("hello", true).unwrap().get_ids().to_vec();
    assert_eq!(ids[0], 0);
    assert!(ids.len() > 1);
}

#[test]
fn unsupported_vocabularies_are_clear_errors() {
    let (_, json) = fixture_tokenizer();
    let e =
        tokenizer::from_gguf(&parse(gguf(&metadata(&json, "some-new-model", false)))).unwrap_err();
    assert!(
        e.to_string().contains("some-new-model") && e.to_string().contains("--tokenizer"),
        "{e}"
    );

    let mut md = metadata(&json, "gpt-2", false);
    md[1].1 = Kv::Str("llama".into());
    let e = tokenizer::from_gguf(&parse(gguf(&md))).unwrap_err();
    assert!(
        e.to_string().contains("llama") && e.to_string().contains("test.gguf"),
        "{e}"
    );

    let no_vocab = parse(gguf(&[("general.architecture", Kv::Str("llama".into()))]));
    assert!(tokenizer::from_gguf(&no_vocab).unwrap().is_none());
}
