//! `cosmoe chat`: a conversation with the model through its own chat template. Each turn renders the
//! whole conversation, tokenizes it (special tokens parsed, nothing added, as transformers'
//! `apply_chat_template` does) and evaluates only what the context does not hold yet.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use cosmoe::chat::{ChatMessage, ChatTemplate};
use cosmoe::generate::{GenerateConfig, StopReason, TextStream};
use cosmoe::{Error, Session, TokenizerSource};

use super::{ctrl_c_cancels, init_threads, load, ranged, ModelArgs, SamplerArgs, MAX_TOKENS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct ChatArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// A system prompt, the conversation's first message.
    #[arg(long)]
    system: Option<String>,
    /// A Jinja chat template to use instead of the model's own.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// tokenizer.json to use instead of the model folder's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Most tokens per answer, 1 to 16777216.
    #[arg(short = 'n', long = "n-tokens", default_value_t = 1024, value_parser = ranged(1, MAX_TOKENS))]
    n: usize,
    /// Positions of the context, 1 to the model's trained context (default: that); KV memory
    /// follows it.
    #[arg(short = 'c', long, value_parser = ranged(1, MAX_TOKENS))]
    ctx_size: Option<usize>,
    #[command(flatten)]
    sampling: SamplerArgs,
    /// Print each turn's prompt token ids to stderr (`prompt ids: 1 2 3`).
    #[arg(long)]
    verbose_prompt: bool,
}

/// Where the user's lines come from: an editable line with history on a terminal, plain lines
/// otherwise (a pipe, a file, a test).
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Lines(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Input {
    fn new() -> Result<Input> {
        if std::io::stdin().is_terminal() {
            let ed = rustyline::DefaultEditor::new().context("starting the line editor")?;
            Ok(Input::Editor(Box::new(ed)))
        } else {
            Ok(Input::Lines(std::io::stdin().lock().lines()))
        }
    }

    /// The next line; `None` at the end of input (Ctrl-D).
    fn next(&mut self) -> Result<Option<String>> {
        match self {
            Input::Editor(ed) => loop {
                match ed.readline("> ") {
                    Ok(line) => {
                        let _ = ed.add_history_entry(line.as_str());
                        return Ok(Some(line));
                    }
                    // Ctrl-C at the prompt clears the line, as in a shell.
                    Err(rustyline::error::ReadlineError::Interrupted) => continue,
                    Err(rustyline::error::ReadlineError::Eof) => return Ok(None),
                    Err(e) => return Err(e).context("reading a line"),
                }
            },
            Input::Lines(lines) => lines.next().transpose().context("reading stdin"),
        }
    }
}

pub fn chat(a: ChatArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    let tokenizer = match &a.tokenizer {
        Some(p) => TokenizerSource::File(p.clone()),
        None => TokenizerSource::Auto,
    };
    let model = load(&a.m, tokenizer)?;
    let tok = model
        .tokenizer()
        .map_err(|e| anyhow!("{e}: chat needs a tokenizer (give one with --tokenizer)"))?;
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i)).unwrap_or_default();
    let template = match &a.chat_template {
        Some(f) => {
            let bos = name(model.config.bos_token_id);
            let eos = name(model.config.eos_token_ids.first().copied());
            ChatTemplate::from_file(f, &bos, &eos)?
        }
        None => ChatTemplate::of_model(&a.m.model)?.ok_or_else(|| {
            anyhow!(
                "{} has no chat template: give one with --chat-template FILE",
                a.m.model.display()
            )
        })?,
    };
    let cfg = GenerateConfig {
        max_new_tokens: a.n,
        stop_at_eos: true,
        context_shift: None,
        sampler: a.sampling.config(0.8),
    };
    // The template's end-of-turn token also ends an answer (Qwen's <|im_end|>, Llama 3's <|eot_id|>),
    // whether or not the model's config lists it.
    let end_of_turn = tok.token_to_id(&template.eos_token);

    errln!(
        "cosmoe chat: {} (template: {}); /reset starts over, /stats shows the run's figures, /exit or Ctrl-D ends",
        a.m.model.display(),
        template.origin()
    );
    let system: Vec<ChatMessage> = a
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s))
        .collect();
    let mut messages = system.clone();
    let mut session = Session::new(model.clone());
    if let Some(n) = a.ctx_size {
        session.set_n_ctx(n)?;
    }
    // Ctrl-C stops the answer being written, not the conversation; between answers it ends cosmoe
    // as usual (status 130). On a terminal the prompt's line editor reads Ctrl-C itself.
    let answering = ctrl_c_cancels(session.cancel_handle());
    // What the context holds (the last sampled token included: it is evaluated with the next input).
    let mut held: Vec<u32> = Vec::new();
    let mut input = Input::new()?;
    while let Some(line) = input.next()? {
        let line = line.trim_end_matches(['\r', '\n']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = system.clone();
                session.reset();
                held.clear();
                errln!("(conversation reset)");
                continue;
            }
            "/stats" => {
                print_stats(&session);
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new("user", line));
        let text = template.render(&messages, true, &[])?;
        let ids = tok
            .encode(text.as_str(), false)
            .map_err(|e| anyhow!("tokenizing the conversation: {e}"))?
            .get_ids()
            .to_vec();
        if a.verbose_prompt {
            let s: Vec<String> = ids.iter().map(u32::to_string).collect();
            errln!("prompt ids: {}", s.join(" "));
        }
        if ids.len() >= session.n_ctx() {
            messages.pop();
            errln!(
                "(the conversation needs {} positions, the context holds {}: /reset to start over)",
                ids.len(),
                session.n_ctx()
            );
            continue;
        }
        // Only the new tail when the context holds a prefix of it; else from the start (the template
        // rewrote history, e.g. Qwen3 drops the thinking of earlier answers).
        let start = if !held.is_empty() && ids.starts_with(&held) && ids.len() > held.len() {
            held.len()
        } else {
            session.reset();
            held.clear();
            0
        };
        let new = &ids[start..];
        let mut stream = TextStream::new(tok);
        let mut io_err = None;
        // Every sampled token (the context holds them all, the last one once the next input is
        // evaluated), and the answer's (without the end of turn).
        let (mut sampled, mut answer) = (Vec::new(), Vec::new());
        answering.store(true, Ordering::SeqCst);
        let r = session
            .eval(new, cosmoe::forward::Logits::Last)
            .map(|_| ())
            .and_then(|()| {
                session.generate(&cfg, |t, last| {
                    sampled.push(t);
                    let end = Some(t) == end_of_turn;
                    if !end {
                        answer.push(t);
                    }
                    let piece = stream.push(t, last || end);
                    if let Err(e) = out!("{piece}") {
                        io_err.get_or_insert(e);
                        return false;
                    }
                    !end
                })
            });
        answering.store(false, Ordering::SeqCst);
        if let Some(e) = io_err {
            return Err(e.into());
        }
        let stop = match r {
            Ok(g) => Some(g.stop),
            Err(Error::Cancelled) if sampled.is_empty() => {
                // Stopped while reading the prompt: the context is as it was, the message unsent.
                messages.pop();
                errln!("(stopped)");
                continue;
            }
            Err(Error::Cancelled) => None,
            Err(e) => return Err(e.into()),
        };
        // What a stopped answer held back of a character cut across tokens.
        if stop.is_none() {
            out!("{}", stream.finish())?;
        }
        outln!()?;
        match stop {
            None => errln!("(stopped)"),
            Some(StopReason::MaxTokens) => errln!("(answer cut at {} tokens: -n)", a.n),
            Some(StopReason::ContextFull) => errln!("(context full: /reset to start over)"),
            _ => {}
        }
        held = ids;
        held.extend(&sampled);
        let reply = tok
            .decode(&answer, true)
            .map_err(|e| anyhow!("decoding the answer: {e}"))?;
        messages.push(ChatMessage::new("assistant", &reply));
    }
    Ok(())
}

/// The conversation's figures so far, on stderr.
fn print_stats(session: &Session) {
    let s = session.stats();
    errln!(
        "prompt {} tokens ({:.1} tok/s), generated {} tokens ({:.1} tok/s), last time to first token {:.1} ms; context {} of {} positions ({:.1} MiB of KV)",
        s.prompt_tokens,
        s.prefill_tok_s,
        s.gen_tokens,
        s.decode_tok_s,
        s.ttft_ms,
        session.n_past(),
        session.n_ctx(),
        session.kv_bytes() as f64 / (1 << 20) as f64,
    );
    if session.model().config.moe.is_some() {
        let c = &s.cache;
        errln!(
            "experts: {} requests, hit rate {:.1} %, {:.1} MiB read, stall {:.1} ms; ExRep {:.3}",
            c.requests,
            100.0 * c.hit_rate,
            c.bytes_read as f64 / (1 << 20) as f64,
            c.stall_ms,
            s.routing.exrep
        );
    }
}
