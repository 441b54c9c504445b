//! `cosmoe compare-routing`: what a routing other than the model's own (cache-aware routing) costs in
//! quality and gains in the expert cache, on a text decoded token by token both ways.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use cosmoe::compare::{compare_routing, CompareConfig};
use cosmoe::{Session, TokenizerSource};

use super::{init_threads, load, print_report, ranged, ModelArgs, MAX_TOKENS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct CompareRoutingArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// The text (UTF-8); it must tokenize to at least one window.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// The routing to compare with exact routing: cache-aware[:lambda=0.5|margin=X][,keep=1].
    #[arg(long)]
    routing: String,
    /// Tokens per window, 4 to the model's context; the second half of each window is scored.
    #[arg(short = 'c', long = "ctx", default_value_t = 256, value_parser = ranged(4, MAX_TOKENS))]
    ctx: usize,
    /// At most this many windows, 1 to 16777216 (default: all the text holds).
    #[arg(long, value_parser = ranged(1, MAX_TOKENS))]
    chunks: Option<usize>,
    /// One JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write the routing of the --routing side to this file (JSON, the windows one after another),
    /// for `simulate` or `bench --routing-trace`.
    #[arg(long)]
    record_routing: Option<PathBuf>,
}

pub fn compare_routing_cmd(a: CompareRoutingArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    if let Some(out) = &a.record_routing {
        cosmoe::outfile::check_output(out, &[a.m.model.as_path(), a.file.as_path()])?;
    }
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    // Two loads: each routing gets a cache of its own, configured alike.
    let exact = load(&a.m, TokenizerSource::Auto)?;
    if exact.config.moe.is_none() {
        bail!(
            "{} is a dense model: it routes nothing",
            a.m.model.display()
        );
    }
    let other = load(&a.m, TokenizerSource::None)?;
    let mut other = Session::new(other);
    other
        .route_cache_aware(&a.routing)
        .map_err(|e| anyhow!("--routing: {e}"))?;
    let tok = exact
        .tokenizer()
        .map_err(|e| anyhow!("{e}: compare-routing needs a tokenizer"))?;
    let tokens = tok
        .encode(text.as_str(), true)
        .map_err(|e| anyhow!("tokenizing {}: {e}", a.file.display()))?
        .get_ids()
        .to_vec();
    let cfg = CompareConfig {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
        record_routing: a.record_routing.is_some(),
    };
    let r = compare_routing(&mut Session::new(exact.clone()), &mut other, &tokens, &cfg)?;
    if let (Some(p), Some(trace)) = (&a.record_routing, &r.other_trace) {
        trace.save(p)?;
    }
    print_report(&r, a.json)
}
