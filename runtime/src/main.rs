//! The `cosmoe` command line: the top-level parser and the dispatch to one file per subcommand
//! (`cli/`).

#[macro_use]
mod cli;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

use cli::{
    bench::BenchArgs, bench_kernels::BenchKernelsArgs, chat::ChatArgs,
    compare_routing::CompareRoutingArgs, convert::ConvertArgs, demo::DemoArgs,
    inspect::InspectArgs, logits::LogitsArgs, perplexity::PerplexityArgs, run::RunArgs,
    simulate::SimulateArgs, synth::SynthArgs,
};

#[derive(Parser)]
#[command(
    name = "cosmoe",
    version,
    about = "On-device inference for sparse Mixture-of-Experts language models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text (or token ids) from a prompt.
    Run(RunArgs),
    /// Talk with the model through its chat template (lines from a terminal or stdin).
    Chat(ChatArgs),
    /// Write the logits of every position of `--ids` as little-endian f32, row-major [n_ids, vocab].
    Logits(LogitsArgs),
    /// Perplexity over a text file (as llama.cpp's llama-perplexity), with ExRep and expert usage.
    Perplexity(PerplexityArgs),
    /// Show a model's architecture, sizes, parameter counts and expert/resident byte split.
    Inspect(InspectArgs),
    /// Kernel speeds against a read-bandwidth probe and an FMA probe measured in the same run.
    BenchKernels(BenchKernelsArgs),
    /// Write a Hugging Face checkpoint folder as a GGUF file that cosmoe and llama.cpp run.
    Convert(ConvertArgs),
    /// Write a GGUF with random weights at the shapes of a real model (for benchmarks without downloads).
    Synth(SynthArgs),
    /// Replay a routing trace through each cache policy at several budgets, against Belady's bound.
    Simulate(SimulateArgs),
    /// Cache-aware routing against exact routing on a text: quality lost (KL, top-1, perplexity)
    /// beside cache hits, bytes read and speed gained.
    CompareRouting(CompareRoutingArgs),
    /// Prefill and decode on a model, reporting latency, cache hits, flash reads, stall, memory and ExRep.
    Bench(BenchArgs),
    /// Synthesise the paper's wearable model (once) and bench it with half its experts in RAM.
    Demo(DemoArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version go to stdout through `out!`: clap would ignore a closed pipe or a
        // full disk. (To a terminal clap prints them itself, in colour.)
        Err(e) if !e.use_stderr() && !std::io::stdout().is_terminal() => {
            if let Err(err) = out!("{}", e.render()) {
                cli::output::fail(err.into());
            }
            std::process::exit(e.exit_code());
        }
        Err(e) => e.exit(),
    };
    #[cfg(unix)]
    if let Err(e) = cli::handle_signals() {
        cli::output::fail(e);
    }
    let r = match cli.cmd {
        Cmd::Run(a) => cli::run::run(a),
        Cmd::Chat(a) => cli::chat::chat(a),
        Cmd::Logits(a) => cli::logits::logits(a),
        Cmd::Perplexity(a) => cli::perplexity::perplexity_cmd(a),
        Cmd::Inspect(a) => cli::inspect::inspect(a),
        Cmd::BenchKernels(a) => cli::bench_kernels::bench_kernels(a),
        Cmd::Convert(a) => cli::convert::convert(a),
        Cmd::Synth(a) => cli::synth::synth(a),
        Cmd::Bench(a) => cli::bench::bench(a),
        Cmd::Simulate(a) => cli::simulate::simulate(a),
        Cmd::CompareRouting(a) => cli::compare_routing::compare_routing_cmd(a),
        Cmd::Demo(a) => cli::demo::demo(a),
    };
    if let Err(e) = r {
        cli::output::fail(e);
    }
}
