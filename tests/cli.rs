//! The `cosmoe` command line, as other tools drive it.

mod common;

use std::process::{Command, Output};

use common::{expected, golden_dir, rel_err};

fn cosmoe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .output()
        .expect("run cosmoe")
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn run_print_ids_prints_only_the_ids() {
    for name in ["granitemoe", "qwen2_moe"] {
        let dir = golden_dir().join(name);
        let exp = expected(&dir);
        let n = exp.greedy_ids.len().to_string();
        let out = cosmoe(&[
            "run",
            "--model",
            dir.to_str().unwrap(),
            "--ids",
            &csv(&exp.prompt_ids),
            "-n",
            &n,
            "--print-ids",
            "--ignore-eos",
            "--threads",
            "2",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
        let got: Vec<u32> = stdout
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, exp.greedy_ids, "{name}");
    }
}

#[test]
fn logits_writes_every_position() {
    let dir = golden_dir().join("olmoe");
    let exp = expected(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("logits.f32");
    let out = cosmoe(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--ids",
        &csv(&exp.prompt_ids),
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&out_path).unwrap();
    assert_eq!(bytes.len(), exp.prompt_ids.len() * exp.vocab_size * 4);
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert!(rel_err(&got, &exp.logits) <= 1e-4);
}

#[test]
fn run_text_prompt_streams_text() {
    let dir = golden_dir().join("llama");
    let out = cosmoe(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "The old mill",
        "-n",
        "8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tok/s"));
}

#[test]
fn inspect_reports_the_expert_split() {
    let dir = golden_dir().join("olmoe");
    let out = cosmoe(&["inspect", dir.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "OlmoeForCausalLM");
    let total = v["bytes_total"].as_u64().unwrap();
    let experts = v["bytes_experts"].as_u64().unwrap();
    assert_eq!(total, experts + v["bytes_resident"].as_u64().unwrap());
    // 2 layers x 8 experts x 3 matrices of 32 x 48 f32 values.
    assert_eq!(experts, 2 * 8 * 3 * 32 * 48 * 4);
    assert_eq!(
        v["experts"]["bytes_per_expert"].as_u64().unwrap(),
        3 * 32 * 48 * 4
    );
    // top-2 of 8: 6 experts per layer are inactive.
    let inactive = 2 * 6 * 3 * 32 * 48;
    assert_eq!(
        v["params_total"].as_u64().unwrap() - v["params_active_per_token"].as_u64().unwrap(),
        inactive
    );

    let out = cosmoe(&["inspect", golden_dir().join("llama").to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("LlamaForCausalLM") && text.contains("dense"),
        "{text}"
    );
}

#[test]
fn inspect_shows_gguf_metadata() {
    let f = golden_dir().join("../gguf/qwen3_moe.f32.gguf");
    let out = cosmoe(&["inspect", f.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "Qwen3MoeForCausalLM");
    // Typed values, keyed by name.
    let md = &v["metadata"];
    assert_eq!(md["general.architecture"], "qwen3moe", "{md}");
    assert!(md["qwen3moe.expert_count"].is_u64(), "{md}");
    let out = cosmoe(&["inspect", f.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("GGUF metadata") && text.contains("qwen3moe.expert_count"),
        "{text}"
    );
}

/// A lone `.gguf` file runs with a text prompt: its tokenizer is rebuilt from the file's metadata.
#[test]
fn gguf_runs_with_a_text_prompt() {
    let f = golden_dir().join("../gguf/qwen3_moe.f32.gguf");
    let out = cosmoe(&[
        "run",
        "--model",
        f.to_str().unwrap(),
        "--prompt",
        "aa a",
        "-n",
        "4",
        "--print-ids",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(!ids.is_empty() && ids.len() <= 4, "{ids:?}");
}

/// Wrong flags and bad values: a non-zero exit and a message that says what is wrong.
#[test]
fn bad_arguments_are_clear_errors() {
    let llama = golden_dir().join("llama");
    let mixtral = golden_dir().join("mixtral");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "--model",
                llama.to_str().unwrap(),
                "--ids",
                "1,99999",
            ],
            "outside the vocabulary",
        ),
        (
            vec![
                "run",
                "--model",
                mixtral.to_str().unwrap(),
                "--prompt",
                "hi",
            ],
            "no tokenizer.json",
        ),
        (
            vec!["run", "--model", llama.to_str().unwrap(), "--ids", "1,x"],
            "invalid digit",
        ),
        (vec!["run", "--model", llama.to_str().unwrap()], "--ids"),
        (
            vec![
                "run",
                "--model",
                llama.to_str().unwrap(),
                "--ids",
                "1",
                "--threads",
                "0",
            ],
            "--threads",
        ),
        (
            vec![
                "run",
                "--model",
                llama.to_str().unwrap(),
                "--ids",
                "1",
                "--temperature",
                "-1",
            ],
            "temperature",
        ),
        (
            vec![
                "run",
                "--model",
                llama.to_str().unwrap(),
                "--ids",
                "1",
                "--top-p",
                "2",
            ],
            "top-p",
        ),
        (
            vec!["run", "--model", "/no/such/model", "--ids", "1"],
            "/no/such/model",
        ),
        (vec!["inspect", "/no/such/model"], "/no/such/model"),
        (vec!["frobnicate"], "unrecognized subcommand"),
        // Formats cosmoe reads but has no quantiser for.
        (
            vec![
                "run",
                "--model",
                llama.to_str().unwrap(),
                "--ids",
                "1",
                "--quantize",
                "iq2_xxs",
            ],
            "cannot quantise to IQ2_XXS",
        ),
        (
            vec![
                "convert",
                llama.to_str().unwrap(),
                "-o",
                "/nonexistent/x.gguf",
                "--type",
                "iq3_s",
            ],
            "cannot quantise to IQ3_S",
        ),
    ];
    for (args, want) in cases {
        let out = cosmoe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A model whose tokenizer cosmoe cannot build (here a pre-tokenizer it does not know) still runs on
/// token ids: the tokenizer is only an error when text needs it, and that error names it.
#[test]
fn ids_need_no_tokenizer() {
    let src = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gguf/mixtral.q8_0.gguf"),
    )
    .unwrap();
    // The string value of `tokenizer.ggml.pre`, "gpt-2", becomes "smaug" (the same length).
    let key = b"tokenizer.ggml.pre";
    let at = src.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
    assert_eq!(&src[at..at + 5], b"gpt-2");
    let mut patched = src.clone();
    patched[at..at + 5].copy_from_slice(b"smaug");
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good.gguf"), dir.path().join("smaug.gguf"));
    std::fs::write(&good, &src).unwrap();
    std::fs::write(&bad, &patched).unwrap();

    let ids = |m: &std::path::Path| {
        let out = cosmoe(&[
            "run",
            "--model",
            m.to_str().unwrap(),
            "--ids",
            "1,15,27",
            "-n",
            "6",
            "--print-ids",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(ids(&bad), ids(&good));
    assert_eq!(ids(&bad).split_whitespace().count(), 6);

    let out = cosmoe(&[
        "run",
        "--model",
        bad.to_str().unwrap(),
        "--prompt",
        "hi",
        "-n",
        "2",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pre-tokenizer `smaug`"), "{err}");
}

/// The README documents every flag each command's `--help` shows.
#[test]
fn readme_documents_every_flag_of_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // Every command `cosmoe --help` lists, so a new one cannot be left out.
    let top = String::from_utf8(cosmoe(&["--help"]).stdout).unwrap();
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&c| c != "help")
        .collect();
    assert!(commands.len() >= 12, "commands of --help: {commands:?}");
    let mut missing = Vec::new();
    let mut seen = 0;
    for cmd in commands {
        let out = cosmoe(&[cmd, "--help"]);
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            readme.contains(&format!("cosmoe {cmd}")),
            "{cmd} not in the README"
        );
        // Option lines: "  -m, --model <MODEL>  ..." or "      --json  ...".
        for line in help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
        {
            let flag = line
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .unwrap_or_default();
            if flag.is_empty() || flag == "--help" {
                continue;
            }
            seen += 1;
            if !readme.contains(&format!("`{flag}")) && !readme.contains(&format!(" {flag}")) {
                missing.push(format!("{cmd} {flag}"));
            }
        }
    }
    assert!(seen > 60, "only {seen} flags found in the help texts");
    assert!(missing.is_empty(), "not in the README: {missing:?}");
}
