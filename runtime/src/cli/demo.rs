//! `cosmoe demo`: the paper's wearable model, synthesised once and benched with half its experts
//! in RAM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cosmoe::quant::QuantScheme;
use cosmoe_kernels::DType;

use super::bench::{bench_on_pool, BenchArgs};
use super::{init_threads, ranged, CacheArgs, ModelArgs, RoutingArgs, MAX_THREADS, MAX_TOKENS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct DemoArgs {
    /// Where the synthesised model is kept (default: $COSMOE_CACHE_DIR, else ~/.cache/cosmoe).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Prompt length (random token ids), 1 to 16777216; with --gen-tokens within the model's
    /// context (4096).
    #[arg(long, default_value_t = 64, value_parser = ranged(1, MAX_TOKENS))]
    prompt_tokens: usize,
    /// Tokens to generate (greedy), 1 to 16777216.
    #[arg(long, default_value_t = 128, value_parser = ranged(1, MAX_TOKENS))]
    gen_tokens: usize,
    /// Worker threads, 1 to 1024 (default: physical cores).
    #[arg(short = 't', long, value_parser = ranged(1, MAX_THREADS))]
    threads: Option<usize>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The demo's cache folder.
fn demo_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("COSMOE_CACHE_DIR").map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cosmoe")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/cosmoe")))
        .unwrap_or_else(|| PathBuf::from("target/cosmoe-cache"))
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let threads = a.threads.unwrap_or_else(num_cpus::get_physical);
    init_threads(Some(threads))?;
    let dir = demo_dir(a.dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("cosmoe-wearable.q4_0.gguf");
    let preset = cosmoe::synth::Preset::find("cosmoe-wearable")?;
    // Before synthesising: a run the model's context cannot hold fails at once.
    let bench = cosmoe::report::BenchConfig {
        prompt_tokens: a.prompt_tokens,
        gen_tokens: a.gen_tokens,
        seed: 0,
    };
    bench.check(preset.context)?;
    if !path.is_file() {
        errln!(
            "synthesising {} once into {} ...",
            preset.about,
            path.display()
        );
        cosmoe::synth::synth(&cosmoe::synth::SynthConfig {
            preset: preset.clone(),
            quant: QuantScheme::pure(DType::Q4_0),
            out: path.clone(),
            seed: 0,
            progress: !a.json,
            alignment: cosmoe::convert::ALIGNMENT,
        })?;
    }
    let routing = RoutingArgs {
        routing_trace: None,
        routing: Some("synthetic:exrep=0.44".into()),
        stretch_trace: false,
    };
    let m = ModelArgs {
        model: path.clone(),
        threads: Some(threads),
        quantize: None,
        pure: false,
        cache: CacheArgs {
            expert_cache_mb: None,
            expert_cache_pct: Some(50.0),
            expert_cache_experts: None,
            io: cosmoe_cache::IoMode::Direct,
            prefetch: cosmoe::routing::Prefetch::History,
            io_threads: 2,
            cache_policy: None,
        },
    };
    if !a.json {
        errln!(
            "{}: random weights, routed like a trained model (ExRep 0.44, the paper's baseline), \
             half of the expert bytes in RAM, the rest read from flash with O_DIRECT",
            preset.name
        );
    }
    bench_on_pool(BenchArgs {
        m,
        prompt_tokens: a.prompt_tokens,
        gen_tokens: a.gen_tokens,
        routing,
        seed: 0,
        json: a.json,
    })
}
