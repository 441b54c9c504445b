//! `cosmoe convert`: a Hugging Face checkpoint folder written as a GGUF file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use cosmoe::quant::{FileType, QuantScheme};

use super::{init_threads, parse_alignment, parse_ftype, ranged, MAX_THREADS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct ConvertArgs {
    /// Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).
    src: PathBuf,
    /// GGUF file to write.
    #[arg(short, long)]
    out: PathBuf,
    /// Types of the weight matrices: a llama-quantize file type (q4_k_m, q4_k_s, q5_k_m, q5_k_s,
    /// q3_k_s, q3_k_m, q3_k_l, q2_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs; each
    /// tensor's type as llama-quantize picks it, e.g. q4_0 puts output.weight in Q6_K), or f32,
    /// f16, bf16; norms, biases and routers stay f32.
    #[arg(long = "type", value_parser = parse_ftype)]
    ftype: FileType,
    /// Every matrix in the file type's one block type (llama-quantize's --pure).
    #[arg(long)]
    pure: bool,
    /// tokenizer.json to write into the file instead of the folder's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tensor alignment in bytes (a power of two, 32 to 65536). 4096 lets one aligned read fetch an expert;
    /// use 32 for a file that llama.cpp's llama-quantize will rewrite (it pads to 32 whatever the
    /// file says).
    #[arg(long, default_value_t = cosmoe::convert::ALIGNMENT, value_parser = parse_alignment)]
    alignment: u32,
    /// Worker threads for quantising, 1 to 1024 (default: physical cores).
    #[arg(short = 't', long, value_parser = ranged(1, MAX_THREADS))]
    threads: Option<usize>,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    init_threads(a.threads)?;
    let cfg = cosmoe::convert::ConvertConfig {
        src: a.src,
        out: a.out,
        quant: QuantScheme {
            ftype: a.ftype,
            pure: a.pure,
        },
        tokenizer: a.tokenizer,
        alignment: a.alignment,
        progress: true,
    };
    let t0 = Instant::now();
    let r = cosmoe::convert::convert(&cfg)?;
    for n in &r.notices {
        errln!("note: {n}");
    }
    errln!(
        "wrote {} ({}, {} tensors, {:.1} MiB) in {:.1} s",
        cfg.out.display(),
        r.architecture,
        r.tensors,
        r.file_bytes as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
