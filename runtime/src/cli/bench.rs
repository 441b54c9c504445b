//! `cosmoe bench`: prefill and decode on a model, with what they cost.

use anyhow::Result;
use clap::Args;
use cosmoe::{Session, TokenizerSource};
use std::time::Instant;

use super::{
    init_threads, load, print_report, ranged, set_routing, ModelArgs, RoutingArgs, MAX_TOKENS,
};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct BenchArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// Prompt length (random token ids), 1 to 16777216; with --gen-tokens within the context.
    #[arg(long, default_value_t = 128, value_parser = ranged(1, MAX_TOKENS))]
    pub prompt_tokens: usize,
    /// Tokens to generate (greedy), 1 to 16777216.
    #[arg(long, default_value_t = 128, value_parser = ranged(1, MAX_TOKENS))]
    pub gen_tokens: usize,
    #[command(flatten)]
    pub routing: RoutingArgs,
    /// Seed of the prompt ids.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One JSON object instead of a table (docs/report.md lists the fields).
    #[arg(long)]
    pub json: bool,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    bench_on_pool(a)
}

/// `bench` on the already started thread pool.
pub fn bench_on_pool(a: BenchArgs) -> Result<()> {
    let cfg = cosmoe::report::BenchConfig {
        prompt_tokens: a.prompt_tokens,
        gen_tokens: a.gen_tokens,
        seed: a.seed,
    };
    let t0 = Instant::now();
    let model = load(&a.m, TokenizerSource::None)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut session = Session::new(model);
    // Before any work: a run that cannot fit fails now, not after its prefill.
    cfg.check(session.n_ctx())?;
    set_routing(&mut session, &a.routing, a.prompt_tokens + a.gen_tokens)?;
    let name = a.m.model.display().to_string();
    let r = cosmoe::report::bench(&mut session, load_ms, &cfg, &name)?;
    print_report(&r, a.json)
}
