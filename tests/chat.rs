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
