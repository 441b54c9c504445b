//! `cosmoe bench-kernels`: kernel speeds against bandwidth and FMA probes of the same run.

use anyhow::{bail, Result};
use clap::Args;
use cosmoe::bench::KernelBenchConfig;
use cosmoe_kernels::DType;

use super::{init_threads, parse_dtype, print_report};

#[derive(Args)]
pub struct BenchKernelsArgs {
    /// Worker threads (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// MiB of weights per matrix and of the probe buffer (keep it far above the last-level cache).
    #[arg(long, default_value_t = 512)]
    size_mib: usize,
    /// Timed repetitions per figure (medians are reported).
    #[arg(long, default_value_t = 9)]
    reps: usize,
    /// Formats to measure, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_dtype)]
    formats: Option<Vec<DType>>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn bench_kernels(a: BenchKernelsArgs) -> Result<()> {
    init_threads(a.threads)?;
    if a.size_mib == 0 {
        bail!("--size-mib must be at least 1");
    }
    let cfg = KernelBenchConfig {
        size_mib: a.size_mib,
        reps: a.reps,
        formats: a.formats.unwrap_or_else(|| DType::ALL.to_vec()),
        ..Default::default()
    };
    let report = cosmoe::bench::bench_kernels(&cfg);
    print_report(&report, a.json)
}
