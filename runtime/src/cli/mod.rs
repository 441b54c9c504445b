//! The `cosmoe` subcommands, one file each (its arguments and its handler), and what several of
//! them share: the model and cache flags, the routing flags, the thread pool.

// First: its macros (`out!`, `outln!`, `errln!`) serve the modules below.
#[macro_use]
pub mod output;

pub mod bench;
pub mod bench_kernels;
pub mod chat;
pub mod convert;
pub mod demo;
pub mod inspect;
pub mod logits;
pub mod run;
pub mod synth;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use cosmoe::quant::{FileType, QuantScheme};
use cosmoe::{LoadOptions, Model, Session, TokenizerSource};
use cosmoe_kernels::DType;

#[derive(Args)]
pub struct RoutingArgs {
    /// Route by this recorded trace (from `run --record-routing`) instead of the model's routers.
    #[arg(long, conflicts_with = "routing")]
    pub routing_trace: Option<PathBuf>,
    /// Route by a generator instead of the routers: synthetic:exrep=0.44[,skew=1.0][,seed=N].
    #[arg(long)]
    pub routing: Option<String>,
}

#[derive(Args)]
pub struct ModelArgs {
    /// Model folder (config.json, *.safetensors, tokenizer.json) or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// Worker threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Convert the weight matrices on load as llama-quantize would: a file type (q4_k_m, q4_k_s,
    /// q5_k_m, q5_k_s, q3_k_s, q3_k_m, q3_k_l, q2_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl,
    /// iq4_xs), or f16, bf16, f32.
    #[arg(long, value_parser = parse_ftype)]
    pub quantize: Option<FileType>,
    /// With --quantize: every matrix in the file type's one block type (llama-quantize's --pure).
    #[arg(long, requires = "quantize")]
    pub pure: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Args)]
pub struct CacheArgs {
    /// Expert cache budget in MiB (default: every expert resident).
    #[arg(long, conflicts_with = "expert_cache_pct")]
    pub expert_cache_mb: Option<u64>,
    /// Expert cache budget as a percentage of all expert bytes.
    #[arg(long)]
    pub expert_cache_pct: Option<f64>,
    /// How experts are read: direct (O_DIRECT pread), buffered (pread) or mmap (the OS page cache decides).
    #[arg(long, default_value = "direct")]
    pub io: cosmoe_cache::IoMode,
    /// Expert prediction for prefetching: none, gate, history or gate+history.
    #[arg(long, default_value = "none")]
    pub prefetch: cosmoe::routing::Prefetch,
    /// Background reader threads: they read a layer's missing experts while it computes the others,
    /// and fetch predicted experts (0: every read happens in the forward pass).
    #[arg(long, default_value_t = 2)]
    pub io_threads: usize,
    /// Which expert leaves the cache first: layer (experts their layer stopped using, then the layer
    /// just finished, the running layer last: Belady's order if the next token reuses this token's
    /// experts; measured better than LRU, docs/benchmarks.md) or lru.
    #[arg(long, default_value = "layer")]
    pub cache_policy: cosmoe_cache::PolicyKind,
}

impl CacheArgs {
    fn options(
        &self,
        quantize: Option<QuantScheme>,
        tokenizer: TokenizerSource,
    ) -> Result<LoadOptions> {
        if let Some(p) = self.expert_cache_pct {
            if !(0.0..=100.0).contains(&p) {
                bail!("--expert-cache-pct must be in 0..=100, got {p}");
            }
        }
        Ok(LoadOptions {
            quantize,
            cache: cosmoe_cache::CacheConfig {
                budget: self.expert_cache_mb.map(|m| m << 20),
                io: self.io,
                prefetch_threads: self.io_threads,
                policy: self.cache_policy,
                ..Default::default()
            },
            cache_share: self.expert_cache_pct.map(|p| p / 100.0),
            prefetch: self.prefetch,
            threads: None,
            tokenizer,
        })
    }
}

pub fn parse_ftype(s: &str) -> Result<FileType, String> {
    QuantScheme::parse(s, false)
        .map(|q| q.ftype)
        .map_err(|e| e.to_string())
}

pub fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::parse(s).ok_or_else(|| {
        let all: Vec<String> = DType::ALL.iter().map(|d| d.name().to_lowercase()).collect();
        format!("unknown weight format `{s}` ({})", all.join(", "))
    })
}

/// On SIGINT, SIGTERM or SIGHUP: removes the output files being written ([`cosmoe::outfile`]),
/// then dies of the signal as if unhandled (so the shell shows 130 for Ctrl-C, and a script's loop
/// sees the interruption). A signal that was ignored when cosmoe started (`nohup`, a background
/// job) stays ignored.
#[cfg(unix)]
pub fn remove_parts_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let wanted: Vec<libc::c_int> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&s| !ignored(s))
        .collect();
    let mut signals =
        signal_hook::iterator::Signals::new(&wanted).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("cosmoe-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                cosmoe::outfile::remove_parts();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Whether `sig` is ignored (SIG_IGN), as `nohup` leaves SIGHUP.
#[cfg(unix)]
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: with a null new action, sigaction only writes the current action into `old`, a plain
    // C struct for which all zeroes is a valid value.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Prints `report` on stdout: pretty JSON with `json`, else its table.
pub fn print_report(
    report: &(impl serde::Serialize + std::fmt::Display),
    json: bool,
) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?)?;
    } else {
        out!("{report}")?;
    }
    Ok(())
}

/// Sizes the global rayon pool that the kernels split their work over.
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    let n = threads.unwrap_or_else(num_cpus::get_physical);
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("starting the thread pool")
}

/// Loads the model (on rayon's global pool, which [`init_threads`] sized), with the tokenizer
/// `tokenizer` says.
pub fn load(m: &ModelArgs, tokenizer: TokenizerSource) -> Result<Arc<Model>> {
    let quantize = m.quantize.map(|ftype| QuantScheme {
        ftype,
        pure: m.pure,
    });
    let opts = m.cache.options(quantize, tokenizer)?;
    // Load errors name the file (and tensor) themselves.
    Ok(Arc::new(Model::load_with(&m.model, &opts)?))
}

/// Points the session's routing at a trace or a generator, as the flags ask.
pub fn set_routing(session: &mut Session, r: &RoutingArgs, n_tokens: usize) -> Result<()> {
    use cosmoe::routing::{RoutingSource, RoutingTrace, SyntheticRouting};
    let c = &session.model().config;
    let (trace, what) = match (&r.routing_trace, &r.routing) {
        (None, None) => return Ok(()),
        (Some(p), _) => (RoutingTrace::load(p)?, format!("trace {}", p.display())),
        (None, Some(spec)) => {
            let Some(m) = &c.moe else {
                bail!("--routing needs a mixture-of-experts model");
            };
            let sparse: Vec<bool> = (0..c.n_layers).map(|l| c.is_sparse_layer(l)).collect();
            let g = SyntheticRouting::parse(spec)?;
            (
                g.generate(&sparse, m.n_experts, m.top_k, n_tokens),
                spec.clone(),
            )
        }
    };
    let Some(m) = &c.moe else {
        bail!("--routing-trace needs a mixture-of-experts model");
    };
    trace.check_fits(c.n_layers, m.n_experts, m.top_k)?;
    session.set_routing(RoutingSource::Trace(Arc::new(trace)), what);
    Ok(())
}
