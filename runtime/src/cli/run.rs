//! `cosmoe run`: text (or token ids) from a prompt.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Args};
use cosmoe::generate::{GenerateConfig, StopReason, StopStrings, TextStream};
use cosmoe::{Error, Session, TokenizerSource};

use super::{
    ctrl_c_cancels, init_threads, load, ranged, set_routing, ModelArgs, RoutingArgs, SamplerArgs,
    MAX_TOKENS,
};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "file", "ids"])))]
pub struct RunArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Prompt text (needs a tokenizer); `-` reads it from stdin.
    #[arg(short = 'p', long, conflicts_with_all = ["ids", "file"])]
    prompt: Option<String>,
    /// Prompt text from this file (needs a tokenizer).
    #[arg(short = 'f', long, conflicts_with = "ids")]
    file: Option<PathBuf>,
    /// Prompt as token ids, comma-separated: 5,17,42.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ids: Option<Vec<u32>>,
    /// Tokens to generate, 0 to 16777216 (0: evaluate the prompt only).
    #[arg(short = 'n', long = "n-tokens", default_value_t = 64, value_parser = ranged(0, MAX_TOKENS))]
    n: usize,
    /// Positions of the context, 1 to the model's trained context (default: that); KV memory
    /// follows it.
    #[arg(short = 'c', long, value_parser = ranged(1, MAX_TOKENS))]
    ctx_size: Option<usize>,
    /// When the context is full, drop the oldest half of it after the first --keep tokens and go on
    /// (as llama.cpp's context shift), instead of stopping.
    #[arg(long)]
    context_shift: bool,
    /// With --context-shift: the first tokens of the context that are never dropped (the prompt's
    /// start, e.g. its instructions).
    #[arg(long, default_value_t = 0, requires = "context_shift", value_parser = ranged(0, MAX_TOKENS))]
    keep: usize,
    /// Stop when the text contains this string (repeatable); the text ends before it.
    #[arg(long, value_name = "STRING")]
    stop: Vec<String>,
    #[command(flatten)]
    sampling: SamplerArgs,
    /// Print the generated token ids on one line, space-separated, and nothing else on stdout.
    #[arg(long)]
    print_ids: bool,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// tokenizer.json to use instead of the model folder's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object at the end (generated ids, text, why it stopped, the seed, and the
    /// report of `bench --json`) instead of streaming text.
    #[arg(long, conflicts_with = "print_ids")]
    json: bool,
    /// Write the experts every position chose (JSON) to this file (mixture-of-experts models).
    #[arg(long)]
    record_routing: Option<PathBuf>,
    #[command(flatten)]
    routing: RoutingArgs,
}

/// Why the run ended, as its summary line and `--json` say it.
fn stop_reason(stop: Option<StopReason>, stops: &StopStrings, a: &RunArgs, n_ctx: usize) -> String {
    match (stop, stops.found()) {
        (_, Some(s)) => format!("stop string {s:?}"),
        (None, _) => "interrupted (Ctrl-C)".into(),
        (Some(StopReason::Eos), _) => "end of sequence".into(),
        (Some(StopReason::MaxTokens), _) => format!("token limit (-n {})", a.n),
        (Some(StopReason::ContextFull), _) => format!("context full ({n_ctx} positions)"),
        (Some(StopReason::Callback), _) => "output closed".into(),
    }
}

/// A rate, or a dash when nothing was measured (never a rate over no time).
fn rate(tok_s: f64) -> String {
    if tok_s > 0.0 {
        format!("{tok_s:.1} tok/s")
    } else {
        "-".into()
    }
}

pub fn run(a: RunArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    if let Some(out) = &a.record_routing {
        let inputs = [
            Some(&a.m.model),
            a.tokenizer.as_ref(),
            a.routing.routing_trace.as_ref(),
            a.file.as_ref(),
        ];
        let inputs: Vec<&Path> = inputs.into_iter().flatten().map(PathBuf::as_path).collect();
        cosmoe::outfile::check_output(out, &inputs)?;
    }
    let mut stops = StopStrings::new(a.stop.clone()).map_err(|e| anyhow!("--stop: {e}"))?;
    // The prompt text is read before the model: a missing file is found at once.
    let text = match (&a.prompt, &a.file) {
        (Some(p), _) if p == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from stdin")?;
            Some(s)
        }
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the prompt from {}", f.display()))?,
        ),
        (None, None) => None,
    };
    let tokenizer = match &a.tokenizer {
        Some(p) => TokenizerSource::File(p.clone()),
        None => TokenizerSource::Auto,
    };
    let t0 = Instant::now();
    let model = load(&a.m, tokenizer)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    if a.record_routing.is_some() && model.config.moe.is_none() {
        bail!(
            "--record-routing: {} is a dense model, it routes nothing",
            a.m.model.display()
        );
    }
    let tok = model.tokenizer.as_ref();
    if !a.stop.is_empty() && (a.print_ids || tok.is_none()) {
        bail!(
            "--stop looks for text: it needs a tokenizer{}",
            if a.print_ids {
                " and no --print-ids"
            } else {
                ""
            }
        );
    }
    let prompt: Vec<u32> = match (&a.ids, text) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let t = model.tokenizer().map_err(|e| {
                anyhow!("{e}: pass the prompt as --ids, or a tokenizer.json with --tokenizer")
            })?;
            t.encode(text.as_str(), true)
                .map_err(|e| anyhow!("tokenizing the prompt: {e}"))?
                .get_ids()
                .to_vec()
        }
        (None, None) => bail!("give --prompt, --file or --ids"),
    };
    let sampler = a.sampling.config(0.0);
    let seed = sampler.seed;
    let cfg = GenerateConfig {
        max_new_tokens: a.n,
        stop_at_eos: !a.ignore_eos,
        context_shift: a.context_shift.then_some(a.keep),
        sampler,
    };

    let mut session = Session::new(model.clone());
    if let Some(n) = a.ctx_size {
        session.set_n_ctx(n)?;
    }
    if a.context_shift && a.keep + 2 > session.n_ctx() {
        bail!(
            "--keep {} leaves nothing to drop from a context of {}",
            a.keep,
            session.n_ctx()
        );
    }
    // Ids and context checked before any work.
    session.check_fits(&prompt)?;
    set_routing(&mut session, &a.routing, prompt.len() + a.n)?;
    if !a.print_ids && tok.is_none() {
        match &model.tokenizer_note {
            Some(n) => errln!("note: {n}; printing token ids"),
            None => errln!("note: no tokenizer, printing token ids"),
        }
    }
    // One stream of text for the terminal and for --json, so both end alike.
    let mut streamer = tok.filter(|_| !a.print_ids).map(TextStream::new);
    let stream_text = !a.print_ids && !a.json;
    let mut text = String::new();
    let mut tokens: Vec<u32> = Vec::new();
    let mut out_err = None;
    let mut emit = |piece: &str, text: &mut String| -> bool {
        text.push_str(piece);
        if stream_text && !piece.is_empty() {
            if let Err(e) = out!("{piece}") {
                // Nobody reads the rest (a closed pipe) or it cannot be written: stop generating.
                out_err = Some(e);
                return false;
            }
        }
        true
    };
    let running = ctrl_c_cancels(session.cancel_handle());
    running.store(true, Ordering::SeqCst);
    let r = session.complete(&prompt, &cfg, |t, last| {
        tokens.push(t);
        let piece = match &mut streamer {
            Some(s) => stops.push(&s.push(t, last)),
            None if a.print_ids || a.json => String::new(),
            None => format!("{t} "),
        };
        emit(&piece, &mut text) && stops.found().is_none()
    });
    running.store(false, Ordering::SeqCst);
    let stop = match r {
        Ok(g) => Some(g.stop),
        Err(Error::Cancelled) => None,
        Err(e) => return Err(e.into()),
    };
    // What a cut-off stream held back: a character split across tokens, a possible stop string.
    if stops.found().is_none() {
        let held = streamer
            .as_mut()
            .map(TextStream::finish)
            .unwrap_or_default();
        let tail = stops.push(&held);
        emit(&tail, &mut text);
        if stops.found().is_none() {
            let rest = stops.finish();
            emit(&rest, &mut text);
        }
    }
    if let Some(e) = out_err {
        return Err(e.into());
    }
    let reason = stop_reason(stop, &stops, &a, session.n_ctx());
    let stats = session.stats();
    if a.json {
        let report = cosmoe::report::BenchReport {
            model: a.m.model.display().to_string(),
            threads: model.n_threads(),
            load_ms,
            run: stats.clone(),
        };
        let text = tok.map(|_| text);
        let v = serde_json::json!({
            "tokens": tokens,
            "text": text,
            "stop": reason,
            "seed": seed,
            "report": report,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else if a.print_ids {
        let ids: Vec<String> = tokens.iter().map(u32::to_string).collect();
        outln!("{}", ids.join(" "))?;
    } else {
        outln!()?;
    }
    errln!(
        "prompt {} tokens in {:.1} ms ({}); generated {} tokens, decode {}; stopped: {reason}",
        stats.prompt_tokens,
        stats.prefill_ms,
        rate(stats.prefill_tok_s),
        tokens.len(),
        rate(stats.decode_tok_s),
    );
    if let Some(trace) = session.routing_trace() {
        let c = &stats.cache;
        errln!(
            "experts: {} requests, hit rate {:.1} %, {:.1} MiB read, stall {:.1} ms, {} evictions; ExRep {:.3}",
            c.requests,
            100.0 * c.hit_rate,
            c.bytes_read as f64 / (1 << 20) as f64,
            c.stall_ms,
            c.evictions,
            stats.routing.exrep
        );
        for n in &stats.notices {
            errln!("note: {n}");
        }
        if let Some(p) = &a.record_routing {
            trace.save(p)?;
        }
    }
    if stop.is_none() {
        // Interrupted: what was generated is out; the status says it was cut short.
        std::process::exit(130);
    }
    Ok(())
}
