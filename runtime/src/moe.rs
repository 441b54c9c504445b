//! The feed-forward layers: a dense SwiGLU MLP, or a mixture of experts in three steps:
//!
//! 1. **route** (pure): router logits -> the plan, which experts each token uses with which weight;
//! 2. **fetch**: the plan's experts through the expert cache (read-ahead hints first, so the reads
//!    overlap; prefetch hints for the next layer);
//! 3. **compute**: one SwiGLU computation, [`swiglu`], shared by prefill and decode, by the routed
//!    experts, the shared expert and dense layers.

use std::sync::Arc;

use cosmoe_cache::{CacheUser, ExpertWeights, PrefetchHint};
use cosmoe_kernels::{self as k, matmul};
use cosmoe_loader::Weight;

use crate::arch::Routing;
use crate::forward::take;
use crate::model::{Ffn, Linear, Mlp, Model, Moe};
use crate::routing::{Prefetch, RoutingRecord, RoutingSource};
use crate::Result;

/// The buffers of the feed-forward layers, grown to the largest batch seen.
#[derive(Default)]
pub(crate) struct FfnScratch {
    /// (n, n_experts): router logits.
    router: Vec<f32>,
    /// (m, hidden): the tokens of the experts being computed, gathered.
    xs: Vec<f32>,
    /// (m, ffn) each: gate and up projections, then silu(gate) * up in `g`.
    g: Vec<f32>,
    u: Vec<f32>,
    /// (m, hidden): the experts' outputs, before their routing weights.
    d: Vec<f32>,
    /// (m, rank) per factored product: weight-decomposed experts' rank-r middles.
    t: Vec<f32>,
    /// (n): the shared expert's gate.
    shared_gate: Vec<f32>,
}

/// What the MoE layer needs of its session.
pub(crate) struct MoeCtx<'a> {
    pub routing: &'a mut RoutingRecord,
    pub user: &'a Arc<CacheUser>,
    pub prefetch: Prefetch,
}

/// One product of a SwiGLU MLP: a weight matrix and its bias, if any; of a weight-decomposed expert
/// the left factor `w` and the right one, the product `w (right x)`.
#[derive(Clone, Copy)]
struct Proj<'a> {
    w: &'a Weight,
    b: Option<&'a [f32]>,
    right: Option<&'a Weight>,
}

impl<'a> From<&'a Linear> for Proj<'a> {
    fn from(l: &'a Linear) -> Self {
        Proj {
            w: &l.w,
            b: l.b.as_deref(),
            right: None,
        }
    }
}

/// `y_i = P_i x_i` for one token each (decode) as at most two parallel jobs: the right factors'
/// products first (their rank-r results one after another in `t`), then every left or whole matrix.
fn project_one(items: &mut [(Proj<'_>, &[f32], &mut [f32])], t: &mut Vec<f32>) {
    let middle: usize = items
        .iter()
        .filter_map(|(p, ..)| p.right.map(|r| r.rows))
        .sum();
    let t = take(t, middle); // (sum of ranks)
    if middle > 0 {
        let mut mv = Vec::new();
        let mut rest = &mut t[..];
        for (p, x, _) in items.iter() {
            if let Some(r) = p.right {
                let (tj, more) = rest.split_at_mut(r.rows);
                rest = more;
                mv.push(k::MatvecJob {
                    w: r.mat(),
                    x,
                    y: tj,
                });
            }
        }
        k::matvec_jobs(&mut mv);
    }
    let t = &*t;
    let mut mv = Vec::with_capacity(items.len());
    let mut at = 0;
    for (p, x, y) in items.iter_mut() {
        let input: &[f32] = match p.right {
            Some(r) => {
                at += r.rows;
                &t[at - r.rows..at]
            }
            None => x,
        };
        mv.push(k::MatvecJob {
            w: p.w.mat(),
            x: input,
            y: &mut y[..],
        });
    }
    k::matvec_jobs(&mut mv);
}

/// `y = P x` over `m` tokens `x: (m, in)` into `y: (m, out)`, through the rank-r middle `(m, r)` in
/// `t` for a factored product.
fn project_many(p: Proj<'_>, x: &[f32], m: usize, y: &mut [f32], t: &mut Vec<f32>) {
    match p.right {
        Some(r) => {
            let t = take(t, m * r.rows); // (m, rank)
            matmul(r.mat(), x, m, t);
            matmul(p.w.mat(), t, m, y);
        }
        None => matmul(p.w.mat(), x, m, y),
    }
}

impl Proj<'_> {
    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = self.b {
            for row in y.chunks_exact_mut(self.w.rows) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
    }
}

/// `down(silu(gate(x)) * up(x))` of one MLP over `m` tokens `x: (m, hidden)`.
struct Job<'a> {
    gate: Proj<'a>,
    up: Proj<'a>,
    down: Proj<'a>,
    x: &'a [f32],
    m: usize,
}

impl<'a> Job<'a> {
    fn mlp(mlp: &'a Mlp, x: &'a [f32], m: usize) -> Self {
        Job {
            gate: (&mlp.gate).into(),
            up: (&mlp.up).into(),
            down: (&mlp.down).into(),
            x,
            m,
        }
    }

    fn expert(e: &'a ExpertWeights, x: &'a [f32], m: usize) -> Self {
        let r = e.right.as_deref();
        let p = |w, right| Proj { w, b: None, right };
        Job {
            gate: p(&e.gate, r.map(|r| &r.gate)),
            up: p(&e.up, r.map(|r| &r.up)),
            down: p(&e.down, r.map(|r| &r.down)),
            x,
            m,
        }
    }
}

/// The SwiGLU of every job, job `i`'s `(m_i, hidden)` rows written one after another to
/// `out: (sum m_i, hidden)`.
///
/// With one token per job (decode) the gate and up products of all jobs run as one parallel job
/// and their down products as another (two forks and joins of the pool, not three per MLP);
/// otherwise each product covers its tokens at once (`matmul` reads each weight row once for all).
/// The kernels give each value exactly as a lone matvec does either way, so prefill equals decode
/// bit for bit.
fn swiglu(jobs: &[Job<'_>], s: &mut SwigluScratch<'_>, out: &mut [f32]) {
    // Offsets of each job's rows in g/u: (m_i, ffn_i) each.
    let ffn_len: usize = jobs.iter().map(|j| j.m * j.gate.w.rows).sum();
    let (g, u) = (take(s.g, ffn_len), take(s.u, ffn_len));
    let ffn_ranges = ranges(jobs, |j| j.gate.w.rows);
    let out_ranges = ranges(jobs, |j| j.down.w.rows);

    if jobs.iter().all(|j| j.m == 1) {
        let mut items = Vec::with_capacity(2 * jobs.len());
        let (mut gs, mut us) = (&mut g[..], &mut u[..]);
        for j in jobs {
            let ffn = j.gate.w.rows;
            let (gj, g_rest) = gs.split_at_mut(ffn);
            let (uj, u_rest) = us.split_at_mut(ffn);
            (gs, us) = (g_rest, u_rest);
            items.push((j.gate, j.x, gj));
            items.push((j.up, j.x, uj));
        }
        project_one(&mut items, s.t);
        drop(items);
        for (j, &(a, b)) in jobs.iter().zip(&ffn_ranges) {
            j.gate.add_bias(&mut g[a..b]);
            j.up.add_bias(&mut u[a..b]);
            k::silu_mul(&mut g[a..b], &u[a..b]);
        }
        let g = &*g;
        let mut items = Vec::with_capacity(jobs.len());
        let mut rest = &mut out[..];
        for (j, &(a, b)) in jobs.iter().zip(&ffn_ranges) {
            let (oj, r) = rest.split_at_mut(j.down.w.rows);
            rest = r;
            items.push((j.down, &g[a..b], oj));
        }
        project_one(&mut items, s.t);
    } else {
        for (j, (&(a, b), &(oa, ob))) in jobs.iter().zip(ffn_ranges.iter().zip(&out_ranges)) {
            let (gj, uj) = (&mut g[a..b], &mut u[a..b]);
            project_many(j.gate, j.x, j.m, gj, s.t);
            project_many(j.up, j.x, j.m, uj, s.t);
            j.gate.add_bias(gj);
            j.up.add_bias(uj);
            k::silu_mul(gj, uj);
            project_many(j.down, gj, j.m, &mut out[oa..ob], s.t);
        }
    }
    for (j, &(oa, ob)) in jobs.iter().zip(&out_ranges) {
        j.down.add_bias(&mut out[oa..ob]);
    }
}

/// The buffers [`swiglu`] computes in.
struct SwigluScratch<'s> {
    g: &'s mut Vec<f32>,
    u: &'s mut Vec<f32>,
    t: &'s mut Vec<f32>,
}

/// Where each job's `(m, width)` rows lie in a buffer that holds them one after another.
fn ranges(jobs: &[Job<'_>], width: fn(&Job<'_>) -> usize) -> Vec<(usize, usize)> {
    let mut at = 0;
    jobs.iter()
        .map(|j| {
            let r = (at, at + j.m * width(j));
            at = r.1;
            r
        })
        .collect()
}

/// A dense SwiGLU layer: `xn: (n, hidden) -> out: (n, hidden)`.
pub(crate) fn dense(mlp: &Mlp, xn: &[f32], n: usize, s: &mut FfnScratch, out: &mut [f32]) {
    let mut sc = SwigluScratch {
        g: &mut s.g,
        u: &mut s.u,
        t: &mut s.t,
    };
    swiglu(&[Job::mlp(mlp, xn, n)], &mut sc, out);
}

/// Which experts each token uses and with which weights.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// The experts used by any token, in index order (as transformers accumulates them), each with
    /// its tokens and their routing weights.
    pub experts: Vec<(usize, Vec<(usize, f32)>)>,
    /// `chosen[t]`: token t's experts, in the router's order.
    pub chosen: Vec<Vec<u32>>,
}

/// Step 1, routing (pure): the plan for router logits `(n, n_experts)`; `forced(t)` gives the
/// experts a trace imposes on token t, if any.
pub(crate) fn plan<'f>(
    logits: &[f32],
    n_experts: usize,
    top_k: usize,
    routing: Routing,
    renormalise: bool,
    forced: impl Fn(usize) -> Option<&'f [u32]>,
) -> Plan {
    let mut per_expert: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n_experts];
    let mut chosen = Vec::new();
    for (t, row) in logits.chunks_exact(n_experts).enumerate() {
        let sel = match forced(t) {
            Some(es) => forced_weights(row, es, routing),
            None => route(row, top_k, routing, renormalise),
        };
        chosen.push(sel.iter().map(|&(e, _)| e as u32).collect());
        for (e, w) in sel {
            per_expert[e].push((t, w));
        }
    }
    Plan {
        experts: per_expert
            .into_iter()
            .enumerate()
            .filter(|(_, toks)| !toks.is_empty())
            .collect(),
        chosen,
    }
}

/// Position stamp of layer `l` of the token at `pos`, as the expert cache orders prefetch hints.
fn stamp(model: &Model, pos: usize, l: usize) -> u64 {
    (pos * model.config.n_layers + l) as u64
}

/// The routed (and shared) experts of `xn: (n, hidden)` at positions `pos0..pos0 + n` of layer
/// `l`; writes `(n, hidden)` to `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn moe(
    model: &Model,
    l: usize,
    m: &Moe,
    xn: &[f32],
    n: usize,
    pos0: usize,
    ctx: MoeCtx<'_>,
    s: &mut FfnScratch,
    out: &mut [f32],
) -> Result<()> {
    let c = &model.config;
    let h = c.hidden_size;
    out.fill(0.0);
    let Some(mc) = &c.moe else {
        return Ok(());
    };
    ctx.user.set_position(stamp(model, pos0, l));

    // 1. Route.
    let ne = mc.n_experts;
    let logits = take(&mut s.router, n * ne); // (n, n_experts)
    matmul(m.router.mat(), xn, n, logits);
    // Cache-aware routing: each token's experts chosen with the cache's residency now.
    let aware: Option<Vec<Vec<u32>>> = match ctx.routing.source {
        RoutingSource::CacheAware(_) => {
            let resident = model.experts.resident_mask(l);
            logits
                .chunks_exact(ne)
                .map(|row| ctx.routing.cache_aware_choice(l, row, mc.top_k, &resident))
                .collect()
        }
        _ => None,
    };
    let routing = &*ctx.routing;
    let plan = plan(
        logits,
        ne,
        mc.top_k,
        model.spec.routing,
        mc.norm_topk_prob,
        |t| match &aware {
            Some(a) => Some(a[t].as_slice()),
            None => routing.forced(pos0 + t, l),
        },
    );
    for (t, es) in plan.chosen.iter().enumerate() {
        ctx.routing.record(pos0 + t, l, c.n_layers, es);
    }
    if ctx.routing.wants_scores() {
        for (t, row) in logits.chunks_exact(ne).enumerate() {
            ctx.routing.record_scores(pos0 + t, l, c.n_layers, row);
        }
    }

    // 2. Fetch. Read-ahead: the reader threads fetch this layer's missing experts while the
    // experts already here are computed (and several reads are in flight at once).
    let now = stamp(model, pos0, l);
    let needed: Vec<PrefetchHint> = plan
        .experts
        .iter()
        .map(|&(expert, _)| PrefetchHint {
            layer: l,
            expert,
            needed_at: now,
        })
        .collect();
    // The policy hears of the whole visit before the read-ahead or any fetch makes room.
    let ids: Vec<usize> = plan.experts.iter().map(|&(e, _)| e).collect();
    model.experts.announce(l, &ids);
    model.experts.prefetch_as(ctx.user, &needed);
    if n == 1 {
        prefetch_next(model, l, xn, pos0, &ctx);
    }

    // 3. Compute. Decode fetches a token's k experts, then computes them together; prefill
    // computes one expert at a time over all of its tokens, so it never holds more than one
    // expert beyond the cache's budget.
    let group = if n == 1 { plan.experts.len() } else { 1 };
    for experts in plan.experts.chunks(group.max(1)) {
        let weights = experts
            .iter()
            .map(|&(e, _)| model.experts.get_announced_as(ctx.user, l, e))
            .collect::<Result<Vec<Arc<ExpertWeights>>, _>>()?;
        let rows: usize = experts.iter().map(|(_, toks)| toks.len()).sum();
        let xs = take(&mut s.xs, rows * h); // (rows, hidden)
        let mut at = 0;
        for (_, toks) in experts {
            for &(t, _) in toks {
                xs[at * h..(at + 1) * h].copy_from_slice(&xn[t * h..(t + 1) * h]);
                at += 1;
            }
        }
        let xs = &*xs;
        let mut jobs = Vec::with_capacity(experts.len());
        let mut at = 0;
        for (w, (_, toks)) in weights.iter().zip(experts) {
            jobs.push(Job::expert(
                w,
                &xs[at * h..(at + toks.len()) * h],
                toks.len(),
            ));
            at += toks.len();
        }
        let d = take(&mut s.d, rows * h); // (rows, hidden)
        let mut sc = SwigluScratch {
            g: &mut s.g,
            u: &mut s.u,
            t: &mut s.t,
        };
        swiglu(&jobs, &mut sc, d);
        // Experts in index order, as transformers accumulates them.
        let mut row = 0;
        for (_, toks) in experts {
            for &(t, w) in toks {
                k::axpy(w, &d[row * h..(row + 1) * h], &mut out[t * h..(t + 1) * h]);
                row += 1;
            }
        }
    }

    if let Some((mlp, gate)) = &m.shared {
        let d = take(&mut s.d, n * h); // (n, hidden)
        let mut sc = SwigluScratch {
            g: &mut s.g,
            u: &mut s.u,
            t: &mut s.t,
        };
        swiglu(&[Job::mlp(mlp, xn, n)], &mut sc, d);
        let g = take(&mut s.shared_gate, n); // (n, 1)
        matmul(gate.mat(), xn, n, g);
        for t in 0..n {
            let sig = 1.0 / (1.0 + (-g[t]).exp());
            k::axpy(sig, &d[t * h..(t + 1) * h], &mut out[t * h..(t + 1) * h]);
        }
    }
    Ok(())
}

/// Sends the cache hints for the next MoE layer's experts, before this layer's experts run, so their
/// reads overlap this layer's compute.
fn prefetch_next(model: &Model, l: usize, xn: &[f32], pos: usize, ctx: &MoeCtx<'_>) {
    let p = ctx.prefetch;
    let next = l + 1;
    let Some(Ffn::Moe(next_moe)) = model.layers.get(next).map(|x| &x.ffn) else {
        return;
    };
    let Some(mc) = &model.config.moe else {
        return;
    };
    let mut experts: Vec<u32> = Vec::new();
    if p.gate() {
        let mut logits = vec![0f32; mc.n_experts];
        matmul(next_moe.router.mat(), xn, 1, &mut logits);
        let sel = route(&logits, mc.top_k, model.spec.routing, mc.norm_topk_prob);
        experts.extend(sel.iter().map(|&(e, _)| e as u32));
    }
    if p.history() && pos > 0 {
        if let Some(prev) = ctx.routing.chosen(pos - 1, next) {
            let new: Vec<u32> = prev
                .iter()
                .copied()
                .filter(|e| !experts.contains(e))
                .collect();
            experts.extend(new);
        }
    }
    if experts.is_empty() {
        return;
    }
    let needed_at = stamp(model, pos, next);
    let hints: Vec<PrefetchHint> = experts
        .iter()
        .map(|&e| PrefetchHint {
            layer: next,
            expert: e as usize,
            needed_at,
        })
        .collect();
    model.experts.prefetch_as(ctx.user, &hints);
}

/// Weights of experts chosen from outside (a routing trace): their router probabilities, normalised to
/// sum to one.
fn forced_weights(logits: &[f32], experts: &[u32], routing: Routing) -> Vec<(usize, f32)> {
    let mut p = match routing {
        Routing::SoftmaxTopK => {
            let mut p = logits.to_vec();
            k::softmax(&mut p);
            experts.iter().map(|&e| p[e as usize]).collect::<Vec<f32>>()
        }
        Routing::TopKSoftmax => experts.iter().map(|&e| logits[e as usize]).collect(),
    };
    match routing {
        Routing::SoftmaxTopK => {
            let sum: f32 = p.iter().sum();
            p.iter_mut().for_each(|x| *x /= sum.max(f32::MIN_POSITIVE));
        }
        Routing::TopKSoftmax => k::softmax(&mut p),
    }
    experts.iter().map(|&e| e as usize).zip(p).collect()
}

/// The experts one token uses and their weights, from its router logits.
pub fn route(
    logits: &[f32],
    top_k: usize,
    routing: Routing,
    renormalise: bool,
) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    match routing {
        Routing::SoftmaxTopK => {
            let mut p = logits.to_vec();
            k::softmax(&mut p);
            // Highest first; equal values keep the lower index first.
            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            idx.truncate(top_k);
            let mut sel: Vec<(usize, f32)> = idx.iter().map(|&e| (e, p[e])).collect();
            if renormalise {
                let sum: f32 = sel.iter().map(|s| s.1).sum();
                sel.iter_mut().for_each(|s| s.1 /= sum);
            }
            sel
        }
        Routing::TopKSoftmax => {
            idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            idx.truncate(top_k);
            let mut w: Vec<f32> = idx.iter().map(|&e| logits[e]).collect();
            k::softmax(&mut w);
            idx.into_iter().zip(w).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_groups_tokens_by_expert_in_index_order() {
        // 3 tokens, 4 experts, top-2 of softmax, renormalised.
        let logits = [
            0.0, 3.0, 1.0, 2.0, // token 0: experts 1, 3
            5.0, 0.0, 4.0, 0.0, // token 1: experts 0, 2
            0.0, 1.0, 0.0, 9.0, // token 2: experts 3, 1
        ];
        let p = plan(&logits, 4, 2, Routing::SoftmaxTopK, true, |_| None);
        assert_eq!(p.chosen, vec![vec![1, 3], vec![0, 2], vec![3, 1]]);
        let order: Vec<(usize, Vec<usize>)> = p
            .experts
            .iter()
            .map(|(e, toks)| (*e, toks.iter().map(|t| t.0).collect()))
            .collect();
        assert_eq!(
            order,
            vec![(0, vec![1]), (1, vec![0, 2]), (2, vec![1]), (3, vec![0, 2])]
        );
        // Each token's weights sum to one.
        for t in 0..3 {
            let sum: f32 = p
                .experts
                .iter()
                .flat_map(|(_, toks)| toks.iter().filter(|x| x.0 == t).map(|x| x.1))
                .sum();
            assert!((sum - 1.0).abs() < 1e-6, "token {t}: {sum}");
        }
        // A forced token takes the trace's experts, weighted by its router probabilities.
        let forced = [2u32, 0];
        let p = plan(&logits, 4, 2, Routing::SoftmaxTopK, true, |t| {
            (t == 0).then_some(&forced[..])
        });
        assert_eq!(p.chosen[0], vec![2, 0]);
        assert_eq!(p.chosen[1], vec![0, 2]);
    }
}
