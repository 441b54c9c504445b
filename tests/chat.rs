//! Chat templates rendered as transformers renders them (tests/fixtures/chat/make_chat_fixtures.py:
//! Qwen3's and Llama 3.1's templates, `apply_chat_template` of seven conversations each), found in a
//! checkpoint folder, and refused with a message that names what failed.

mod common;

use std::path::{Path, PathBuf};

use cosmoe::chat::TemplateValue as JValue;
use cosmoe::chat::{ChatMessage, ChatTemplate};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chat")
        .join(name)
}

fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

fn template(rec: &Value, name: &str) -> ChatTemplate {
    let t = &rec["templates"][name];
    let path = fixture(t["file"].as_str().unwrap());
    let bos = t["bos_token"].as_str().unwrap_or_default();
    let eos = t["eos_token"].as_str().unwrap_or_default();
    ChatTemplate::from_file(&path, bos, eos).unwrap()
}

#[test]
fn templates_render_as_transformers_does() {
    let rec = cases();
    let cases = rec["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for c in cases {
        let t = template(&rec, c["template"].as_str().unwrap());
        let extra: Vec<(&str, JValue)> = c["kwargs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), JValue::from(v.as_bool().unwrap())))
            .collect();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let got = t.render(&messages(&c["messages"]), gen, &extra).unwrap();
        let what = format!("{} / {}", c["template"], c["what"]);
        assert_eq!(got, c["text"].as_str().unwrap(), "{what}");
    }
}

#[test]
fn a_checkpoint_folder_gives_its_template() {
    let rec = cases();
    let d = common::copy_fixture("qwen3_moe");
    let src = std::fs::read_to_string(fixture("qwen3.jinja")).unwrap();
    let cfg = serde_json::json!({
        "chat_template": src,
        "eos_token": {"content": "<|im_end|>", "special": true},
        "bos_token": null,
    });
    std::fs::write(d.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    for path in [d.path().to_owned(), d.path().join("config.json")] {
        let t = ChatTemplate::of_model(&path).unwrap().unwrap();
        assert_eq!(t.eos_token, "<|im_end|>");
        let c = &rec["cases"][1];
        assert_eq!(c["template"], "qwen3");
        let got = t.render(&messages(&c["messages"]), true, &[]).unwrap();
        assert_eq!(got, c["text"].as_str().unwrap());
    }
    // chat_template.jinja beside the config takes precedence (transformers >= 4.43 saves it there).
    std::fs::write(
        d.path().join("chat_template.jinja"),
        "{{ messages[0].content }}!",
    )
    .unwrap();
    let t = ChatTemplate::of_model(d.path()).unwrap().unwrap();
    let m = [ChatMessage::new("user", "hi")];
    assert_eq!(t.render(&m, true, &[]).unwrap(), "hi!");

    // A model without any template.
    let plain = common::copy_fixture("llama");
    assert!(ChatTemplate::of_model(plain.path()).unwrap().is_none());
}

#[test]
fn a_template_that_cannot_render_names_what_failed() {
    let m = [ChatMessage::new("user", "hi")];
    // Unknown filter: found when rendering, with its name and line.
    let t = ChatTemplate::new("line one\n{{ messages | frobnicate }}", "my.jinja", "", "").unwrap();
    let msg = t.render(&m, true, &[]).unwrap_err().to_string();
    assert!(
        msg.contains("my.jinja") && msg.contains("frobnicate") && msg.contains("line 2"),
        "{msg}"
    );
    assert!(msg.contains("--chat-template"), "{msg}");
    // Unknown statement.
    let e = ChatTemplate::new("{% generation %}x{% endgeneration %}", "t", "", "")
        .err()
        .unwrap();
    assert!(e.to_string().contains("generation"), "{e}");
    // raise_exception, as templates use it to refuse a conversation.
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'system' %}{{ raise_exception('System first') }}{% endif %}",
        "t",
        "",
        "",
    )
    .unwrap();
    let e = t.render(&m, true, &[]).unwrap_err().to_string();
    assert!(e.contains("System first"), "{e}");
    // Python string methods and tojson with Python's spacing.
    let t = ChatTemplate::new(
        "{{ messages[0].content.strip().upper() }} {{ {'a': [1, 'x'], 'b': none} | tojson }} {{ 'a\u{e9}' | tojson }}",
        "t",
        "",
        "",
    )
    .unwrap();
    let m = [ChatMessage::new("user", "  hi ")];
    assert_eq!(
        t.render(&m, true, &[]).unwrap(),
        "HI {\"a\": [1, \"x\"], \"b\": null} \"a\u{e9}\""
    );
}

/// Runs `cosmoe chat ARGS` with `input` on stdin; returns (status ok, stdout, stderr).
/// A copy of the golden llama fixture with Qwen3's chat template in its tokenizer_config.json.
fn llama_with_qwen3_template() -> tempfile::TempDir {
    let d = common::copy_fixture("llama");
    let src = std::fs::read_to_string(fixture("qwen3.jinja")).unwrap();
    let cfg = serde_json::json!({ "chat_template": src });
    std::fs::write(d.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    d
}

fn run_chat(args: &[&str], input: &str) -> (bool, String, String) {
    let out = common::cosmoe_with_stdin(&[&["chat"], args].concat(), input);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cosmoe chat` over stdin on the golden llama fixture with Qwen3's template: the first turn's prompt
/// ids are transformers' `apply_chat_template(tokenize=True)` ids; the second turn extends the first
/// (the answer kept in the history, only the new tail evaluated); `/reset` starts over; `/stats`
/// reports.
#[test]
fn chat_over_stdin_follows_the_template() {
    let rec = cases();
    let cli = &rec["cli"];
    let d = llama_with_qwen3_template();
    let msgs = messages(&cli["messages"]);
    let (system, user) = (&msgs[0].content, &msgs[1].content);
    let model = d.path().to_str().unwrap();
    let input = format!("{user}\n/stats\nAnd again\n/reset\n{user}\n");
    let args = [
        "--model",
        model,
        "--system",
        system,
        "--temperature",
        "0",
        "-n",
        "6",
        "--verbose-prompt",
        "--threads",
        "1",
    ];
    let (ok, stdout, stderr) = run_chat(&args, &input);
    assert!(ok, "{stderr}");
    let turns: Vec<Vec<u32>> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("prompt ids: "))
        .map(|l| l.split(' ').map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(turns.len(), 3, "{stderr}");
    let want = common::ids(&cli["prompt_ids"]);
    assert_eq!(turns[0], want);
    assert!(turns[1].len() > turns[0].len() + 6 && turns[1].starts_with(&turns[0]));
    let tok = cosmoe_loader::tokenizer::load(&d.path().join("tokenizer.json")).unwrap();
    let second = tok.decode(&turns[1], false).unwrap();
    assert!(
        second.ends_with("<|im_start|>user\nAnd again<|im_end|>\n<|im_start|>assistant\n"),
        "{second:?}"
    );
    assert_eq!(turns[2], turns[0], "after /reset");
    assert!(stderr.contains("(conversation reset)"), "{stderr}");
    assert!(
        stderr.contains("prompt ") && stderr.contains("tok/s"),
        "{stderr}"
    );
    // Three answers of six tokens (the fixture has no end-of-sequence token), each on its line.
    assert_eq!(
        stderr.matches("(answer cut at 6 tokens").count(),
        3,
        "{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| !l.is_empty()).count(),
        3,
        "{stdout:?}"
    );
}

#[test]
fn chat_without_a_template_says_what_to_do() {
    let d = common::copy_fixture("llama");
    let model = d.path().to_str().unwrap();
    let (ok, _, stderr) = run_chat(&["--model", model], "hi\n");
    assert!(!ok);
    assert!(
        stderr.contains("no chat template") && stderr.contains("--chat-template"),
        "{stderr}"
    );
    let bad = d.path().join("bad.jinja");
    std::fs::write(&bad, "{{ messages | frobnicate }}").unwrap();
    let (ok, _, stderr) = run_chat(
        &["--model", model, "--chat-template", bad.to_str().unwrap()],
        "hi\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("bad.jinja") && stderr.contains("frobnicate"),
        "{stderr}"
    );
}

/// Ctrl-C while an answer is written stops that answer; the conversation goes on (the next line is
/// answered) and ends normally at the end of input.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_answer_not_the_chat() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("w.gguf");
    // Big enough that an answer of thousands of tokens takes seconds.
    let st = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args([
            "synth",
            "--preset",
            "cosmoe-wearable",
            "--type",
            "q4_0",
            "--pure",
            "-o",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let template = dir.path().join("t.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}<assistant> ",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .arg("chat")
        .arg("--model")
        .arg(&model)
        .arg("--chat-template")
        .arg(&template)
        .args(["--temperature", "0", "-n", "3000", "--threads", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    // The answer has started once its first bytes arrive.
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    stdin.write_all(b"/stats\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("(stopped)"), "{stderr}");
    assert!(!stderr.contains("(answer cut"), "{stderr}");
    // /stats after the stopped answer: fewer tokens than -n were generated.
    let generated: usize = stderr
        .split("generated ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!((1..3000).contains(&generated), "{stderr}");
}

/// A GGUF file carries the template (`tokenizer.chat_template`, written by `cosmoe convert` from
/// tokenizer_config.json) and the vocabulary: `cosmoe chat` on the file alone gives transformers'
/// `apply_chat_template` ids for the first turn.
#[test]
fn chat_on_a_gguf_uses_its_template_and_vocabulary() {
    let rec = cases();
    let cli = &rec["cli"];
    let d = llama_with_qwen3_template();
    let out_dir = tempfile::tempdir().unwrap();
    let gguf = out_dir.path().join("llama.gguf");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .arg("convert")
        .arg(d.path())
        .args(["--type", "f32", "-o"])
        .arg(&gguf)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let msgs = messages(&cli["messages"]);
    let args = [
        "--model",
        gguf.to_str().unwrap(),
        "--system",
        &msgs[0].content,
        "--temperature",
        "0",
        "-n",
        "4",
        "--verbose-prompt",
        "-t",
        "1",
    ];
    let (ok, _, stderr) = run_chat(&args, &format!("{}\n", msgs[1].content));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("tokenizer.chat_template"), "{stderr}");
    let first: Vec<u32> = stderr
        .lines()
        .find_map(|l| l.strip_prefix("prompt ids: "))
        .unwrap_or_else(|| panic!("{stderr}"))
        .split(' ')
        .map(|t| t.parse().unwrap())
        .collect();
    let want = common::ids(&cli["prompt_ids"]);
    assert_eq!(first, want);
}
