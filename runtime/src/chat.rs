//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template`, or a checkpoint's
//! `chat_template.jinja` / `tokenizer_config.json`) rendered as transformers' `apply_chat_template`
//! renders it (trimmed blocks, stripped block indentation, `raise_exception`, `strftime_now`, a
//! `tojson` that writes what Python's `json.dumps` writes, Python's string methods), with minijinja.
//!
//! A template cosmoe cannot render is an error naming the template and what failed (minijinja's
//! message names the construct and the line); `ChatTemplate::new` with another template overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cosmoe_loader::gguf::{Array, Value as GgufValue};
use cosmoe_loader::{GgufFile, ModelPath};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};

use crate::{Error, Result};

/// A value of a template variable (`extra` of [`ChatTemplate::render`]).
pub use minijinja::Value as TemplateValue;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template and the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where it came from, for messages.
    origin: String,
    pub bos_token: String,
    pub eos_token: String,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `origin` names it in errors (a file, or a model's metadata key).
    pub fn new(source: &str, origin: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        // As transformers' ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(origin, e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| template_error(origin, e))?;
        Ok(ChatTemplate {
            env,
            origin: origin.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The template of the model at `path` (a GGUF file, or a checkpoint folder or a file in one), or
    /// `None` when it has none.
    pub fn of_model(path: &Path) -> Result<Option<Self>> {
        match ModelPath::resolve(path)? {
            ModelPath::Gguf(p) => of_gguf(&GgufFile::open(&p)?, &p),
            ModelPath::Checkpoint(dir) => of_checkpoint(&dir),
        }
    }

    /// The template in the file `path` (`--chat-template FILE`), with the model's special tokens.
    pub fn from_file(path: &Path, bos_token: &str, eos_token: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::Load(cosmoe_loader::LoaderError::Io {
                path: path.to_owned(),
                err,
            })
        })?;
        Self::new(&text, &path.display().to_string(), bos_token, eos_token)
    }

    /// The prompt text of `messages`, ending with the assistant's header when
    /// `add_generation_prompt`; `extra` are further variables (e.g. Qwen3's `enable_thinking`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &[(&str, Value)],
    ) -> Result<String> {
        let mut ctx: BTreeMap<&str, Value> = extra.iter().cloned().collect();
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())])
            })
            .collect();
        ctx.insert("messages", Value::from(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        ctx.insert("bos_token", Value::from(self.bos_token.as_str()));
        ctx.insert("eos_token", Value::from(self.eos_token.as_str()));
        let t = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&self.origin, e))?;
        t.render(ctx).map_err(|e| template_error(&self.origin, e))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

fn template_error(origin: &str, e: minijinja::Error) -> Error {
    let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
    let mut msg = format!("chat template {origin}{line}: {e}");
    if let Some(d) = e.detail() {
        if !msg.contains(d) {
            msg.push_str(": ");
            msg.push_str(d);
        }
    }
    msg.push_str("; give another with --chat-template FILE");
    Error::InvalidArgument(msg)
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {msg}"),
    ))
}

/// The local time formatted by C's `strftime`, as Python's `datetime.now().strftime(fmt)`.
fn strftime_now(fmt: String) -> std::result::Result<String, minijinja::Error> {
    let bad = || minijinja::Error::new(ErrorKind::InvalidOperation, "strftime_now: bad format");
    let cfmt = std::ffi::CString::new(fmt).map_err(|_| bad())?;
    let mut buf = [0u8; 256];
    // SAFETY: `time(NULL)` only returns the time; `localtime_r` writes into `tm`, which we own;
    // `strftime` writes at most `buf.len()` bytes into `buf` and reads the NUL-terminated `cfmt`.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return Err(bad());
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), cfmt.as_ptr(), &tm)
    };
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`, i.e. Python's spacing (`, ` and `: ` without an
/// indent; `,` and newlines with one), keys in their order.
fn tojson(v: Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&v, indent, 0, &mut out)?;
    Ok(out)
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => {
            out.push_str(&serde_json::to_string(v.as_str().unwrap_or_default()).unwrap_or_default())
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, depth + 1, out)?;
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                let key = k
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| k.to_string());
                out.push_str(&serde_json::to_string(&key).unwrap_or_default());
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot write a {} as JSON", v.kind()),
            ))
        }
    }
    Ok(())
}

fn of_gguf(f: &GgufFile, path: &Path) -> Result<Option<ChatTemplate>> {
    let Some(GgufValue::String(src)) = f.get("tokenizer.chat_template") else {
        return Ok(None);
    };
    let token = |key: &str| -> String {
        let id = f.get(key).and_then(|v| v.as_u64());
        match (id, f.get("tokenizer.ggml.tokens")) {
            (Some(id), Some(GgufValue::Array(Array::String(t)))) => {
                t.get(id as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        }
    };
    let origin = format!("{} (tokenizer.chat_template)", path.display());
    ChatTemplate::new(
        src,
        &origin,
        &token("tokenizer.ggml.bos_token_id"),
        &token("tokenizer.ggml.eos_token_id"),
    )
    .map(Some)
}

fn of_checkpoint(dir: &Path) -> Result<Option<ChatTemplate>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|err| {
            Error::Load(cosmoe_loader::LoaderError::Json {
                path: cfg_path.clone(),
                err,
            })
        })?,
        Err(_) => serde_json::Value::Null,
    };
    // An AddedToken is a string or `{"content": ...}`.
    let token = |key: &str| -> String {
        match &cfg[key] {
            serde_json::Value::String(s) => s.clone(),
            v => v["content"].as_str().unwrap_or_default().to_owned(),
        }
    };
    let (bos, eos) = (token("bos_token"), token("eos_token"));
    // transformers saves the template beside the config since 4.43.
    let file: PathBuf = dir.join("chat_template.jinja");
    if file.is_file() {
        return ChatTemplate::from_file(&file, &bos, &eos).map(Some);
    }
    let origin = format!("{} (chat_template)", cfg_path.display());
    match &cfg["chat_template"] {
        serde_json::Value::String(s) => ChatTemplate::new(s, &origin, &bos, &eos).map(Some),
        // Several named templates: the default one.
        serde_json::Value::Array(list) => {
            let default = list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str());
            match default {
                Some(s) => ChatTemplate::new(s, &origin, &bos, &eos).map(Some),
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}
