//! The `cosmoe` command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Parser, Subcommand};
use cosmoe::bench::KernelBenchConfig;
use std::sync::Arc;

use cosmoe::forward::Logits;
use cosmoe::generate::{GenerateConfig, TextStream};
use cosmoe::inspect::ModelReport;
use cosmoe::quant::{FileType, QuantScheme};
use cosmoe::sampler::SamplerConfig;
use cosmoe::{LoadOptions, Model, Session, TokenizerSource};
use cosmoe_kernels::DType;

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
    /// Write the logits of every position of `--ids` as little-endian f32, row-major [n_ids, vocab].
    Logits(LogitsArgs),
    /// Show a model's architecture, sizes, parameter counts and expert/resident byte split.
    Inspect(InspectArgs),
    /// Kernel speeds against a read-bandwidth probe and an FMA probe measured in the same run.
    BenchKernels(BenchKernelsArgs),
    /// Write a Hugging Face checkpoint folder as a GGUF file that cosmoe and llama.cpp run.
    Convert(ConvertArgs),
    /// Write a GGUF with random weights at the shapes of a real model (for benchmarks without downloads).
    Synth(SynthArgs),
    /// Prefill and decode on a model, reporting latency, cache hits, flash reads, stall, memory and ExRep.
    Bench(BenchArgs),
    /// Synthesise the paper's wearable model (once) and bench it with half its experts in RAM.
    Demo(DemoArgs),
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Prompt length (random token ids).
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens to generate (greedy).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    #[command(flatten)]
    routing: RoutingArgs,
    /// Seed of the prompt ids.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One JSON object instead of a table (docs/report.md lists the fields).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RoutingArgs {
    /// Route by this recorded trace (from `run --record-routing`) instead of the model's routers.
    #[arg(long, conflicts_with = "routing")]
    routing_trace: Option<PathBuf>,
    /// Route by a generator instead of the routers: synthetic:exrep=0.44[,skew=1.0][,seed=N].
    #[arg(long)]
    routing: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Where the synthesised model is kept (default: $COSMOE_CACHE_DIR, else ~/.cache/cosmoe).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Worker threads (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Model shapes: cosmoe-wearable, cosmoe-phone, olmoe-1b-7b, granite-1b-a400m, qwen3-30b-a3b.
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
    /// Tensor alignment in bytes (power of two, >= 32); 32 for a file llama-quantize will rewrite.
    #[arg(long, default_value_t = cosmoe::convert::ALIGNMENT)]
    alignment: u32,
}

#[derive(Args)]
struct ConvertArgs {
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
    /// Tensor alignment in bytes (power of two, >= 32). 4096 lets one aligned read fetch an expert;
    /// use 32 for a file that llama.cpp's llama-quantize will rewrite (it pads to 32 whatever the
    /// file says).
    #[arg(long, default_value_t = cosmoe::convert::ALIGNMENT)]
    alignment: u32,
    /// Worker threads for quantising (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct BenchKernelsArgs {
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

#[derive(Args)]
struct ModelArgs {
    /// Model folder (config.json, *.safetensors, tokenizer.json) or GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Worker threads (default: physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Convert the weight matrices on load as llama-quantize would: a file type (q4_k_m, q4_k_s,
    /// q5_k_m, q5_k_s, q3_k_s, q3_k_m, q3_k_l, q2_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl,
    /// iq4_xs), or f16, bf16, f32.
    #[arg(long, value_parser = parse_ftype)]
    quantize: Option<FileType>,
    /// With --quantize: every matrix in the file type's one block type (llama-quantize's --pure).
    #[arg(long, requires = "quantize")]
    pure: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Args)]
struct CacheArgs {
    /// Expert cache budget in MiB (default: every expert resident).
    #[arg(long, conflicts_with = "expert_cache_pct")]
    expert_cache_mb: Option<u64>,
    /// Expert cache budget as a percentage of all expert bytes.
    #[arg(long)]
    expert_cache_pct: Option<f64>,
    /// How experts are read: direct (O_DIRECT pread), buffered (pread) or mmap (the OS page cache decides).
    #[arg(long, default_value = "direct")]
    io: cosmoe_cache::IoMode,
    /// Expert prediction for prefetching: none, gate, history or gate+history.
    #[arg(long, default_value = "none")]
    prefetch: cosmoe::routing::Prefetch,
    /// Background reader threads: they read a layer's missing experts while it computes the others,
    /// and fetch predicted experts (0: every read happens in the forward pass).
    #[arg(long, default_value_t = 2)]
    io_threads: usize,
    /// Which expert leaves the cache first: layer (experts their layer stopped using, then the layer
    /// just finished, the running layer last: Belady's order if the next token reuses this token's
    /// experts; measured better than LRU, docs/benchmarks.md) or lru.
    #[arg(long, default_value = "layer")]
    cache_policy: cosmoe_cache::PolicyKind,
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

fn parse_ftype(s: &str) -> Result<FileType, String> {
    QuantScheme::parse(s, false)
        .map(|q| q.ftype)
        .map_err(|e| e.to_string())
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::parse(s).ok_or_else(|| {
        let all: Vec<String> = DType::ALL.iter().map(|d| d.name().to_lowercase()).collect();
        format!("unknown weight format `{s}` ({})", all.join(", "))
    })
}

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "ids"])))]
struct RunArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Prompt text (needs a tokenizer).
    #[arg(long, conflicts_with = "ids")]
    prompt: Option<String>,
    /// Prompt as token ids, comma-separated: 5,17,42.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ids: Option<Vec<u32>>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-tokens", default_value_t = 64)]
    n: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    temperature: f32,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.95, allow_hyphen_values = true)]
    top_p: f32,
    /// Random seed (default: from the clock, printed to stderr).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the generated token ids on one line, space-separated, and nothing else on stdout.
    #[arg(long)]
    print_ids: bool,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// tokenizer.json to use instead of the model folder's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object at the end (generated ids, text, and the report of `bench --json`)
    /// instead of streaming text.
    #[arg(long, conflicts_with = "print_ids")]
    json: bool,
    /// Write the experts every position chose (JSON) to this file.
    #[arg(long)]
    record_routing: Option<PathBuf>,
    #[command(flatten)]
    routing: RoutingArgs,
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    ids: Vec<u32>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct InspectArgs {
    /// Model folder or GGUF file.
    path: PathBuf,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Logits(a) => logits(a),
        Cmd::Inspect(a) => inspect(a),
        Cmd::BenchKernels(a) => bench_kernels(a),
        Cmd::Convert(a) => convert(a),
        Cmd::Synth(a) => synth(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Demo(a) => demo(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Sizes the global rayon pool that the kernels split their work over.
fn init_threads(threads: Option<usize>) -> Result<()> {
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
fn load(m: &ModelArgs, tokenizer: TokenizerSource) -> Result<Arc<Model>> {
    let quantize = m.quantize.map(|ftype| QuantScheme {
        ftype,
        pure: m.pure,
    });
    let opts = m.cache.options(quantize, tokenizer)?;
    // Load errors name the file (and tensor) themselves.
    Ok(Arc::new(Model::load_with(&m.model, &opts)?))
}

fn run(a: RunArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    let tokenizer = match &a.tokenizer {
        Some(p) => TokenizerSource::File(p.clone()),
        None => TokenizerSource::Auto,
    };
    let t0 = Instant::now();
    let model = load(&a.m, tokenizer)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let tok = model.tokenizer.as_ref();
    let prompt: Vec<u32> = match (&a.ids, &a.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            let t = model.tokenizer().map_err(|e| {
                anyhow::anyhow!(
                    "{e}: pass the prompt as --ids, or a tokenizer.json with --tokenizer"
                )
            })?;
            t.encode(text.as_str(), true)
                .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?
                .get_ids()
                .to_vec()
        }
        (None, None) => bail!("give --prompt or --ids"),
    };
    let seed = a.seed.unwrap_or_else(|| {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        if a.temperature > 0.0 {
            eprintln!("seed {s}");
        }
        s
    });
    let cfg = GenerateConfig {
        max_new_tokens: a.n,
        stop_at_eos: !a.ignore_eos,
        sampler: SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed,
        },
    };

    let mut session = Session::new(model.clone());
    set_routing(&mut session, &a.routing, prompt.len() + a.n)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !a.print_ids && tok.is_none() {
        match &model.tokenizer_note {
            Some(n) => eprintln!("note: {n}; printing token ids"),
            None => eprintln!("note: no tokenizer, printing token ids"),
        }
    }
    let mut streamer = tok.filter(|_| !a.print_ids && !a.json).map(TextStream::new);
    let mut io_err = None;
    let g = session.complete(&prompt, &cfg, |t, last| {
        let r = match &mut streamer {
            Some(s) => {
                let piece = s.push(t, last);
                out.write_all(piece.as_bytes()).and_then(|_| out.flush())
            }
            None if a.print_ids || a.json => Ok(()),
            None => write!(out, "{t} ").and_then(|_| out.flush()),
        };
        if let Err(e) = r {
            io_err.get_or_insert(e);
        }
        true
    })?;
    if let Some(e) = io_err {
        return Err(e).context("writing to stdout");
    }
    let stats = session.stats();
    if a.json {
        let report = cosmoe::report::BenchReport {
            model: a.m.model.display().to_string(),
            threads: model.n_threads(),
            load_ms,
            run: stats.clone(),
        };
        let text = tok.and_then(|t| t.decode(&g.tokens, true).ok());
        let v = serde_json::json!({ "tokens": g.tokens, "text": text, "report": report });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else if a.print_ids {
        let ids: Vec<String> = g.tokens.iter().map(u32::to_string).collect();
        writeln!(out, "{}", ids.join(" "))?;
    } else {
        writeln!(out)?;
    }
    eprintln!(
        "prompt {} tokens in {:.1} ms ({:.1} tok/s); generated {} tokens, decode {:.1} tok/s{}",
        stats.prompt_tokens,
        stats.ttft_ms,
        stats.prefill_tok_s,
        g.tokens.len(),
        stats.decode_tok_s,
        if g.hit_context_limit() {
            " (stopped: context full)"
        } else {
            ""
        }
    );
    if let Some(trace) = session.routing_trace() {
        let c = &stats.cache;
        eprintln!(
            "experts: {} requests, hit rate {:.1} %, {:.1} MiB read, stall {:.1} ms, {} evictions; ExRep {:.3}",
            c.requests,
            100.0 * c.hit_rate,
            c.bytes_read as f64 / (1 << 20) as f64,
            c.stall_ms,
            c.evictions,
            stats.routing.exrep
        );
        for n in &stats.notices {
            eprintln!("note: {n}");
        }
        if let Some(p) = &a.record_routing {
            trace.save(p)?;
        }
    }
    Ok(())
}

fn logits(a: LogitsArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    let model = load(&a.m, TokenizerSource::None)?;
    let t0 = Instant::now();
    let mut session = Session::new(model.clone());
    let logits = session.eval(&a.ids, Logits::All)?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} x {} logits to {} ({:.1} ms)",
        a.ids.len(),
        model.config.vocab_size,
        a.out.display(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let model = Model::load(&a.path)?;
    let mut report = ModelReport::of(&model, &a.path.display().to_string());
    if cosmoe_loader::GgufFile::is_gguf_path(&a.path) {
        report = report.with_gguf_metadata(&cosmoe_loader::GgufFile::open(&a.path)?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn bench_kernels(a: BenchKernelsArgs) -> Result<()> {
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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn convert(a: ConvertArgs) -> Result<()> {
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
        eprintln!("note: {n}");
    }
    eprintln!(
        "wrote {} ({}, {} tensors, {:.1} MiB) in {:.1} s",
        cfg.out.display(),
        r.architecture,
        r.tensors,
        r.file_bytes as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
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
    eprintln!(
        "wrote {} ({}, random weights, {:.1} MiB) in {:.1} s",
        cfg.out.display(),
        cfg.preset.about,
        n as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Points the session's routing at a trace or a generator, as the flags ask.
fn set_routing(session: &mut Session, r: &RoutingArgs, n_tokens: usize) -> Result<()> {
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

fn bench(a: BenchArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    bench_on_pool(a)
}

/// `bench` on the already started thread pool.
fn bench_on_pool(a: BenchArgs) -> Result<()> {
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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

/// The demo's cache folder.
fn demo_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("COSMOE_CACHE_DIR").map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cosmoe")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/cosmoe")))
        .unwrap_or_else(|| PathBuf::from("target/cosmoe-cache"))
}

fn demo(a: DemoArgs) -> Result<()> {
    let threads = a.threads.unwrap_or_else(num_cpus::get_physical);
    init_threads(Some(threads))?;
    let dir = demo_dir(a.dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("cosmoe-wearable.q4_0.gguf");
    let preset = cosmoe::synth::Preset::find("cosmoe-wearable")?;
    if !path.is_file() {
        eprintln!(
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
    };
    let m = ModelArgs {
        model: path.clone(),
        threads: Some(threads),
        quantize: None,
        pure: false,
        cache: CacheArgs {
            expert_cache_mb: None,
            expert_cache_pct: Some(50.0),
            io: cosmoe_cache::IoMode::Direct,
            prefetch: cosmoe::routing::Prefetch::History,
            io_threads: 2,
            cache_policy: cosmoe_cache::PolicyKind::Layer,
        },
    };
    if !a.json {
        eprintln!(
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
