//! A checkpoint loaded into the structures the forward pass reads.
//!
//! Weights stay in their file format, in place over the memory map; only norm weights and biases
//! (vectors) are converted to f32. Every tensor's shape is checked here, once, so the forward pass
//! never meets a size it did not expect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosmoe_cache::{
    CacheConfig, ExpertCache, ExpertLayout as CacheLayout, ExpertLoc, ExpertPart, ExpertWeights,
    PartLoc,
};
use cosmoe_loader::tokenizer::{self, Tokenizer};
use cosmoe_loader::{
    Checkpoint, DType, GgufFile, LoaderError, ModelConfig, ModelPath, Weight, WeightSource,
};

use crate::arch::{ArchSpec, ExpertLayout, Naming, Part, QkNorm, TensorNames};
use crate::quant::{Blocks, QuantScheme, TypePlan};
use crate::rope::Rope;
use crate::{Error, Result};

/// A linear layer `y = W x (+ b)`.
pub struct Linear {
    /// (out, in)
    pub w: Weight,
    /// (out)
    pub b: Option<Vec<f32>>,
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// (head_dim) per head, or (n_heads * head_dim) over the projection: see [`QkNorm`].
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Keys further back than this many positions are not attended to.
    pub window: Option<usize>,
}

/// Routed experts of one layer; the expert weights themselves live in the [`ExpertStore`].
pub struct Moe {
    /// (n_experts, hidden)
    pub router: Weight,
    /// Qwen2-MoE's always-on expert and its (1, hidden) sigmoid gate.
    pub shared: Option<(Mlp, Weight)>,
}

pub enum Ffn {
    Dense(Mlp),
    Moe(Moe),
}

pub struct Layer {
    /// (hidden)
    pub attn_norm: Vec<f32>,
    pub attn: Attention,
    /// (hidden)
    pub ffn_norm: Vec<f32>,
    pub ffn: Ffn,
}

/// A loaded model: immutable after load, shared by any number of [`crate::Session`]s on any threads
/// (`Send + Sync`). The expert cache inside is shared by them too.
pub struct Model {
    pub config: ModelConfig,
    pub spec: ArchSpec,
    /// (vocab, hidden)
    pub embed: Weight,
    pub layers: Vec<Layer>,
    /// (hidden)
    pub norm: Vec<f32>,
    /// (vocab, hidden); the embedding matrix again when tied.
    pub lm_head: Weight,
    /// Every routed expert is fetched through this cache (resident when it has no budget).
    pub experts: ExpertCache,
    /// The expert predictor sessions use unless told otherwise.
    pub prefetch: crate::routing::Prefetch,
    pub rope: Rope,
    /// `None` when the model has none (or it failed to load: see [`Model::tokenizer_note`]).
    pub tokenizer: Option<Tokenizer>,
    /// Why there is no tokenizer, when one was looked for and not found or not loaded.
    pub tokenizer_note: Option<String>,
    /// Bytes of the weights that are always resident (all but the routed experts).
    pub resident_bytes: u64,
    /// The model's own worker threads ([`LoadOptions::threads`]); `None`: rayon's global pool.
    pub pool: Option<Arc<rayon::ThreadPool>>,
    /// Where the weights come from (kept open: the matrices are windows onto its memory maps).
    pub source: Box<dyn WeightSource>,
}

/// Where a model's tokenizer comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenizerSource {
    /// `tokenizer.json` in the model folder (or beside a model file), else the vocabulary in a GGUF
    /// file's metadata; a tokenizer that fails to load leaves a note, not an error (a model run on
    /// token ids needs none).
    #[default]
    Auto,
    /// This `tokenizer.json` (an error if it does not load).
    File(PathBuf),
    /// No tokenizer.
    None,
}

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Convert the weight matrices on load as llama-quantize would quantise a GGUF file of the model
    /// (`QuantScheme::mix(FileType::Q4_K_M)`, or every matrix in one type:
    /// `QuantScheme::pure(DType::Q8_0)`, also `DType::Q8_0.into()`), its fallbacks included (a
    /// matrix whose rows do not split into the blocks gets another type, F16 at worst). Routers and
    /// the shared-expert gate stay as stored (routing decisions are sensitive and they are tiny, as
    /// in llama.cpp).
    pub quantize: Option<QuantScheme>,
    /// The expert cache: budget, I/O mode, prefetch threads. The default is resident.
    pub cache: CacheConfig,
    /// Budget as this share (0..=1) of all expert bytes, instead of `cache.budget`.
    pub cache_share: Option<f64>,
    /// Budget as this many experts of every MoE layer (the sum over layers of each layer's N largest
    /// experts, as the cache charges them), instead of `cache.budget`. N = top-k with
    /// [`PolicyKind::Layer`](cosmoe_cache::PolicyKind::Layer) is the CoSMoEs paper's offloading rule
    /// (its Eq. 8): exactly the k experts in use of each layer in memory, the ones a token stops using
    /// replaced by the ones it starts using.
    pub cache_experts_per_layer: Option<usize>,
    /// Expert prediction for prefetching (needs `cache.prefetch_threads > 0`).
    pub prefetch: crate::routing::Prefetch,
    /// Worker threads of the model's own pool; `None` runs on rayon's global pool (which a program
    /// sizes once, as the CLI does).
    pub threads: Option<usize>,
    pub tokenizer: TokenizerSource,
}

impl Model {
    /// Loads a Hugging Face checkpoint folder (config.json + safetensors), weights as stored.
    pub fn load(dir: &Path) -> Result<Model> {
        Self::load_with(dir, &LoadOptions::default())
    }

    /// Loads a Hugging Face checkpoint folder or a `.gguf` file, and its tokenizer as
    /// `opts.tokenizer` says.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Model> {
        let resolved = ModelPath::resolve(path)?;
        let mut model = match &resolved {
            ModelPath::Gguf(path) => {
                let file = GgufFile::open(path)?;
                let config = ModelConfig::from_gguf(&file)?;
                let mut spec = ArchSpec::of(config.architecture);
                spec.rope_interleaved = cosmoe_loader::gguf_rope_interleaved(file.architecture()?);
                Self::build(config, spec, Naming::Gguf, Box::new(file), opts)?
            }
            ModelPath::Checkpoint(dir) => {
                let config = ModelConfig::from_file(dir)?;
                let checkpoint = Checkpoint::open(dir)?;
                let spec = ArchSpec::of(config.architecture);
                Self::build(
                    config,
                    spec,
                    Naming::HuggingFace,
                    Box::new(checkpoint),
                    opts,
                )?
            }
        };
        match &opts.tokenizer {
            TokenizerSource::None => {}
            TokenizerSource::File(p) => model.tokenizer = Some(tokenizer::load(p)?),
            TokenizerSource::Auto => match find_tokenizer(&resolved) {
                Ok(Some(t)) => model.tokenizer = Some(t),
                Ok(None) => {
                    model.tokenizer_note = Some(format!(
                        "{} has no tokenizer (no tokenizer.json, no GGUF vocabulary)",
                        path.display()
                    ))
                }
                Err(e) => model.tokenizer_note = Some(e.to_string()),
            },
        }
        Ok(model)
    }

    /// The tokenizer, or an error saying why there is none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::Tokenizer(
                self.tokenizer_note
                    .clone()
                    .unwrap_or_else(|| "the model was loaded without a tokenizer".into()),
            )
        })
    }

    /// Runs `f` on the model's worker threads (its own pool, else rayon's global one), on a pool
    /// thread: the products inside split their work by stealing rather than by waking the pool
    /// from outside and sleeping until it is done (a futex round trip per product).
    pub(crate) fn on_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => rayon::scope(|_| f()),
        }
    }

    /// Worker threads the model's products split over.
    pub fn n_threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Builds a model from its configuration and a source of its weights named as `naming` says.
    pub fn build(
        config: ModelConfig,
        spec: ArchSpec,
        naming: Naming,
        source: Box<dyn WeightSource>,
        opts: &LoadOptions,
    ) -> Result<Model> {
        // llama.cpp's GGUF files have `output.weight` unless the embeddings are tied; a checkpoint is
        // planned as the file `cosmoe convert` writes of it.
        let output = match naming {
            Naming::Gguf => !config.tie_word_embeddings,
            Naming::HuggingFace => crate::quant::writes_output(&config),
        };
        let plan = opts
            .quantize
            .map(|s| {
                TypePlan::for_config(s, &config, output, Blocks::Quantised).map_err(|e| match e {
                    // A type it cannot quantise to, named as the option gave it.
                    Error::InvalidArgument(msg) => Error::InvalidArgument(format!(
                        "--quantize {}: {msg}",
                        s.ftype.name().to_lowercase()
                    )),
                    e => e,
                })
            })
            .transpose()?;
        let b = Builder {
            ck: source.as_ref(),
            c: &config,
            names: TensorNames::new(config.architecture, naming),
            gguf: TensorNames::new(config.architecture, Naming::Gguf),
            spec,
            plan,
        };
        let parts = b.build()?;
        let layout = expert_layout(source.as_ref(), parts.experts);
        let mut cache_cfg = opts.cache;
        if opts.cache_share.is_some() || opts.cache_experts_per_layer.is_some() {
            // What the cache charges for every expert (page-rounded buffers), from an unbounded cache.
            let unbounded = CacheConfig {
                budget: None,
                prefetch_threads: 0,
                ..opts.cache
            };
            let all = ExpertCache::open(layout.clone(), unbounded)?;
            if let Some(share) = opts.cache_share {
                let total = all.total_expert_bytes();
                cache_cfg.budget = Some((total as f64 * share.clamp(0.0, 1.0)) as u64);
            }
            if let Some(n) = opts.cache_experts_per_layer {
                let per_layer = |l| {
                    let mut c: Vec<u64> = (0..all.n_experts(l))
                        .map(|e| all.expert_bytes(l, e))
                        .collect();
                    c.sort_unstable_by(|a, b| b.cmp(a));
                    c.iter().take(n).sum::<u64>()
                };
                cache_cfg.budget = Some((0..all.n_layers()).map(per_layer).sum());
            }
        }
        let experts = ExpertCache::open(layout, cache_cfg)?;
        if let Some(m) = &config.moe {
            experts.check_budget(m.top_k)?;
        }
        let pool = match opts.threads {
            None => None,
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .thread_name(|i| format!("cosmoe-worker-{i}"))
                    .build()
                    .map_err(|e| Error::InvalidArgument(format!("starting {n} threads: {e}")))?,
            )),
        };
        let total_bytes: u64 = source.tensor_stats().iter().map(|t| t.n_bytes as u64).sum();
        let resident_bytes = total_bytes.saturating_sub(experts.total_bytes() as u64);
        // llama.cpp's converter stores Llama 3 RoPE scaling as per-frequency divisors.
        let rope_factors = match source.contains("rope_freqs.weight") {
            true => Some(source.vector("rope_freqs.weight", config.head_dim / 2)?),
            false => None,
        };
        Ok(Model {
            spec,
            rope: Rope::new(&config.rope, config.head_dim, rope_factors.as_deref()),
            embed: parts.embed,
            layers: parts.layers,
            norm: parts.norm,
            lm_head: parts.lm_head,
            experts,
            prefetch: opts.prefetch,
            tokenizer: None,
            tokenizer_note: None,
            resident_bytes,
            pool,
            config,
            source,
        })
    }

    /// Dimension of keys/values of one position (`n_kv_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.config.n_kv_heads * self.config.head_dim
    }

    /// A KV cache sized for this model.
    pub fn new_kv_cache(&self) -> crate::KvCache {
        crate::KvCache::new(self.config.n_layers, self.kv_dim())
    }
}

/// `tokenizer.json` in the model folder (or beside a model file), else the vocabulary in a GGUF
/// file's metadata.
fn find_tokenizer(model: &ModelPath) -> Result<Option<Tokenizer>> {
    let dir = match model {
        ModelPath::Gguf(p) => p.parent().unwrap_or(Path::new(".")),
        ModelPath::Checkpoint(d) => d,
    };
    if let Some(t) = tokenizer::load_from_dir(dir)? {
        return Ok(Some(t));
    }
    if let ModelPath::Gguf(p) = model {
        return Ok(tokenizer::from_gguf(&GgufFile::open(p)?)?);
    }
    Ok(None)
}

// Sessions on several threads share one model.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Model>();
};

/// Where each expert's matrices are: a window onto a weight file becomes a file range the cache reads
/// itself; a matrix converted on load stays in memory.
fn expert_layout(source: &dyn WeightSource, experts: Vec<Vec<ExpertWeights>>) -> CacheLayout {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut part = |w: &Weight| -> ExpertPart {
        let Some((path, offset)) = source.locate(&w.bytes) else {
            return ExpertPart::from_weight(w);
        };
        let file = match files.iter().position(|f| *f == path) {
            Some(i) => i,
            None => {
                files.push(path);
                files.len() - 1
            }
        };
        ExpertPart {
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            loc: PartLoc::File {
                file,
                offset,
                len: w.bytes.len(),
            },
        }
    };
    let layers = experts
        .iter()
        .map(|l| {
            l.iter()
                .map(|x| ExpertLoc {
                    gate: part(&x.gate),
                    up: part(&x.up),
                    down: part(&x.down),
                    right: x
                        .right
                        .as_ref()
                        .map(|r| Box::new([part(&r.gate), part(&r.up), part(&r.down)])),
                })
                .collect()
        })
        .collect();
    CacheLayout { files, layers }
}

struct Parts {
    embed: Weight,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    lm_head: Weight,
    experts: Vec<Vec<ExpertWeights>>,
}

struct Builder<'a> {
    ck: &'a dyn WeightSource,
    c: &'a ModelConfig,
    names: TensorNames,
    /// The GGUF names, which the quantisation plan goes by.
    gguf: TensorNames,
    spec: ArchSpec,
    plan: Option<TypePlan>,
}

impl Builder<'_> {
    /// The type the quantisation plan gives the tensor of GGUF name `gguf`, if any.
    fn planned(&self, gguf: &str) -> Option<DType> {
        self.plan.as_ref()?.get(gguf).map(|t| t.dtype)
    }

    /// A weight matrix, whose GGUF name is `gguf`, in the type the plan gives it (as stored without
    /// a plan, or where the plan keeps it).
    fn convert(&self, w: Weight, gguf: &str) -> Weight {
        match self.planned(gguf) {
            // The plan's fallbacks only choose types whose blocks split the rows.
            Some(dt) => w.converted(dt).unwrap_or(w),
            None => w,
        }
    }

    /// A matrix from the checkpoint, converted as the plan says.
    fn matrix(&self, name: &str, gguf: &str, rows: usize, cols: usize) -> Result<Weight> {
        Ok(self.convert(self.ck.matrix(name, rows, cols)?, gguf))
    }

    fn build(&self) -> Result<Parts> {
        let c = self.c;
        let h = c.hidden_size;
        let (embed_name, lm_name) = (self.gguf.embed(), self.gguf.lm_head());
        let raw_embed = self.ck.matrix(self.names.embed(), c.vocab_size, h)?;
        let embed = self.convert(raw_embed.clone(), embed_name);
        let lm_head = if !c.tie_word_embeddings {
            self.matrix(self.names.lm_head(), lm_name, c.vocab_size, h)?
        } else if self
            .planned(lm_name)
            .is_some_and(|t| Some(t) != self.planned(embed_name))
        {
            // Tied, but the file has both (qwen2moe, olmoe), each quantised its own way.
            self.convert(raw_embed, lm_name)
        } else {
            embed.clone()
        };
        let norm = self.ck.vector(self.names.final_norm(), h)?;
        let mut layers = Vec::with_capacity(c.n_layers);
        let mut experts = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let (layer, layer_experts) = self.layer(l)?;
            layers.push(layer);
            experts.push(layer_experts);
        }
        Ok(Parts {
            embed,
            layers,
            norm,
            lm_head,
            experts,
        })
    }

    /// Layer `l`'s projection `part`, (out, inp), and its bias if `bias`.
    fn linear(&self, l: usize, part: Part, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let name = self.names.part(l, part);
        let gguf = format!("{}.weight", self.gguf.part(l, part));
        let w = self.matrix(&format!("{name}.weight"), &gguf, out, inp)?;
        let b = if bias {
            Some(self.ck.vector(&format!("{name}.bias"), out)?)
        } else {
            None
        };
        Ok(Linear { w, b })
    }

    /// A SwiGLU MLP of layer `l` from its gate/up/down parts.
    fn mlp(&self, l: usize, [gate, up, down]: [Part; 3], ffn: usize) -> Result<Mlp> {
        let (h, bias) = (self.c.hidden_size, self.c.mlp_bias);
        Ok(Mlp {
            gate: self.linear(l, gate, ffn, h, bias)?,
            up: self.linear(l, up, ffn, h, bias)?,
            down: self.linear(l, down, h, ffn, bias)?,
        })
    }

    fn layer(&self, l: usize) -> Result<(Layer, Vec<ExpertWeights>)> {
        let c = self.c;
        let w = |p: Part| format!("{}.weight", self.names.part(l, p));
        let (h, hd) = (c.hidden_size, c.head_dim);
        let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
        let qkv_bias = c.attention_bias;
        let o_bias = c.attention_bias && self.spec.o_bias_with_attention_bias;
        let (q_norm, k_norm) = match self.spec.qk_norm {
            QkNorm::None => (None, None),
            QkNorm::PerHead => (
                Some(self.ck.vector(&w(Part::QNorm), hd)?),
                Some(self.ck.vector(&w(Part::KNorm), hd)?),
            ),
            QkNorm::Whole => (
                Some(self.ck.vector(&w(Part::QNorm), q_dim)?),
                Some(self.ck.vector(&w(Part::KNorm), kv_dim)?),
            ),
        };
        let attn = Attention {
            q: self.linear(l, Part::Q, q_dim, h, qkv_bias)?,
            k: self.linear(l, Part::K, kv_dim, h, qkv_bias)?,
            v: self.linear(l, Part::V, kv_dim, h, qkv_bias)?,
            o: self.linear(l, Part::O, h, q_dim, o_bias)?,
            q_norm,
            k_norm,
            window: c.sliding_window.get(l).copied().flatten(),
        };
        let (ffn, experts) = match &c.moe {
            Some(m) if c.is_sparse_layer(l) => {
                let router_names = self.names.router(l);
                let router_name = self.first_present(&router_names)?;
                let router = self.ck.matrix(router_name, m.n_experts, h)?;
                let shared = match m.shared_expert_ffn {
                    Some(ffn) => Some((
                        self.mlp(l, [Part::SharedGate, Part::SharedUp, Part::SharedDown], ffn)?,
                        self.ck.matrix(&w(Part::SharedRouter), 1, h)?,
                    )),
                    None => None,
                };
                let experts = self.experts(l, m.n_experts, m.expert_ffn)?;
                (Ffn::Moe(Moe { router, shared }), experts)
            }
            _ => (
                Ffn::Dense(self.mlp(l, [Part::Gate, Part::Up, Part::Down], c.intermediate_size)?),
                Vec::new(),
            ),
        };
        let layer = Layer {
            attn_norm: self.ck.vector(&w(Part::AttnNorm), h)?,
            attn,
            ffn_norm: self.ck.vector(&w(Part::FfnNorm), h)?,
            ffn,
        };
        Ok((layer, experts))
    }

    fn first_present<'n>(&self, names: &'n [String]) -> Result<&'n str> {
        names
            .iter()
            .find(|s| self.ck.contains(s))
            .or(names.first())
            .map(String::as_str)
            .ok_or_else(|| self.missing("(no candidate names)"))
    }

    fn missing(&self, tensor: &str) -> Error {
        Error::Load(LoaderError::MissingTensor {
            path: self.ck.origin().to_owned(),
            tensor: tensor.to_owned(),
        })
    }

    /// Layer `l`'s experts, from whichever layout the checkpoint uses.
    fn experts(&self, l: usize, n_experts: usize, ffn: usize) -> Result<Vec<ExpertWeights>> {
        let h = self.c.hidden_size;
        let rank = self.c.moe.as_ref().and_then(|m| m.expert_rank);
        if let Some(r) = rank {
            // A GGUF file (cosmoe's `cosmoe` architecture) stacks each factor of every expert.
            let stacked = |p: &str, side: &str| format!("blk.{l}.ffn_{p}_{side}_exps.weight");
            if self.ck.contains(&stacked("gate", "l")) {
                let shapes = [("gate", ffn, h), ("up", ffn, h), ("down", h, ffn)];
                // gate, up, down left factors, then the right ones: `ExpertWeights::from_matrices`' order.
                let mut factors = Vec::new();
                for side in ["l", "r"] {
                    for (p, n, m) in shapes {
                        let (rows, cols) = if side == "l" { (n, r) } else { (r, m) };
                        // Each factor as the plan types the full matrix (as from a checkpoint).
                        let full = format!("blk.{l}.ffn_{p}_exps.weight");
                        let w = self.ck.stacked(&stacked(p, side), n_experts, rows, cols)?;
                        let w: Vec<Weight> =
                            w.into_iter().map(|w| self.convert(w, &full)).collect();
                        factors.push(w.into_iter());
                    }
                }
                return (0..n_experts)
                    .map(|e| {
                        let m: Option<Vec<Weight>> =
                            factors.iter_mut().map(Iterator::next).collect();
                        m.and_then(ExpertWeights::from_matrices)
                            .ok_or_else(|| Error::Model {
                                path: self.ck.origin().to_owned(),
                                msg: format!("layer {l}: the factors of expert {e} are missing"),
                            })
                    })
                    .collect();
            }
        }
        let layouts = self.names.expert_layouts(l);
        // A weight-decomposed expert's matrices are `{name}.left` and `{name}.right`.
        let wd = if rank.is_some() { ".left" } else { "" };
        let found = layouts.iter().find(|lay| match lay {
            ExpertLayout::PerExpert { prefix, gate, .. } => {
                self.ck.contains(&format!("{prefix}.0.{gate}{wd}.weight"))
            }
            ExpertLayout::Fused { gate_up, .. } => self.ck.contains(gate_up),
            ExpertLayout::Stacked { gate, .. } => self.ck.contains(gate),
        });
        let Some(layout) = found else {
            // Name the tensor the architecture's usual layout needs.
            let want = match &layouts[..] {
                [ExpertLayout::PerExpert { prefix, gate, .. }, ..] => {
                    format!("{prefix}.0.{gate}{wd}.weight")
                }
                [ExpertLayout::Fused { gate_up, .. }, ..] => gate_up.clone(),
                [ExpertLayout::Stacked { gate, .. }, ..] => gate.clone(),
                [] => format!("model.layers.{l} experts"),
            };
            return Err(self.missing(&want));
        };
        // GGUF stores each projection of all experts as one 3-D tensor, which the plan goes by.
        let exps = |p: &str| format!("blk.{l}.ffn_{p}_exps.weight");
        let (g_name, u_name, d_name) = (exps("gate"), exps("up"), exps("down"));
        if let Some(r) = rank {
            let ExpertLayout::PerExpert {
                prefix,
                gate,
                up,
                down,
            } = layout
            else {
                return Err(Error::Model {
                    path: self.ck.origin().to_owned(),
                    msg: format!(
                        "layer {l}: weight-decomposed experts are read from per-expert tensors \
                         (`{{prefix}}.E.gate_proj.left.weight`), not from stacked ones"
                    ),
                });
            };
            // Left factors (n, r), right factors (r, m), each as the plan types the full matrix.
            return (0..n_experts)
                .map(|e| {
                    let name = |p: &str, side: &str| format!("{prefix}.{e}.{p}.{side}.weight");
                    let pair =
                        |p: &str, gguf: &str, n: usize, m: usize| -> Result<(Weight, Weight)> {
                            Ok((
                                self.matrix(&name(p, "left"), gguf, n, r)?,
                                self.matrix(&name(p, "right"), gguf, r, m)?,
                            ))
                        };
                    let (gl, gr) = pair(gate, &g_name, ffn, h)?;
                    let (ul, ur) = pair(up, &u_name, ffn, h)?;
                    let (dl, dr) = pair(down, &d_name, h, ffn)?;
                    Ok(ExpertWeights {
                        gate: gl,
                        up: ul,
                        down: dl,
                        right: Some(Box::new(cosmoe_cache::RightFactors {
                            gate: gr,
                            up: ur,
                            down: dr,
                        })),
                    })
                })
                .collect();
        }
        match layout {
            ExpertLayout::PerExpert {
                prefix,
                gate,
                up,
                down,
            } => (0..n_experts)
                .map(|e| {
                    let name = |p: &str| format!("{prefix}.{e}.{p}.weight");
                    Ok(ExpertWeights {
                        gate: self.matrix(&name(gate), &g_name, ffn, h)?,
                        up: self.matrix(&name(up), &u_name, ffn, h)?,
                        down: self.matrix(&name(down), &d_name, h, ffn)?,
                        right: None,
                    })
                })
                .collect(),
            ExpertLayout::Stacked { gate, up, down } => {
                let g = self.ck.stacked(gate, n_experts, ffn, h)?;
                let u = self.ck.stacked(up, n_experts, ffn, h)?;
                let d = self.ck.stacked(down, n_experts, h, ffn)?;
                Ok(g.into_iter()
                    .zip(u)
                    .zip(d)
                    .map(|((gate, up), down)| ExpertWeights {
                        gate: self.convert(gate, &g_name),
                        up: self.convert(up, &u_name),
                        down: self.convert(down, &d_name),
                        right: None,
                    })
                    .collect())
            }
            ExpertLayout::Fused { gate_up, down } => {
                let gu = self.ck.stacked(gate_up, n_experts, 2 * ffn, h)?;
                let dn = self.ck.stacked(down, n_experts, h, ffn)?;
                gu.into_iter()
                    .zip(dn)
                    .map(|(gu, down)| {
                        let split = gu.rows_slice(0, ffn).zip(gu.rows_slice(ffn, ffn));
                        let (gate, up) = split.ok_or_else(|| Error::Model {
                            path: self.ck.origin().to_owned(),
                            msg: format!("cannot split `{gate_up}` into gate and up halves"),
                        })?;
                        Ok(ExpertWeights {
                            gate: self.convert(gate, &g_name),
                            up: self.convert(up, &u_name),
                            down: self.convert(down, &d_name),
                            right: None,
                        })
                    })
                    .collect()
            }
        }
    }
}
