//! GGUF files made by llama.cpp's own converter (tests/fixtures/make_gguf_fixtures.py) from the golden
//! Hugging Face fixtures, against the transformers reference of those fixtures and against llama.cpp's
//! own greedy continuation of each file.
//!
//! Each `tests/fixtures/gguf/<name>.<type>.gguf` has a `<name>.<type>.json` naming its source fixture
//! (tests/fixtures/golden/<name>/, whose logits.bin and greedy_ids are the reference) and, where
//! llama.cpp was built when the files were made, llama.cpp's greedy ids for the same prompt.

mod common;

use cosmoe::Session;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{expected, golden_dir, ids, rel_err, Expected};
use cosmoe::forward::Logits;
use cosmoe::generate::GenerateConfig;
use cosmoe::sampler::SamplerConfig;
use cosmoe::{LoadOptions, Model};
use serde_json::Value;

/// max |diff| / max |logit| against transformers, per storage type of the file. F32 files hold the
/// fixture's weights exactly (bf16/f16/f32 -> f32 is exact), so they get the bound of the HF path.
/// F16 rounds the weights of the f32 `llama` fixture (the bf16/f16 fixtures convert to F16 exactly);
/// Q8_0 quantises them (8 bits per weight and an f16 scale per 32). Worst measured: F16 4.7e-4
/// (llama), Q8_0 3.3e-2 (qwen2); see the report printed by `gguf_logits_match_transformers`.
fn tolerance(outtype: &str) -> f32 {
    match outtype {
        "f32" => 1e-4,
        "f16" => 1e-3,
        "q8_0" => 5e-2,
        other => panic!("no tolerance for {other}"),
    }
}

/// max |diff| / max |logit| against llama.cpp's own prompt logits of the same file (CPU, F32 KV
/// cache). llama.cpp rounds the activations to f16 before an F16 matmul; cosmoe keeps them in f32.
/// Both quantise activations to Q8_0 the same way before a Q8_0 matmul (llama.cpp's x86 quantiser:
/// `id = 127 / amax`, round half to even). Worst measured: F32 5.8e-7; F16 8.7e-4 (qwen2); Q8_0
/// 1.0e-7 (qwen3), 8.8e-8 (llama), 0 (qwen2), and 1.6e-3 for mixtral.q8_0, whose matrices are mostly
/// F16 (48-wide rows do not split into Q8_0 blocks).
fn tolerance_llama_cpp(outtype: &str) -> f32 {
    match outtype {
        "f32" => 1e-4,
        "f16" => 2e-3,
        "q8_0" => 5e-3,
        other => panic!("no tolerance for {other}"),
    }
}

/// llama.cpp's greedy ids must be reproduced at least this far (the fixtures' greedy margins are
/// small, so a different summation order may flip a near-tie late in a long continuation).
const MIN_LLAMA_CPP_AGREEMENT: usize = 16;

struct GgufFixture {
    path: PathBuf,
    meta: Value,
    outtype: String,
    exp: Expected,
}

impl GgufFixture {
    fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

fn gguf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

/// Every GGUF fixture, sorted; panics if there are fewer than made (so tests cannot pass vacuously).
fn gguf_fixtures() -> Vec<GgufFixture> {
    let mut v: Vec<GgufFixture> = std::fs::read_dir(gguf_dir())
        .expect("tests/fixtures/gguf exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|j| {
            let meta: Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
            let path = gguf_dir().join(meta["gguf"].as_str().unwrap());
            assert!(path.is_file(), "{} is missing", path.display());
            let exp = expected(&golden_dir().join(meta["source_fixture"].as_str().unwrap()));
            assert_eq!(ids(&meta["prompt_ids"]), exp.prompt_ids, "{}", j.display());
            GgufFixture {
                outtype: meta["outtype"].as_str().unwrap().to_owned(),
                path,
                meta,
                exp,
            }
        })
        .collect();
    v.sort_by_key(|f| f.path.clone());
    assert!(
        v.len() >= 15,
        "expected at least 15 GGUF fixtures, found {}",
        v.len()
    );
    v
}

fn load(f: &GgufFixture) -> Arc<Model> {
    Model::load_with(&f.path, &LoadOptions::default())
        .map(Arc::new)
        .unwrap_or_else(|e| panic!("{}: {e}", f.name()))
}

fn greedy(n: usize) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: n,
        stop_at_eos: false,
        context_shift: None,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        },
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |b, (i, &x)| if x > row[b] { i } else { b })
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Positions where `got` and `want` pick the same top token, and the positions that must: all of them
/// for F32/F16, and for Q8_0 those where `want`'s top-1 margin exceeds twice the max |diff| (a
/// quantised file may legitimately swap a near-tie).
fn top1(got: &[f32], want: &[f32], v: usize, outtype: &str) -> (usize, usize, usize) {
    let max_d = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let (mut agree, mut required, mut required_agree) = (0, 0, 0);
    for (a, b) in got.chunks_exact(v).zip(want.chunks_exact(v)) {
        let t = argmax(b);
        let second = b
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != t)
            .fold(f32::NEG_INFINITY, |m, (_, &x)| m.max(x));
        let must = outtype != "q8_0" || b[t] - second > 2.0 * max_d;
        let same = argmax(a) == t;
        agree += same as usize;
        required += must as usize;
        required_agree += (must && same) as usize;
    }
    (agree, required, required_agree)
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn gguf_logits_match_transformers_and_llama_cpp() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for f in gguf_fixtures() {
        let model = load(&f);
        assert_eq!(model.config.vocab_size, f.exp.vocab_size, "{}", f.name());
        let got = Session::new(model.clone())
            .eval(&f.exp.prompt_ids, Logits::All)
            .map(<[f32]>::to_vec)
            .unwrap();
        let v = f.exp.vocab_size;
        let n = f.exp.prompt_ids.len();
        let mut line = String::new();
        for (who, want, bound) in [
            (
                "transformers",
                Some(f.exp.logits.clone()),
                tolerance(&f.outtype),
            ),
            (
                "llama.cpp",
                f.meta["llama_cpp_logits"]
                    .as_str()
                    .map(|p| read_f32(&gguf_dir().join(p))),
                tolerance_llama_cpp(&f.outtype),
            ),
        ] {
            let Some(want) = want else { continue };
            let err = rel_err(&got, &want);
            let (agree, required, required_agree) = top1(&got, &want, v, &f.outtype);
            line += &format!(" vs {who} {err:.2e} (top-1 {agree}/{n}),");
            if err > bound || required_agree != required {
                failures.push(format!(
                    "{} vs {who}: max |diff| / max |logit| = {err:e} (bound {bound:e}), \
                     top-1 agreement {required_agree}/{required} where required",
                    f.name()
                ));
            }
        }
        report.push(format!("{}:{}", f.name(), line.trim_end_matches(',')));
    }
    eprintln!(
        "GGUF logits, max |diff| / max |logit|:\n  {}",
        report.join("\n  ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gguf_greedy_matches_transformers_and_llama_cpp() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for f in gguf_fixtures() {
        let model = load(&f);
        let n = f.exp.greedy_ids.len();
        let g = Session::new(model.clone())
            .complete(&f.exp.prompt_ids, &greedy(n), |_, _| true)
            .unwrap()
            .tokens;
        let hf = common_prefix(&g, &f.exp.greedy_ids);
        let mut line = format!("{}: = transformers for {hf}/{n}", f.name());
        // F32 files are the fixture's weights: the whole continuation must be transformers'.
        if f.outtype == "f32" && hf != n {
            failures.push(format!(
                "{}: greedy {g:?} != transformers {:?}",
                f.name(),
                f.exp.greedy_ids
            ));
        }
        for key in ["llama_cpp", "llama_cpp_f16_kv"] {
            let Some(rec) = f.meta.get(key) else { continue };
            let want = ids(&rec["greedy_ids"]);
            let k = common_prefix(&g, &want);
            line += &format!(", = {key} for {k}/{}", want.len());
            // The F32-KV-cache run is llama.cpp computing in f32 like cosmoe; the default F16
            // cache rounds K and V, so it is only reported.
            if key == "llama_cpp" && k < MIN_LLAMA_CPP_AGREEMENT.min(want.len()) {
                failures.push(format!(
                    "{}: greedy {g:?} agrees with llama.cpp's {want:?} for only {k} tokens",
                    f.name()
                ));
            }
        }
        report.push(line);
    }
    eprintln!("GGUF greedy continuations:\n  {}", report.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The files do carry llama.cpp's greedy ids when they were made with llama.cpp built: a fixture
/// set regenerated without it would silently drop the comparison above.
#[test]
fn gguf_fixtures_record_llama_cpp_greedy() {
    for f in gguf_fixtures() {
        let rec = &f.meta["llama_cpp"];
        assert!(
            rec["greedy_ids"].is_array(),
            "{}: no llama.cpp greedy ids recorded (make_gguf_fixtures.py --llama-cpp-build)",
            f.name()
        );
        assert_eq!(ids(&rec["greedy_ids"]).len(), f.exp.greedy_ids.len());
    }
}

#[test]
fn inspect_json_reads_gguf() {
    for f in gguf_fixtures() {
        let out = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
            .args(["inspect", f.path.to_str().unwrap(), "--json"])
            .output()
            .expect("run cosmoe");
        assert!(
            out.status.success(),
            "{}: {}",
            f.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e})", f.name()));
        assert_eq!(
            r["vocab_size"].as_u64(),
            Some(f.exp.vocab_size as u64),
            "{}",
            f.name()
        );
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(
                golden_dir()
                    .join(f.meta["source_fixture"].as_str().unwrap())
                    .join("config.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(r["hidden_size"], cfg["hidden_size"], "{}", f.name());
        assert_eq!(r["n_layers"], cfg["num_hidden_layers"], "{}", f.name());
        let is_moe = cfg.get("num_local_experts").is_some_and(|v| !v.is_null())
            || cfg.get("num_experts").is_some_and(|v| !v.is_null());
        assert_eq!(r["experts"].is_object(), is_moe, "{}", f.name());
        // Every storage type the converter used shows up with its tensor count.
        let types = f.meta["tensor_types"].as_object().unwrap();
        let dtypes = r["dtypes"].as_object().unwrap();
        for (t, n) in types {
            assert_eq!(dtypes.get(t), Some(n), "{}: {t} in {dtypes:?}", f.name());
        }
    }
}

/// The vocabulary llama.cpp's converter layout stores in each file rebuilds as a tokenizer; for
/// `llama`, whose vocabulary is the fixture's real one, it encodes as transformers and llama.cpp
/// (llama-tokenize on the same file) do, and the text prompt's greedy continuation is theirs.
#[test]
fn gguf_tokenizer_matches_transformers_and_llama_cpp() {
    let mut checked = 0;
    for f in gguf_fixtures() {
        let file = cosmoe_loader::GgufFile::open(&f.path).unwrap();
        let tok = cosmoe_loader::tokenizer::from_gguf(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name()))
            .unwrap_or_else(|| panic!("{}: no vocabulary", f.name()));
        assert_eq!(tok.get_vocab_size(true), f.exp.vocab_size, "{}", f.name());
        let Some(rec) = f.meta.get("llama_cpp_text") else {
            continue;
        };
        let enc = |text: &str| tok.encode(text, false).unwrap().get_ids().to_vec();
        let hf_cases = f.exp.json["tokenizer_cases"].as_array().unwrap();
        let lc_cases = rec["tokenizer_cases"].as_array().unwrap();
        assert_eq!(hf_cases.len(), lc_cases.len());
        for (hf, lc) in hf_cases.iter().zip(lc_cases) {
            let text = hf["text"].as_str().unwrap();
            let got = enc(text);
            assert_eq!(
                got,
                ids(&hf["ids"]),
                "{}: {text:?} vs transformers",
                f.name()
            );
            assert_eq!(got, ids(&lc["ids"]), "{}: {text:?} vs llama.cpp", f.name());
        }
        let prompt = enc(f.exp.json["prompt_text"].as_str().unwrap());
        assert_eq!(prompt, ids(&f.exp.json["prompt_text_ids"]), "{}", f.name());
        assert_eq!(prompt, ids(&rec["prompt_text_ids"]), "{}", f.name());

        let want_lc = ids(&rec["prompt_text_greedy_ids"]);
        let g = Session::new(load(&f).clone())
            .complete(&prompt, &greedy(want_lc.len()), |_, _| true)
            .unwrap()
            .tokens;
        assert!(
            common_prefix(&g, &want_lc) >= MIN_LLAMA_CPP_AGREEMENT.min(want_lc.len()),
            "{}: text-prompt greedy {g:?} vs llama.cpp {want_lc:?}",
            f.name()
        );
        if f.outtype == "f32" {
            assert_eq!(
                g,
                ids(&f.exp.json["prompt_text_greedy_ids"]),
                "{}",
                f.name()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the llama GGUF files carry llama.cpp's tokenisation"
    );
}
