//! `cosmoe synth`: a GGUF file with random weights at the shapes of a real model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use cosmoe::quant::{FileType, QuantScheme};

use super::{parse_alignment, parse_ftype};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct SynthArgs {
    /// Model shapes: cosmoe-wearable, cosmoe-phone, cosmoe-wearable-wd, cosmoe-phone-wd (weight-decomposed
    /// experts), olmoe-1b-7b, granite-1b-a400m, qwen3-30b-a3b.
    #[arg(long)]
    preset: String,
    /// Types of the weight matrices: a llama-quantize file type (q4_k_m, q4_k_s, q5_k_m, q5_k_s,
    /// q3_k_s, q3_k_m, q3_k_l, q2_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs; each
    /// tensor's type as llama-quantize picks it, e.g. q4_0 puts output.weight in Q6_K), or f32 (a
    /// source to quantise), f16, bf16. Their values are the f32 file's quantised; `--pure` q4_0 and
    /// q8_0 are random blocks, faster for the large presets, and so are the IQ1/IQ2/IQ3 types
    /// (iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m; only with --pure).
    #[arg(long = "type", value_parser = parse_ftype)]
    ftype: FileType,
    /// Every matrix in the file type's one block type (llama-quantize's --pure).
    #[arg(long)]
    pure: bool,
    /// GGUF file to write.
    #[arg(short, long)]
    out: PathBuf,
    /// Random seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tensor alignment in bytes (a power of two, 32 to 65536); 32 for a file llama-quantize will rewrite.
    #[arg(long, default_value_t = cosmoe::convert::ALIGNMENT, value_parser = parse_alignment)]
    alignment: u32,
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let preset = cosmoe::synth::Preset::find(&a.preset)?;
    let cfg = cosmoe::synth::SynthConfig {
        preset,
        quant: QuantScheme {
            ftype: a.ftype,
            pure: a.pure,
        },
        out: a.out,
        seed: a.seed,
        progress: true,
        alignment: a.alignment,
    };
    let t0 = Instant::now();
    let n = cosmoe::synth::synth(&cfg)?;
    errln!(
        "wrote {} ({}, random weights, {:.1} MiB) in {:.1} s",
        cfg.out.display(),
        cfg.preset.about,
        n as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
