//! `cosmoe perplexity`: perplexity over a text file, as llama.cpp's `llama-perplexity` computes it, and
//! what the routing did over it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use cosmoe::perplexity::{perplexity, PerplexityConfig};
use cosmoe::{Session, TokenizerSource};

use super::{init_threads, load, print_report, ranged, ModelArgs, MAX_TOKENS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct PerplexityArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// The text (UTF-8); it must tokenize to at least two windows.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Tokens per window, 4 to the model's context (llama-perplexity's -c); the second half of each
    /// window is scored.
    #[arg(short = 'c', long = "ctx", default_value_t = 512, value_parser = ranged(4, MAX_TOKENS))]
    ctx: usize,
    /// Score at most this many windows, 1 to 16777216 (default: all the text holds).
    #[arg(long, value_parser = ranged(1, MAX_TOKENS))]
    chunks: Option<usize>,
    /// tokenizer.json to use instead of the model's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// One JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write the experts every token chose, and the router's logits for every expert, to this file
    /// (JSON, the windows one after another; mixture-of-experts models).
    #[arg(long)]
    record_routing: Option<PathBuf>,
}

pub fn perplexity_cmd(a: PerplexityArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    if let Some(out) = &a.record_routing {
        let inputs: Vec<&Path> = [Some(&a.m.model), Some(&a.file), a.tokenizer.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        cosmoe::outfile::check_output(out, &inputs)?;
    }
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let tokenizer = match &a.tokenizer {
        Some(p) => TokenizerSource::File(p.clone()),
        None => TokenizerSource::Auto,
    };
    let model = load(&a.m, tokenizer)?;
    if a.record_routing.is_some() && model.config.moe.is_none() {
        bail!(
            "--record-routing: {} is a dense model, it routes nothing",
            a.m.model.display()
        );
    }
    let tok = model
        .tokenizer()
        .map_err(|e| anyhow!("{e}: perplexity needs a tokenizer (give one with --tokenizer)"))?;
    let tokens = tok
        .encode(text.as_str(), true)
        .map_err(|e| anyhow!("tokenizing {}: {e}", a.file.display()))?
        .get_ids()
        .to_vec();
    let cfg = PerplexityConfig {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
        record_routing: a.record_routing.is_some(),
        ..Default::default()
    };
    let mut session = Session::new(model.clone());
    let run = perplexity(&mut session, &tokens, &cfg, |i, ppl| {
        if !a.json {
            eprint_progress(i, ppl);
        }
    })?;
    if !a.json {
        errln!("");
    }
    print_report(&run.report, a.json)?;
    if let (Some(p), Some(trace)) = (&a.record_routing, &run.trace) {
        trace.save(p)?;
    }
    Ok(())
}

/// `[i]ppl,` as llama-perplexity prints its running figure, on one stderr line.
fn eprint_progress(i: usize, ppl: f64) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "[{}]{ppl:.4},", i + 1).and_then(|()| err.flush());
}
