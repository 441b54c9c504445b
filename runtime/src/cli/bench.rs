//! `cosmoe bench`: prefill and decode on a model, with what they cost.

use anyhow::{bail, Result};
use clap::Args;
use cosmoe::{Session, TokenizerSource};
use std::time::Instant;

use super::{init_threads, load, print_report, set_routing, ModelArgs, RoutingArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub m: ModelArgs,
    /// Prompt length (random token ids).
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens to generate (greedy).
    #[arg(long, default_value_t = 128)]
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
    if a.gen_tokens == 0 {
        bail!("--gen-tokens must be at least 1");
    }
    let t0 = Instant::now();
    let model = load(&a.m, TokenizerSource::None)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut session = Session::new(model);
    set_routing(
        &mut session,
        &a.routing,
        a.prompt_tokens.max(1) + a.gen_tokens,
    )?;
    let cfg = cosmoe::report::BenchConfig {
        prompt_tokens: a.prompt_tokens,
        gen_tokens: a.gen_tokens,
        seed: a.seed,
    };
    let name = a.m.model.display().to_string();
    let r = cosmoe::report::bench(&mut session, load_ms, &cfg, &name)?;
    print_report(&r, a.json)
}
