//! Every pre-tokenizer llama.cpp knows (`tokenizer.ggml.pre`) encodes a BPE vocabulary as llama.cpp
//! does: for each name, the vocabularies in tests/fixtures/pretok/ (trimmed Llama 3.1 and Qwen3
//! byte-level vocabularies, and a raw UTF-8 one for the pre types that keep raw UTF-8) with that name
//! patched in, rebuilt by `tokenizer::from_gguf`, give llama-tokenize's ids (cases.json, made by
//! make_pretok_fixtures.py) for every test string; and the pieces its normalizer and pre-tokenizer cut
//! each string into are those of llama.cpp's `unicode_regex_split` for the name's pre type.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cosmoe_loader::gguf::Value;
use cosmoe_loader::{pretokenize, tokenizer, Bytes, GgufFile, GgufWriter};

/// llama.cpp's `tokenizer.ggml.pre` names (llama-vocab.cpp of llama-cpp-python 0.3.36,
/// `llama_vocab::impl::load`), in its order.
const LLAMA_CPP_NAMES: [&str; 91] = [
    "default",
    "minicpm5",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "spark2_5",
    "youtu",
    "falcon",
    "mpt",
    "starcoder",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "modern-bert",
    "jais-2",
    "gemma4",
    "granite-embed-multi-311m",
    "sarvam-moe",
    "jina-v1-en",
    "jina-v2-code",
    "roberta-bpe",
    "whitespace",
    "refact",
    "command-r",
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "qwen35",
    "stablelm2",
    "olmo",
    "dbrx",
    "smaug-bpe",
    "poro-chat",
    "chatglm-bpe",
    "glm4",
    "glm5",
    "viking",
    "jais",
    "tekken",
    "smollm",
    "codeshell",
    "bloom",
    "gpt3-finnish",
    "exaone",
    "exaone4",
    "exaone-moe",
    "chameleon",
    "minerva-7b",
    "megrez",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "granite-embed-multi-97m",
    "tiny_aya",
    "cohere2moe",
    "superbpe",
    "trillion",
    "granite-docling",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "hunyuan",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "kimi-k2",
    "ufakzeka",
    "grok-2",
    "afmoe",
    "laguna",
    "minimax-m2",
    "solar-open",
    "mellum2",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pretok")
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

/// `file` with some metadata replaced, re-serialised and parsed back.
fn patched(file: &GgufFile, set: &[(&str, &str)]) -> GgufFile {
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        w.set(k, v.clone());
    }
    for (k, v) in set {
        w.set(k, Value::String((*v).into()));
    }
    let mut out = Vec::new();
    let name = Path::new("patched.gguf");
    w.write(name, &mut out, |_, _, _| Ok(())).unwrap();
    GgufFile::parse(Bytes::from_vec(out), name).unwrap()
}

#[test]
fn every_llama_cpp_pre_name_is_known() {
    let doc = cases();
    let names: Vec<&str> = doc["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    // The fixture read its list from llama-vocab.cpp; this copy keeps the test honest without it.
    assert_eq!(names, LLAMA_CPP_NAMES);
    for name in LLAMA_CPP_NAMES {
        assert!(
            pretokenize::lookup(name).is_some(),
            "llama.cpp's pre-tokenizer `{name}` is not in the table"
        );
    }
    let ours: Vec<&str> = pretokenize::PRE_TOKENIZERS.iter().map(|p| p.name).collect();
    assert_eq!(
        ours, LLAMA_CPP_NAMES,
        "the table has other names than llama.cpp"
    );
    let raw: Vec<&str> = pretokenize::PRE_TOKENIZERS
        .iter()
        .filter(|p| !p.kind.byte_encode)
        .map(|p| p.name)
        .collect();
    assert_eq!(doc["raw_names"], serde_json::json!(raw));
}

#[test]
fn every_pre_tokenizer_encodes_like_llama_cpp() {
    let doc = cases();
    let strings: Vec<&str> = doc["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let sequences: Vec<Vec<u32>> = doc["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut aborted = 0;
    for run in doc["runs"].as_array().unwrap() {
        let vocab = run["vocab"].as_str().unwrap();
        let model = run["model"].as_str().unwrap();
        let file = GgufFile::open(&dir().join(vocab)).unwrap();
        // None: llama-tokenize aborted (the `whitespace` pre-tokenizer on a `gpt2` vocabulary with
        // a run of spaces; see make_pretok_fixtures.py).
        let refs: Vec<Option<usize>> = run["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().map(|i| i as usize))
            .collect();
        assert_eq!(refs.len(), strings.len());
        for pre in run["pre"].as_array().unwrap() {
            let pre = pre.as_str().unwrap();
            if model == "gpt2" {
                covered.insert(pre);
            }
            let f = patched(
                &file,
                &[("tokenizer.ggml.pre", pre), ("tokenizer.ggml.model", model)],
            );
            let t = tokenizer::from_gguf(&f)
                .unwrap_or_else(|e| panic!("{vocab} {pre}: {e}"))
                .expect("a tokenizer");
            for (text, &r) in strings.iter().zip(&refs) {
                let Some(r) = r else {
                    assert_eq!(pre, "whitespace", "{text:?}");
                    aborted += 1;
                    continue;
                };
                let want = &sequences[r];
                let got = t.encode(*text, true).unwrap().get_ids().to_vec();
                checked += 1;
                if &got != want {
                    failures.push(format!(
                        "{vocab} model {model} pre {pre} {text:?}:\n  llama.cpp {want:?}\n  ours      {got:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} encodings differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every llama.cpp name was run on at least one vocabulary.
    let all: BTreeSet<&str> = LLAMA_CPP_NAMES.into_iter().collect();
    assert_eq!(covered, all);
    assert!(checked > 7000, "{checked}");
    assert!(aborted < 20, "{aborted}");
}

/// The pieces our tokenizer's normalizer and pre-tokenizer cut `text` into (GPT-2 byte-encoded for
/// the byte-level types), as llama.cpp's BPE merges would see them.
fn pieces(t: &tokenizer::Tokenizer, text: &str) -> Vec<String> {
    use tokenizers::{Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
    let mut pts = PreTokenizedString::from(text);
    if let Some(n) = t.get_normalizer() {
        pts.normalize(|s| n.normalize(s)).unwrap();
    }
    t.get_pre_tokenizer()
        .expect("a pre-tokenizer")
        .pre_tokenize(&mut pts)
        .unwrap();
    pts.get_splits(OffsetReferential::Normalized, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_string())
        .collect()
}

#[test]
fn every_pre_tokenizer_splits_like_llama_cpp() {
    let doc = cases();
    let strings: Vec<&str> = doc["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let lists: Vec<Vec<&str>> = doc["piece_lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect()
        })
        .collect();
    let file = GgufFile::open(&dir().join("qwen3.gguf")).unwrap();
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in doc["pieces"].as_array().unwrap() {
        let kind = entry["type"].as_str().unwrap();
        let refs: Vec<usize> = entry["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        for name in entry["names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert_eq!(pretokenize::lookup(name).unwrap().kind.name, kind, "{name}");
            covered.insert(name);
            let t = tokenizer::from_gguf(&patched(&file, &[("tokenizer.ggml.pre", name)]))
                .unwrap()
                .unwrap();
            for (text, &r) in strings.iter().zip(&refs) {
                checked += 1;
                let got = pieces(&t, text);
                if got != lists[r] {
                    failures.push(format!(
                        "{name} ({kind}) {text:?}:\n  llama.cpp {:?}\n  ours      {got:?}",
                        lists[r]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} pre-tokenizations differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let all: BTreeSet<&str> = LLAMA_CPP_NAMES.into_iter().collect();
    assert_eq!(covered, all);
}

#[test]
fn unknown_pre_names_stay_errors_naming_them() {
    let file = GgufFile::open(&dir().join("llama3.gguf")).unwrap();
    for name in ["smaug", "gpt2", "llama-3", "Qwen2"] {
        let e = tokenizer::from_gguf(&patched(&file, &[("tokenizer.ggml.pre", name)])).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains(&format!("`{name}`")) && e.contains("--tokenizer"),
            "{e}"
        );
    }
    // As in llama.cpp, an empty name is `default`, and so is none.
    let text = "Hello, world! 1234567 naïve";
    let default = tokenizer::from_gguf(&patched(&file, &[("tokenizer.ggml.pre", "default")]))
        .unwrap()
        .unwrap();
    let want = default.encode(text, true).unwrap().get_ids().to_vec();
    let empty = tokenizer::from_gguf(&patched(&file, &[("tokenizer.ggml.pre", "")]))
        .unwrap()
        .unwrap();
    assert_eq!(empty.encode(text, true).unwrap().get_ids(), want);
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        if k != "tokenizer.ggml.pre" {
            w.set(k, v.clone());
        }
    }
    let mut out = Vec::new();
    w.write(Path::new("nopre.gguf"), &mut out, |_, _, _| Ok(()))
        .unwrap();
    let none = GgufFile::parse(Bytes::from_vec(out), Path::new("nopre.gguf")).unwrap();
    let none = tokenizer::from_gguf(&none).unwrap().unwrap();
    assert_eq!(none.encode(text, true).unwrap().get_ids(), want);
}
