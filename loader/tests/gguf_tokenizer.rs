//! A byte-level BPE vocabulary stored in GGUF metadata (as llama.cpp's converter writes it) rebuilt as a
//! tokenizer encodes exactly like the tokenizer.json it came from; a SentencePiece one encodes exactly
//! like llama.cpp (tests/fixtures/gguf_spm/, made by make_spm_fixture.py).

use std::path::Path;

use cosmoe_loader::{tokenizer, Bytes, GgufFile};

/// Minimal GGUF v3 writer for metadata-only files.
enum Kv {
    Str(String),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

/// Metadata as writer input.
type Metadata = Vec<(&'static str, Kv)>;

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
            Kv::F32s(xs) => {
                out.extend(9u32.to_le_bytes());
                out.extend(6u32.to_le_bytes());
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
fn metadata(json: &serde_json::Value, pre: &str, add_bos: bool) -> Metadata {
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

    for model in ["bert", "rwkv", "t5"] {
        let mut md = metadata(&json, "gpt-2", false);
        md[1].1 = Kv::Str(model.into());
        let e = tokenizer::from_gguf(&parse(gguf(&md))).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains(&format!("`{model}`"))
                && e.contains("test.gguf")
                && e.contains("--tokenizer"),
            "{e}"
        );
    }

    let no_vocab = parse(gguf(&[("general.architecture", Kv::Str("llama".into()))]));
    assert!(tokenizer::from_gguf(&no_vocab).unwrap().is_none());
}

// ---- SentencePiece (`tokenizer.ggml.model = "llama"`) ----

fn spm_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf_spm")
}

/// spm.gguf (llama.cpp's converter's output for a small SentencePiece BPE model) and llama.cpp's ids
/// for it (spm_cases.json).
fn spm_fixture() -> (GgufFile, serde_json::Value) {
    let f = GgufFile::open(&spm_dir().join("spm.gguf")).unwrap();
    let cases = std::fs::read_to_string(spm_dir().join("spm_cases.json")).unwrap();
    (f, serde_json::from_str(&cases).unwrap())
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The `tokenizer.ggml.*` metadata of a file (and `general.architecture`).
fn tokenizer_metadata(f: &GgufFile) -> Metadata {
    use cosmoe_loader::gguf::Value;
    let keys = [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
    ];
    let mut md = vec![("general.architecture", Kv::Str("llama".into()))];
    for key in keys {
        let kv = match f.get(key).unwrap() {
            Value::String(s) => Kv::Str(s.clone()),
            Value::U32(x) => Kv::U32(*x),
            Value::Bool(b) => Kv::Bool(*b),
            Value::Array(a) => {
                if let Some(s) = a.as_strings() {
                    Kv::Strs(s.to_vec())
                } else if let Some(s) = a.as_f32s() {
                    Kv::F32s(s.to_vec())
                } else {
                    Kv::I32s(a.as_i32s().unwrap().to_vec())
                }
            }
            v => panic!("{key}: {v:?}"),
        };
        md.push((key, kv));
    }
    md
}

fn set(md: &mut Metadata, key: &'static str, kv: Kv) {
    md.retain(|(k, _)| *k != key);
    md.push((key, kv));
}

#[test]
fn spm_vocabulary_encodes_like_llama_cpp() {
    let (f, doc) = spm_fixture();
    let t = tokenizer::from_gguf(&f).unwrap().expect("a tokenizer");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        let got = t.encode(input, true).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "{input:?}");
        // llama.cpp adds <s> (add_bos_token) and nothing else.
        assert_eq!(want[0], 1, "{input:?}");
        let without_bos = t.encode(input, false).unwrap().get_ids().to_vec();
        assert_eq!(without_bos, want[1..], "{input:?}");

        // llama.cpp's detokenisation of the ids after <s> (special tokens rendered).
        let text = case["text"].as_str().unwrap();
        assert_eq!(t.decode(&want[1..], false).unwrap(), text, "{input:?}");
        if text == input {
            assert_eq!(t.decode(&got, true).unwrap(), input, "{input:?}");
        }
    }
}

#[test]
fn spm_without_space_prefix_and_with_eos_encodes_like_llama_cpp() {
    let (f, doc) = spm_fixture();
    let mut md = tokenizer_metadata(&f);
    let variant = doc["variant"].as_object().unwrap();
    let keys = [
        "tokenizer.ggml.add_space_prefix",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
    ];
    assert_eq!(variant.len(), keys.len());
    for key in keys {
        set(&mut md, key, Kv::Bool(variant[key].as_bool().unwrap()));
    }
    let t = tokenizer::from_gguf(&parse(gguf(&md))).unwrap().unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let want = ids_of(&case["variant_ids"]);
        assert_eq!(t.encode(input, true).unwrap().get_ids(), want, "{input:?}");
        assert_eq!(want.last(), Some(&2), "{input:?}");
    }
    // Rebuilt through the writer with its own flags, the file encodes like the original (so the
    // variant above differs from spm.gguf only in the three flags).
    let same = tokenizer::from_gguf(&parse(gguf(&tokenizer_metadata(&f))))
        .unwrap()
        .unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        assert_eq!(
            same.encode(input, true).unwrap().get_ids(),
            want,
            "{input:?}"
        );
    }
}

#[test]
fn malformed_spm_metadata_is_an_error() {
    let (f, _) = spm_fixture();
    let good = tokenizer_metadata(&f);
    let n = match &good
        .iter()
        .find(|(k, _)| *k == "tokenizer.ggml.tokens")
        .unwrap()
        .1
    {
        Kv::Strs(t) => t.len(),
        _ => unreachable!(),
    };
    let check = |edit: &dyn Fn(&mut Metadata), want: &[&str]| {
        let mut md = tokenizer_metadata(&f);
        edit(&mut md);
        let e = tokenizer::from_gguf(&parse(gguf(&md)))
            .err()
            .unwrap_or_else(|| panic!("no error, wanted {want:?}"))
            .to_string();
        assert!(e.contains("test.gguf"), "{e}");
        for w in want {
            assert!(e.contains(w), "{e} (wanted {w:?})");
        }
    };
    check(
        &|md| md.retain(|(k, _)| *k != "tokenizer.ggml.scores"),
        &["tokenizer.ggml.scores", "missing"],
    );
    check(
        &|md| set(md, "tokenizer.ggml.scores", Kv::F32s(vec![0.0; n - 1])),
        &[
            "tokenizer.ggml.scores",
            &format!("{}", n - 1),
            &format!("{n}"),
        ],
    );
    check(
        &|md| set(md, "tokenizer.ggml.scores", Kv::Strs(vec!["0".into(); n])),
        &["tokenizer.ggml.scores", "f32"],
    );
    check(
        &|md| set(md, "tokenizer.ggml.tokens", Kv::I32s(vec![0; n])),
        &["tokenizer.ggml.tokens", "strings"],
    );
    check(
        &|md| set(md, "tokenizer.ggml.token_type", Kv::I32s(vec![1; n + 1])),
        &["tokenizer.ggml.token_type"],
    );
    check(
        &|md| {
            set(
                md,
                "tokenizer.ggml.tokens",
                Kv::Strs(vec!["▁a".to_string(); n]),
            )
        },
        &["`▁a` appears twice"],
    );
    check(
        &|md| set(md, "tokenizer.ggml.bos_token_id", Kv::U32(n as u32)),
        &["tokenizer.ggml.bos_token_id"],
    );
    check(
        &|md| set(md, "tokenizer.ggml.add_space_prefix", Kv::U32(1)),
        &["tokenizer.ggml.add_space_prefix", "bool"],
    );
}

/// llama.cpp's own tokenizer test for the Llama 2 vocabulary (models/ggml-vocab-llama-spm.gguf with its
/// .inp and .out, 32000 tokens, not committed here: 700 KB), when COSMOE_LLAMA_SPM_VOCAB names that
/// file. llama.cpp's test tokenizes without BOS and without parsing special tokens; no input has one.
#[test]
fn llama2_vocabulary_matches_llama_cpp_tests_when_available() {
    let Some(path) = std::env::var_os("COSMOE_LLAMA_SPM_VOCAB") else {
        eprintln!("COSMOE_LLAMA_SPM_VOCAB not set; skipped");
        return;
    };
    let path = std::path::PathBuf::from(path);
    let t = tokenizer::from_gguf(&GgufFile::open(&path).unwrap())
        .unwrap()
        .unwrap();
    let with = |ext: &str| {
        let mut p = path.clone().into_os_string();
        p.push(ext);
        std::fs::read_to_string(p).unwrap()
    };
    let inputs = with(".inp");
    let inputs: Vec<&str> = inputs
        .strip_suffix("\n__ggml_vocab_test__\n")
        .unwrap_or(&inputs)
        .split("\n__ggml_vocab_test__\n")
        .collect();
    let outputs = with(".out");
    let outputs: Vec<&str> = outputs.lines().collect();
    assert_eq!(inputs.len(), outputs.len());
    for (input, out) in inputs.iter().zip(&outputs) {
        let want: Vec<u32> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        let got = t.encode(*input, false).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "{input:?}");
    }
    eprintln!("{} llama.cpp cases match", inputs.len());
}
