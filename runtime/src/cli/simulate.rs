//! `cosmoe simulate`: a routing trace replayed through each eviction policy at several budgets, with
//! Belady's offline optimum as the bound, by the expert cache's own policies and accounting
//! (`cosmoe_cache::sim`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use cosmoe::routing::RoutingTrace;
use cosmoe::{LoadOptions, Model, TokenizerSource};
use cosmoe_cache::sim::{replay, Belady, Costs, Lookahead, SimStats};
use cosmoe_cache::{CacheConfig, EvictionPolicy, IoMode, PolicyKind};

/// What `--policy` takes besides the cache's own policies: offline ones, for study.
const OFFLINE: [&str; 3] = ["belady", "oracle-layer", "oracle-token"];

use super::{percent, ranged, MAX_TOKENS};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct SimulateArgs {
    /// The routing trace (`run --record-routing`, `perplexity --record-routing`).
    #[arg(long)]
    trace: PathBuf,
    /// The model the trace is of: experts cost what the cache charges for them (page-rounded
    /// buffers, per `--io`), and budgets are shares of that as `--expert-cache-pct` makes them.
    /// Without it every expert costs one unit.
    #[arg(short = 'm', long)]
    model: Option<PathBuf>,
    /// With --model: the buffer plans of this `--io` mode (direct pads each part to pages).
    #[arg(long, default_value = "direct", requires = "model")]
    io: IoMode,
    /// Budgets as percentages of all expert bytes, each 0 to 100 (default: 10,25,50,75 unless
    /// --budget-experts is given).
    #[arg(long, value_delimiter = ',', value_parser = percent)]
    budget_pct: Vec<f64>,
    /// More budgets, as N experts of every layer (each layer's N largest), 1 to 4096, as
    /// `--expert-cache-experts` makes them: with N = top-k and the layer policy, the CoSMoEs paper's
    /// offloading rule.
    #[arg(long, value_delimiter = ',', value_parser = ranged(1, 4096))]
    budget_experts: Vec<usize>,
    /// Policies: lru, layer, lfu, stale (the cache's), belady (the offline bound), and the oracles
    /// oracle-layer and oracle-token, which know the next layer's or the next token's experts
    /// exactly (what a perfect predictor of that reach would give).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lru,layer,lfu,stale,belady"
    )]
    policy: Vec<String>,
    /// Replay the first N tokens of the trace, 1 to 16777216 (default: all).
    #[arg(long, value_parser = ranged(1, MAX_TOKENS))]
    tokens: Option<usize>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw hit rate against budget, one line per policy, as an SVG file.
    #[arg(long, value_name = "OUT.svg")]
    plot: Option<PathBuf>,
}

pub fn simulate(a: SimulateArgs) -> Result<()> {
    if let Some(out) = &a.plot {
        let mut inputs = vec![a.trace.as_path()];
        inputs.extend(a.model.as_deref());
        cosmoe::outfile::check_output(out, &inputs)?;
    }
    let trace = RoutingTrace::load(&a.trace)?;
    for p in &a.policy {
        if p.parse::<PolicyKind>().is_err() && !OFFLINE.contains(&p.as_str()) {
            let names: Vec<&str> = PolicyKind::ALL.iter().map(|k| k.name()).collect();
            bail!(
                "unknown policy `{p}` ({}, {})",
                names.join(", "),
                OFFLINE.join(", ")
            );
        }
    }
    let n_tokens = a
        .tokens
        .unwrap_or(trace.tokens.len())
        .min(trace.tokens.len());
    if n_tokens == 0 {
        bail!("{}: the trace has no tokens", a.trace.display());
    }
    // What each expert costs: (charged, read) bytes.
    let costs: Vec<Vec<(u64, u64)>> = match &a.model {
        Some(m) => {
            let opts = LoadOptions {
                cache: CacheConfig {
                    budget: None,
                    io: a.io,
                    prefetch_threads: 0,
                    ..Default::default()
                },
                tokenizer: TokenizerSource::None,
                ..Default::default()
            };
            let model = Model::load_with(m, &opts)?;
            let c = &model.config;
            let Some(moe) = &c.moe else {
                bail!(
                    "{} is a dense model: it has no experts to cache",
                    m.display()
                );
            };
            trace.check_fits(c.n_layers, moe.n_experts, moe.top_k)?;
            let e = &model.experts;
            let read = |l, x| e.expert_loc(l, x).map_or(0, |loc| loc.n_bytes() as u64);
            (0..e.n_layers())
                .map(|l| {
                    (0..e.n_experts(l))
                        .map(|x| (e.expert_bytes(l, x), read(l, x)))
                        .collect()
                })
                .collect()
        }
        None => (0..trace.n_layers)
            .map(|l| {
                let sparse = trace.tokens.iter().any(|t| !t[l].is_empty());
                vec![(1, 1); if sparse { trace.n_experts } else { 0 }]
            })
            .collect(),
    };
    let total: u64 = costs.iter().flatten().map(|c| c.0).sum();
    let cost = Costs {
        charge: |(l, e): (usize, usize)| costs[l][e].0,
        read: |(l, e): (usize, usize)| costs[l][e].1,
    };
    let requests = trace.requests(n_tokens);
    // Each layer's n largest charges, summed.
    let largest = |n: usize| -> Vec<u64> {
        costs
            .iter()
            .map(|l| {
                let mut c: Vec<u64> = l.iter().map(|c| c.0).collect();
                c.sort_unstable_by(|a, b| b.cmp(a));
                c.iter().take(n).sum::<u64>()
            })
            .collect()
    };
    // The cache refuses a budget below one layer's k largest experts.
    let min_budget = largest(trace.top_k).into_iter().max().unwrap_or(0);

    // (percentage of all expert bytes, bytes, experts per layer when given so)
    let pcts = match (a.budget_pct.is_empty(), a.budget_experts.is_empty()) {
        (true, true) => vec![10.0, 25.0, 50.0, 75.0],
        _ => a.budget_pct.clone(),
    };
    let mut budgets: Vec<(f64, u64, Option<usize>)> = pcts
        .iter()
        // As `--expert-cache-pct` computes it.
        .map(|&pct| {
            (
                pct,
                (total as f64 * (pct / 100.0).clamp(0.0, 1.0)) as u64,
                None,
            )
        })
        .collect();
    for &n in &a.budget_experts {
        // As `--expert-cache-experts` computes it.
        let b: u64 = largest(n).iter().sum();
        budgets.push((100.0 * b as f64 / total.max(1) as f64, b, Some(n)));
    }

    let mut rows = Vec::new();
    for &(pct, budget, per_layer) in &budgets {
        for p in &a.policy {
            if budget < min_budget {
                rows.push(Row {
                    pct,
                    budget,
                    per_layer,
                    policy: p.clone(),
                    stats: None,
                });
                continue;
            }
            let mut policy: Box<dyn EvictionPolicy> = match p.parse::<PolicyKind>() {
                Ok(kind) => kind.build(trace.n_layers),
                Err(_) => match p.as_str() {
                    "oracle-layer" => Box::new(Lookahead::new(&requests, trace.n_layers, 1)),
                    "oracle-token" => {
                        Box::new(Lookahead::new(&requests, trace.n_layers, trace.n_layers))
                    }
                    _ => Box::new(Belady::new(&requests)),
                },
            };
            let stats = replay(&requests, &cost, budget, policy.as_mut());
            rows.push(Row {
                pct,
                budget,
                per_layer,
                policy: p.clone(),
                stats: Some(stats),
            });
        }
    }
    let exrep =
        cosmoe::routing::exrep(&trace.tokens[..n_tokens], trace.n_layers, trace.top_k).overall;
    if let Some(out) = &a.plot {
        let title = format!(
            "{}: {n_tokens} tokens, ExRep {exrep:.3}",
            a.trace.file_name().unwrap_or_default().to_string_lossy()
        );
        let svg = plot(&title, &rows, &a.policy)?;
        cosmoe::outfile::write(out, svg.as_bytes())?;
    }
    if a.json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let s = r.stats.unwrap_or_default();
                serde_json::json!({
                    "budget_pct": r.pct,
                    "budget_bytes": r.budget,
                    "budget_experts_per_layer": r.per_layer,
                    "policy": r.policy,
                    "feasible": r.stats.is_some(),
                    "requests": s.requests,
                    "hits": s.hits,
                    "misses": s.misses,
                    "hit_rate": s.hit_rate(),
                    "evictions": s.evictions,
                    "bytes_read": s.bytes_read,
                    "bytes_read_per_token": s.bytes_read as f64 / n_tokens as f64,
                })
            })
            .collect();
        let v = serde_json::json!({
            "trace": a.trace.display().to_string(),
            "tokens": n_tokens,
            "exrep": exrep,
            "total_expert_bytes": total,
            "unit": if a.model.is_some() { "bytes" } else { "experts" },
            "rows": rows,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    outln!(
        "{}: {n_tokens} tokens, {} layers x {} experts top-{}, ExRep {exrep:.3}; experts cost {}",
        a.trace.display(),
        trace.n_layers,
        trace.n_experts,
        trace.top_k,
        if a.model.is_some() {
            "what the cache charges (MiB below)"
        } else {
            "one unit each"
        }
    )?;
    outln!("budget             policy         hit rate   misses/token   read/token   evictions")?;
    let unit = |b: f64| match a.model {
        Some(_) => format!("{:.2} MiB", b / (1 << 20) as f64),
        None => format!("{b:.2}"),
    };
    for r in &rows {
        let budget = match r.per_layer {
            Some(n) => format!("{:>5.1} % ({n}/layer)", r.pct),
            None => format!("{:>5.1} %", r.pct),
        };
        match r.stats {
            Some(s) => outln!(
                "{budget:<17}  {:<12}  {:>7.1} %   {:>12.2}   {:>10}   {:>9}",
                r.policy,
                100.0 * s.hit_rate(),
                s.misses as f64 / n_tokens as f64,
                unit(s.bytes_read as f64 / n_tokens as f64),
                s.evictions
            )?,
            None => outln!(
                "{budget:<17}  {:<12}  below one layer's {} experts: the cache refuses it",
                r.policy,
                trace.top_k
            )?,
        }
    }
    Ok(())
}

/// Hit rate (%) against budget (% of all expert bytes), a line and points per policy.
fn plot(title: &str, rows: &[Row], policies: &[String]) -> Result<String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..100f64, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("expert cache budget (% of all expert bytes)")
            .y_desc("hit rate (%)")
            .draw()?;
        for (i, p) in policies.iter().enumerate() {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| &r.policy == p)
                .filter_map(|r| r.stats.map(|s| (r.pct, 100.0 * s.hit_rate())))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts.dedup_by(|a, b| a.0 == b.0);
            // Belady, the bound rather than a policy, in a thin black line.
            const COLORS: [RGBColor; 5] = [
                RGBColor(214, 39, 40),
                RGBColor(44, 160, 44),
                RGBColor(255, 127, 14),
                RGBColor(31, 119, 180),
                RGBColor(148, 103, 189),
            ];
            let (color, width) = match p.as_str() {
                "belady" => (BLACK.to_rgba(), 1),
                _ => (COLORS[i % COLORS.len()].to_rgba(), 2),
            };
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))?
                .label(if p == "belady" {
                    "belady (offline bound)"
                } else {
                    p.as_str()
                })
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&xy| Circle::new(xy, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

struct Row {
    pct: f64,
    budget: u64,
    per_layer: Option<usize>,
    policy: String,
    stats: Option<SimStats>,
}
