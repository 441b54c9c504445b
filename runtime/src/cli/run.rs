//! `cosmoe run`: text (or token ids) from a prompt.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{ArgGroup, Args};
use cosmoe::generate::{GenerateConfig, TextStream};
use cosmoe::sampler::SamplerConfig;
use cosmoe::{Session, TokenizerSource};

use super::{init_threads, load, set_routing, ModelArgs, RoutingArgs};

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["prompt", "ids"])))]
pub struct RunArgs {
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

pub fn run(a: RunArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    if let Some(out) = &a.record_routing {
        let inputs = [
            Some(&a.m.model),
            a.tokenizer.as_ref(),
            a.routing.routing_trace.as_ref(),
        ];
        let inputs: Vec<&Path> = inputs.into_iter().flatten().map(PathBuf::as_path).collect();
        cosmoe::outfile::check_output(out, &inputs)?;
    }
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
            errln!("seed {s}");
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
    if !a.print_ids && tok.is_none() {
        match &model.tokenizer_note {
            Some(n) => errln!("note: {n}; printing token ids"),
            None => errln!("note: no tokenizer, printing token ids"),
        }
    }
    let mut streamer = tok.filter(|_| !a.print_ids && !a.json).map(TextStream::new);
    let mut out_err = None;
    let g = session.complete(&prompt, &cfg, |t, last| {
        let r = match &mut streamer {
            Some(s) => out!("{}", s.push(t, last)),
            None if a.print_ids || a.json => Ok(()),
            None => out!("{t} "),
        };
        // Nobody reads the rest (a closed pipe) or it cannot be written: stop generating.
        r.map_err(|e| out_err = Some(e)).is_ok()
    })?;
    if let Some(e) = out_err {
        return Err(e.into());
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
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else if a.print_ids {
        let ids: Vec<String> = g.tokens.iter().map(u32::to_string).collect();
        outln!("{}", ids.join(" "))?;
    } else {
        outln!()?;
    }
    errln!(
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
        errln!(
            "experts: {} requests, hit rate {:.1} %, {:.1} MiB read, stall {:.1} ms, {} evictions; ExRep {:.3}",
            c.requests,
            100.0 * c.hit_rate,
            c.bytes_read as f64 / (1 << 20) as f64,
            c.stall_ms,
            c.evictions,
            stats.routing.exrep
        );
        for n in &stats.notices {
            errln!("note: {n}");
        }
        if let Some(p) = &a.record_routing {
            trace.save(p)?;
        }
    }
    Ok(())
}
