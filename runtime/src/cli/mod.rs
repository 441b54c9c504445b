//! The `cosmoe` subcommands, one file each (its arguments and its handler), and what several of
//! them share: the model and cache flags, the routing flags, the thread pool.

// First: its macros (`out!`, `outln!`, `errln!`) serve the modules below.
#[macro_use]
pub mod output;

pub mod bench;
pub mod bench_kernels;
pub mod chat;
pub mod compare_routing;
pub mod convert;
pub mod demo;
pub mod inspect;
pub mod logits;
pub mod perplexity;
pub mod run;
pub mod simulate;
pub mod synth;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::builder::RangedU64ValueParser;
use clap::Args;
use cosmoe::quant::{FileType, QuantScheme};
use cosmoe::routing::RoutingTrace;
use cosmoe::sampler::SamplerConfig;
use cosmoe::session::CancelHandle;
use cosmoe::{LoadOptions, Model, Session, TokenizerSource};
use cosmoe_kernels::DType;

/// The most worker or reader threads a flag may ask for (far above any device's cores; more only
/// hangs the process creating them).
pub const MAX_THREADS: u64 = 1024;
/// The most tokens a count flag may name (a context of 16 Mi positions is beyond any model here).
pub const MAX_TOKENS: u64 = 1 << 24;

/// A clap parser for an integer in `lo..=hi` (clap names the range when a value is outside it).
pub fn ranged(lo: u64, hi: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(lo..=hi)
}

/// A clap parser for a float in `lo..=hi` (`open_lo`: excluding `lo`).
fn float_in(s: &str, lo: f32, hi: f32, open_lo: bool) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    let above = if open_lo { v > lo } else { v >= lo };
    if !(above && v <= hi) {
        let (bra, max) = (
            if open_lo { "(" } else { "[" },
            if hi == f32::MAX {
                "inf".to_string()
            } else {
                hi.to_string()
            },
        );
        return Err(format!("{v} is not in {bra}{lo}, {max}]"));
    }
    Ok(v)
}

pub fn non_negative(s: &str) -> Result<f32, String> {
    float_in(s, 0.0, f32::MAX, false)
}

pub fn positive(s: &str) -> Result<f32, String> {
    float_in(s, 0.0, f32::MAX, true)
}

pub fn unit(s: &str) -> Result<f32, String> {
    float_in(s, 0.0, 1.0, false)
}

pub fn open_unit(s: &str) -> Result<f32, String> {
    float_in(s, 0.0, 1.0, true)
}

pub fn percent(s: &str) -> Result<f64, String> {
    float_in(s, 0.0, 100.0, false).map(f64::from)
}

/// A tensor alignment: a power of two from 32 to 64 KiB.
pub fn parse_alignment(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(a) if (32..=65536).contains(&a) && a.is_power_of_two() => Ok(a),
        _ => Err(format!("`{s}` is not a power of two from 32 to 65536")),
    }
}

/// The sampling flags of `run` and `chat` (which differ in the default temperature).
#[derive(Args)]
pub struct SamplerArgs {
    /// Sampling temperature, >= 0; 0 is greedy [default: 0 for run, 0.8 for chat].
    #[arg(long, value_parser = non_negative)]
    pub temperature: Option<f32>,
    /// When sampling: among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// When sampling: among the fewest tokens whose probability reaches this, in (0, 1].
    #[arg(long, default_value_t = 0.95, value_parser = open_unit)]
    pub top_p: f32,
    /// When sampling: drop tokens less likely than this times the most likely one, in [0, 1]
    /// (at temperature 1, as llama.cpp; 0: off).
    #[arg(long, default_value_t = 0.05, value_parser = unit)]
    pub min_p: f32,
    /// Penalise the tokens among the last --repeat-last-n of the context (positive logits divided by
    /// it, negative ones multiplied), > 0; 1: off. Greedy decoding too.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub repeat_penalty: f32,
    /// How many of the context's last tokens the repeat penalty looks at (0 to 16777216).
    #[arg(long, default_value_t = 64, value_parser = ranged(0, MAX_TOKENS))]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock, printed to stderr when sampling).
    #[arg(short = 's', long)]
    pub seed: Option<u64>,
}

impl SamplerArgs {
    /// The sampler these flags ask for, `default_temperature` when `--temperature` is not given.
    pub fn config(&self, default_temperature: f32) -> SamplerConfig {
        let temperature = self.temperature.unwrap_or(default_temperature);
        let seed = self.seed.unwrap_or_else(|| {
            let s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            if temperature > 0.0 {
                errln!("seed {s}");
            }
            s
        });
        SamplerConfig {
            temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        }
    }
}

#[derive(Args)]
pub struct RoutingArgs {
    /// Route by this recorded trace (from `run --record-routing`) instead of the model's routers.
    #[arg(long, conflicts_with = "routing")]
    pub routing_trace: Option<PathBuf>,
    /// Route by a generator instead of the routers: synthetic:exrep=0.44[,skew=1.0][,seed=N]; or
    /// by the routers preferring experts in the cache: cache-aware[:lambda=0.5|margin=X][,keep=1] (the
    /// cached experts' logits raised by lambda x the layer's mean logit range, or by a fixed margin
    /// in logits; the original top `keep` kept).
    #[arg(long)]
    pub routing: Option<String>,
    /// With --routing-trace: replay a trace of fewer layers on a deeper model with the same experts
    /// and top-k, model layer l following trace layer l x (trace layers) / (model layers).
    #[arg(long, requires = "routing_trace")]
    pub stretch_trace: bool,
}

#[derive(Args)]
pub struct ModelArgs {
    /// Model folder (config.json, *.safetensors, tokenizer.json) or GGUF file.
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Worker threads, 1 to 1024 (default: physical cores).
    #[arg(short = 't', long, value_parser = ranged(1, MAX_THREADS))]
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
    /// Expert cache budget in MiB, 0 to 2^32 (default: every expert resident). Mixture-of-experts
    /// models only, like the other cache flags.
    #[arg(long, conflicts_with = "expert_cache_pct", value_parser = clap::value_parser!(u64).range(0..=1 << 32))]
    pub expert_cache_mb: Option<u64>,
    /// Expert cache budget as a percentage of all expert bytes, 0 to 100.
    #[arg(long, value_parser = percent, conflicts_with = "expert_cache_experts")]
    pub expert_cache_pct: Option<f64>,
    /// Expert cache budget as N experts of every layer, 1 to 4096 (each layer's N largest). With
    /// N = top-k, --cache-policy layer and --prefetch none: the CoSMoEs paper's offloading rule
    /// (exactly the experts in use in memory, replaced as the routing changes).
    #[arg(long, conflicts_with = "expert_cache_mb", value_parser = ranged(1, 4096))]
    pub expert_cache_experts: Option<usize>,
    /// How experts are read: direct (O_DIRECT pread), buffered (pread) or mmap (the OS page cache decides).
    #[arg(long, default_value = "direct")]
    pub io: cosmoe_cache::IoMode,
    /// Expert prediction for prefetching: none, gate, history or gate+history.
    #[arg(long, default_value = "none")]
    pub prefetch: cosmoe::routing::Prefetch,
    /// Background reader threads, 0 to 64: they read a layer's missing experts while it computes the
    /// others, and fetch predicted experts once no read of the running layer is queued or in flight
    /// (0: every read happens in the forward pass).
    #[arg(long, default_value_t = 2, value_parser = ranged(0, 64))]
    pub io_threads: usize,
    /// Which expert leaves the cache first: stale (the expert expected back last, from the layer
    /// order, request counts halving every 8 tokens and the measured reuse rate), layer (experts
    /// their layer stopped using, then the layer just finished, the running layer last), lru, or
    /// lfu (request counts halving every 16 tokens). Default: layer with --expert-cache-experts
    /// (the paper's rule), else stale; both measured best there on trained routing
    /// (docs/benchmarks.md).
    #[arg(long)]
    pub cache_policy: Option<cosmoe_cache::PolicyKind>,
}

impl CacheArgs {
    /// `--cache-policy`, or the default for the budget given.
    pub fn policy(&self) -> cosmoe_cache::PolicyKind {
        use cosmoe_cache::PolicyKind;
        self.cache_policy
            .unwrap_or(match self.expert_cache_experts {
                Some(_) => PolicyKind::Layer,
                None => PolicyKind::Stale,
            })
    }

    fn options(
        &self,
        quantize: Option<QuantScheme>,
        tokenizer: TokenizerSource,
    ) -> Result<LoadOptions> {
        Ok(LoadOptions {
            quantize,
            cache: cosmoe_cache::CacheConfig {
                budget: self.expert_cache_mb.map(|m| m << 20),
                io: self.io,
                prefetch_threads: self.io_threads,
                policy: self.policy(),
                ..Default::default()
            },
            cache_share: self.expert_cache_pct.map(|p| p / 100.0),
            cache_experts_per_layer: self.expert_cache_experts,
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

/// What Ctrl-C stops instead of the process: a session's run, while its flag is set.
type Interrupt = (CancelHandle, Arc<AtomicBool>);
static INTERRUPT: Mutex<Option<Interrupt>> = Mutex::new(None);

/// From now on Ctrl-C cancels what `cancel`'s session runs while the returned flag is set (it is
/// cleared by the Ctrl-C that cancels, so a second one ends the process).
pub fn ctrl_c_cancels(cancel: CancelHandle) -> Arc<AtomicBool> {
    let active = Arc::new(AtomicBool::new(false));
    if let Ok(mut i) = INTERRUPT.lock() {
        *i = Some((cancel, active.clone()));
    }
    active
}

/// Whether a Ctrl-C went to a registered session ([`ctrl_c_cancels`]).
fn cancel_registered() -> bool {
    let Ok(i) = INTERRUPT.lock() else {
        return false;
    };
    match &*i {
        Some((cancel, active)) if active.swap(false, Ordering::SeqCst) => {
            cancel.cancel();
            true
        }
        _ => false,
    }
}

/// On SIGINT, SIGTERM or SIGHUP: removes the output files being written ([`cosmoe::outfile`]),
/// then dies of the signal as if unhandled (so the shell shows 130 for Ctrl-C, and a script's loop
/// sees the interruption). A SIGINT while a session registered with [`ctrl_c_cancels`] runs cancels
/// that run instead. A signal that was ignored when cosmoe started (`nohup`, a background job)
/// stays ignored.
#[cfg(unix)]
pub fn handle_signals() -> Result<()> {
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
            for sig in signals.forever() {
                if sig == SIGINT && cancel_registered() {
                    continue;
                }
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
    if !(1..=MAX_THREADS as usize).contains(&n) {
        bail!("--threads must be 1 to {MAX_THREADS}, got {n}");
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
    let model = Model::load_with(&m.model, &opts)?;
    if model.config.moe.is_none() {
        let c = &m.cache;
        let given = [
            ("--expert-cache-mb", c.expert_cache_mb.is_some()),
            ("--expert-cache-pct", c.expert_cache_pct.is_some()),
            ("--expert-cache-experts", c.expert_cache_experts.is_some()),
            ("--prefetch", c.prefetch != cosmoe::routing::Prefetch::None),
        ];
        let given: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
        if !given.is_empty() {
            errln!(
                "note: {} not used: {} is a dense model (no experts)",
                given.join(", "),
                m.model.display()
            );
        }
    }
    Ok(Arc::new(model))
}

/// Points the session's routing at a trace or a generator, as the flags ask.
pub fn set_routing(session: &mut Session, r: &RoutingArgs, n_tokens: usize) -> Result<()> {
    match (&r.routing_trace, &r.routing) {
        (Some(p), _) if r.stretch_trace => {
            let n_layers = session.model().config.n_layers;
            RoutingTrace::load(p)
                .and_then(|t| t.stretch(n_layers))
                .and_then(|t| session.route_by(t, format!("trace {} (stretched)", p.display())))
                .map_err(|e| anyhow::anyhow!("--routing-trace: {e}"))
        }
        (Some(p), _) => session
            .route_by_trace(p)
            .map_err(|e| anyhow::anyhow!("--routing-trace: {e}")),
        (None, Some(spec)) if spec.starts_with("cache-aware") => session
            .route_cache_aware(spec)
            .map_err(|e| anyhow::anyhow!("--routing: {e}")),
        (None, Some(spec)) => session
            .route_synthetic(spec, n_tokens)
            .map_err(|e| anyhow::anyhow!("--routing: {e}")),
        (None, None) => Ok(()),
    }
}
