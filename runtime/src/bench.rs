//! `cosmoe bench-kernels`: each weight format's matvec on matrices far larger than the last-level
//! cache, against a read-bandwidth probe measured in the same run, and prefill matmul against an FMA
//! probe. Figures are medians over repetitions.

use std::time::Instant;

use cosmoe_kernels::{kernels, probe, DType, MatRef};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct KernelBenchConfig {
    /// Bytes of weights per matrix (and of the probe buffer), MiB.
    pub size_mib: usize,
    /// Timed repetitions (after one warm-up).
    pub reps: usize,
    /// Columns of the matvec matrices (rows follow from the size).
    pub cols: usize,
    /// Tokens of the prefill matmul.
    pub prefill_tokens: usize,
    pub formats: Vec<DType>,
}

impl Default for KernelBenchConfig {
    fn default() -> Self {
        KernelBenchConfig {
            size_mib: 512,
            reps: 9,
            cols: 4096,
            prefill_tokens: 64,
            formats: DType::ALL.to_vec(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
}

fn time(reps: usize, mut f: impl FnMut()) -> Timing {
    f(); // warm-up: page faults, thread wake-up
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    Timing {
        median_s: t[t.len() / 2],
        min_s: t[0],
        max_s: t[t.len() - 1],
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MatvecResult {
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub weight_bytes: usize,
    pub timing: Timing,
    /// Weight bytes per second at the median, GB/s (1e9).
    pub gb_per_s: f64,
    /// `gb_per_s` over the probe's.
    pub ratio_to_probe: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatmulResult {
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub tokens: usize,
    pub timing: Timing,
    pub gflops: f64,
    /// `gflops` over the FMA probe's.
    pub ratio_to_fma_peak: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelBenchReport {
    pub tier: String,
    pub features: Vec<String>,
    pub threads: usize,
    pub probe_bytes: usize,
    pub probe: Timing,
    pub probe_gb_per_s: f64,
    pub fma_peak_gflops: f64,
    pub matvec: Vec<MatvecResult>,
    pub matmul: Vec<MatmulResult>,
}

/// Weights of `dtype` filled with a repeating pattern of ordinary values (no NaNs or subnormals, which
/// some CPUs handle slowly), without the cost of quantising hundreds of MiB (random valid blocks for
/// a format without a quantiser: `cosmoe_kernels::sample::weights`).
fn pattern_weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let sample: Vec<f32> = (0..dtype.block_len().max(64) * 4)
        .map(|i| ((i * 7919 % 257) as f32 / 257.0 - 0.5) * 0.05)
        .collect();
    let n = sample.len();
    let unit = cosmoe_kernels::sample::weights(dtype, &sample, n).unwrap_or_default();
    let total = dtype.row_bytes(cols).unwrap_or(0) * rows;
    unit.iter().copied().cycle().take(total).collect()
}

/// Bytes of memory available to new allocations (Linux: MemAvailable of /proc/meminfo).
fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fails when the benchmark's buffers cannot fit: it holds one matrix of `size_mib` and, while
/// making it, the pattern it repeats, so about twice that at once.
fn check_memory(size_mib: usize) -> crate::Result<usize> {
    let too_big = || {
        crate::Error::InvalidArgument(format!(
            "--size-mib {size_mib}: the benchmark needs about {} MiB{}",
            2 * size_mib,
            available_memory().map_or(String::new(), |a| format!(
                ", {} MiB are available",
                a >> 20
            ))
        ))
    };
    let size = size_mib.checked_mul(1 << 20).ok_or_else(too_big)?;
    match available_memory() {
        Some(avail) if 2 * size as u64 > avail => Err(too_big()),
        // Where the OS does not say, an allocation that cannot be made is an error, not an abort.
        _ => Vec::<u8>::new()
            .try_reserve_exact(2 * size)
            .map(|()| size)
            .map_err(|_| too_big()),
    }
}

pub fn bench_kernels(cfg: &KernelBenchConfig) -> crate::Result<KernelBenchReport> {
    let k = kernels();
    let size = check_memory(cfg.size_mib)?;

    // Read bandwidth: a streaming sum over a buffer far larger than the last-level cache.
    let buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let probe = time(cfg.reps, || {
        std::hint::black_box(probe::stream_sum(&buf));
    });
    drop(buf);
    let probe_gb = size as f64 / probe.median_s / 1e9;

    let iters = 20_000_000;
    let fma = time(3, || {
        std::hint::black_box(probe::fma_flops(iters));
    });
    let flops_per_run = (rayon::current_num_threads() * iters) as f64 * probe::fma_flops_per_iter();
    let fma_gflops = flops_per_run / fma.median_s / 1e9;

    let mut matvec = Vec::new();
    for &dtype in &cfg.formats {
        let Some(row_bytes) = dtype.row_bytes(cfg.cols) else {
            continue;
        };
        let rows = (size / row_bytes).max(1);
        let w = pattern_weights(dtype, rows, cfg.cols);
        let Ok(m) = MatRef::new(dtype, rows, cfg.cols, &w) else {
            continue;
        };
        let x: Vec<f32> = (0..cfg.cols)
            .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut y = vec![0f32; rows];
        let t = time(cfg.reps, || k.matvec(m, &x, &mut y));
        let gb = w.len() as f64 / t.median_s / 1e9;
        matvec.push(MatvecResult {
            format: dtype.to_string(),
            rows,
            cols: cfg.cols,
            weight_bytes: w.len(),
            timing: t,
            gb_per_s: gb,
            ratio_to_probe: gb / probe_gb,
        });
    }

    // Prefill: a square matrix (fits in cache) times many tokens: compute-bound.
    let mut matmul = Vec::new();
    let (rows, cols, n) = (2048, 2048, cfg.prefill_tokens.max(1));
    for &dtype in &cfg.formats {
        let w = pattern_weights(dtype, rows, cols);
        let Ok(m) = MatRef::new(dtype, rows, cols, &w) else {
            continue;
        };
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i % 11) as f32 - 5.0) * 0.1)
            .collect();
        let mut y = vec![0f32; n * rows];
        let t = time(cfg.reps.min(5), || k.matmul(m, &x, n, &mut y));
        let gflops = 2.0 * (rows * cols * n) as f64 / t.median_s / 1e9;
        matmul.push(MatmulResult {
            format: dtype.to_string(),
            rows,
            cols,
            tokens: n,
            timing: t,
            gflops,
            ratio_to_fma_peak: gflops / fma_gflops,
        });
    }

    Ok(KernelBenchReport {
        tier: k.tier.name().to_owned(),
        features: k.features.iter().map(|s| s.to_string()).collect(),
        threads: rayon::current_num_threads(),
        probe_bytes: size,
        probe,
        probe_gb_per_s: probe_gb,
        fma_peak_gflops: fma_gflops,
        matvec,
        matmul,
    })
}

impl std::fmt::Display for KernelBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "kernels {} {:?}, {} threads",
            self.tier, self.features, self.threads
        )?;
        writeln!(
            f,
            "read-bandwidth probe  {:.2} GB/s (streaming sum of {} MiB; median of runs, min {:.2} / max {:.2} GB/s)",
            self.probe_gb_per_s,
            self.probe_bytes >> 20,
            self.probe_bytes as f64 / self.probe.max_s / 1e9,
            self.probe_bytes as f64 / self.probe.min_s / 1e9,
        )?;
        writeln!(
            f,
            "FMA probe             {:.1} GFLOP/s (f32)",
            self.fma_peak_gflops
        )?;
        writeln!(
            f,
            "\nmatvec (decode)       rows x cols       MiB    GB/s   of probe"
        )?;
        for r in &self.matvec {
            writeln!(
                f,
                "  {:<6}             {:>6} x {:<6} {:>6} {:>7.2} {:>8.1} %",
                r.format,
                r.rows,
                r.cols,
                r.weight_bytes >> 20,
                r.gb_per_s,
                100.0 * r.ratio_to_probe
            )?;
        }
        writeln!(
            f,
            "\nmatmul (prefill)      rows x cols x tokens   GFLOP/s  of FMA peak"
        )?;
        for r in &self.matmul {
            writeln!(
                f,
                "  {:<6}             {} x {} x {:<8} {:>8.1} {:>8.1} %",
                r.format,
                r.rows,
                r.cols,
                r.tokens,
                r.gflops,
                100.0 * r.ratio_to_fma_peak
            )?;
        }
        Ok(())
    }
}
