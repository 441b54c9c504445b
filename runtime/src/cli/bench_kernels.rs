//! `cosmoe bench-kernels`: kernel speeds against bandwidth and FMA probes of the same run.

use anyhow::Result;
use clap::Args;
use cosmoe::bench::KernelBenchConfig;
use cosmoe_kernels::DType;

use super::{init_threads, parse_dtype, print_report, ranged, MAX_THREADS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct BenchKernelsArgs {
    /// Worker threads, 1 to 1024 (default: physical cores).
    #[arg(short = 't', long, value_parser = ranged(1, MAX_THREADS))]
    threads: Option<usize>,
    /// MiB of weights per matrix and of the probe buffer, 1 to 65536 (keep it far above the
    /// last-level cache, and below a third of the RAM).
    #[arg(long, default_value_t = 512, value_parser = ranged(1, 65536))]
    size_mib: usize,
    /// Timed repetitions per figure, 1 to 1000 (medians are reported).
    #[arg(long, default_value_t = 9, value_parser = ranged(1, 1000))]
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
    let cfg = KernelBenchConfig {
        size_mib: a.size_mib,
        reps: a.reps,
        formats: a.formats.unwrap_or_else(|| DType::ALL.to_vec()),
        ..Default::default()
    };
    let report = cosmoe::bench::bench_kernels(&cfg)?;
    print_report(&report, a.json)
}
