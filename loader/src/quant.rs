//! llama-quantize's file types ("ftypes": `Q4_K_M`, `Q5_K_S`, `Q2_K`, `Q4_0`, ...) and the type each
//! tensor gets in them, as `llama_tensor_get_type` in llama.cpp's `src/llama-quant.cpp` picks it (no
//! importance matrix, no `--tensor-type` / `--output-tensor-type` overrides).
//!
//! A file type is a recipe, not one block type: `Q4_K_M` keeps most matrices in Q4_K but gives the
//! output matrix Q6_K, `attn_v` and `ffn_down` Q6_K in some layers (by layer index), falls back to
//! Q5_0 where a row is not a whole number of 256-value super-blocks, and so on. [`QuantScheme`] is a
//! file type, or with `pure` set, llama-quantize's `--pure`: every matrix in the file type's one block
//! type (the fallbacks still apply). Which tensors are matrices to quantise at all (not norms, not
//! routers, 2-D or 3-D, ...) follows llama.cpp too.
//!
//! [`plan_types`] runs llama-quantize's two passes over a file's tensor list: its counters
//! (`i_attention_wv`, `i_ffn_down`, ...) count tensors in llama.cpp's order (layer number, then
//! name), and a 3-D expert tensor (`blk.N.ffn_down_exps.weight`) is one tensor of layer N, not one
//! per expert.
//!
//! Not covered (cosmoe has no kernels for the types they produce): the IQ1/IQ2/IQ3 file types,
//! `Q2_K_S` (needs an importance matrix), `MXFP4_MOE`, `TQ1_0`/`TQ2_0`, `Q1_0`/`Q2_0`; nor the rules
//! that only apply to them or to architectures cosmoe does not load (GLM-5 Next's Q8_0 floor).

use std::fmt;

use cosmoe_kernels::DType;

use crate::{LoaderError, Result};

/// One of llama-quantize's file types (`llama_ftype`), by its llama-quantize name.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
    // The IQ1/IQ2/IQ3 types: pure only (llama-quantize's mixes of them, and their quantisers, need an
    // importance matrix; `cosmoe synth` fills them with random blocks).
    IQ2_XXS,
    IQ2_XS,
    IQ2_S,
    IQ3_XXS,
    IQ3_S,
    IQ1_S,
    IQ1_M,
}

impl FileType {
    /// Every file type, in llama-quantize's order of its list.
    pub const ALL: [FileType; 26] = [
        FileType::IQ2_XXS,
        FileType::IQ2_XS,
        FileType::IQ2_S,
        FileType::IQ3_XXS,
        FileType::IQ3_S,
        FileType::IQ1_S,
        FileType::IQ1_M,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q2_K,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::IQ4_NL,
        FileType::IQ4_XS,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::Q8_0,
        FileType::F16,
        FileType::BF16,
        FileType::F32,
    ];

    /// llama-quantize's aliases: `Q3_K`, `Q4_K` and `Q5_K` are its `_M` mixes.
    const ALIASES: [(&'static str, FileType); 3] = [
        ("Q3_K", FileType::Q3_K_M),
        ("Q4_K", FileType::Q4_K_M),
        ("Q5_K", FileType::Q5_K_M),
    ];

    /// llama-quantize's name of the file type.
    pub const fn name(self) -> &'static str {
        match self {
            FileType::F32 => "F32",
            FileType::F16 => "F16",
            FileType::BF16 => "BF16",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q8_0 => "Q8_0",
            FileType::Q2_K => "Q2_K",
            FileType::Q3_K_S => "Q3_K_S",
            FileType::Q3_K_M => "Q3_K_M",
            FileType::Q3_K_L => "Q3_K_L",
            FileType::Q4_K_S => "Q4_K_S",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_S => "Q5_K_S",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
            FileType::IQ4_NL => "IQ4_NL",
            FileType::IQ4_XS => "IQ4_XS",
            FileType::IQ2_XXS => "IQ2_XXS",
            FileType::IQ2_XS => "IQ2_XS",
            FileType::IQ2_S => "IQ2_S",
            FileType::IQ3_XXS => "IQ3_XXS",
            FileType::IQ3_S => "IQ3_S",
            FileType::IQ1_S => "IQ1_S",
            FileType::IQ1_M => "IQ1_M",
        }
    }

    /// The `llama_ftype` number (the GGUF key `general.file_type`).
    pub const fn llama_ftype(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q2_K => 10,
            FileType::Q3_K_S => 11,
            FileType::Q3_K_M => 12,
            FileType::Q3_K_L => 13,
            FileType::Q4_K_S => 14,
            FileType::Q4_K_M => 15,
            FileType::Q5_K_S => 16,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
            FileType::IQ4_NL => 25,
            FileType::IQ4_XS => 30,
            FileType::BF16 => 32,
            FileType::IQ2_XXS => 19,
            FileType::IQ2_XS => 20,
            FileType::IQ3_XXS => 23,
            FileType::IQ1_S => 24,
            FileType::IQ3_S => 26,
            FileType::IQ2_S => 28,
            FileType::IQ1_M => 31,
        }
    }

    /// The block type most matrices get (`llama_ftype_get_default_type`).
    pub const fn default_type(self) -> DType {
        match self {
            FileType::F32 => DType::F32,
            FileType::F16 => DType::F16,
            FileType::BF16 => DType::BF16,
            FileType::Q4_0 => DType::Q4_0,
            FileType::Q4_1 => DType::Q4_1,
            FileType::Q5_0 => DType::Q5_0,
            FileType::Q5_1 => DType::Q5_1,
            FileType::Q8_0 => DType::Q8_0,
            FileType::Q2_K => DType::Q2_K,
            FileType::Q3_K_S | FileType::Q3_K_M | FileType::Q3_K_L => DType::Q3_K,
            FileType::Q4_K_S | FileType::Q4_K_M => DType::Q4_K,
            FileType::Q5_K_S | FileType::Q5_K_M => DType::Q5_K,
            FileType::Q6_K => DType::Q6_K,
            FileType::IQ4_NL => DType::IQ4_NL,
            FileType::IQ4_XS => DType::IQ4_XS,
            FileType::IQ2_XXS => DType::IQ2_XXS,
            FileType::IQ2_XS => DType::IQ2_XS,
            FileType::IQ2_S => DType::IQ2_S,
            FileType::IQ3_XXS => DType::IQ3_XXS,
            FileType::IQ3_S => DType::IQ3_S,
            FileType::IQ1_S => DType::IQ1_S,
            FileType::IQ1_M => DType::IQ1_M,
        }
    }

    /// Parses a llama-quantize name (`q4_k_m`, `Q4_K_M`, any case; `Q3_K`/`Q4_K`/`Q5_K` are its
    /// aliases of the `_M` mixes).
    pub fn parse(s: &str) -> Option<FileType> {
        FileType::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .or_else(|| {
                FileType::ALIASES
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(s))
                    .map(|&(_, f)| f)
            })
    }

    /// The accepted names, lower case, comma-separated (for help and error messages).
    pub fn accepted_names() -> String {
        let mut v: Vec<String> = FileType::ALL
            .iter()
            .map(|f| f.name().to_lowercase())
            .collect();
        v.extend(
            FileType::ALIASES
                .iter()
                .map(|(a, f)| format!("{} (= {})", a.to_lowercase(), f.name().to_lowercase())),
        );
        v.join(", ")
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to choose each matrix's type: a llama-quantize file type, or with `pure` every matrix in its
/// default block type (llama-quantize's `--pure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantScheme {
    pub ftype: FileType,
    pub pure: bool,
}

impl QuantScheme {
    /// llama-quantize's mix of `ftype` (what `llama-quantize IN OUT ftype` writes).
    pub const fn mix(ftype: FileType) -> QuantScheme {
        QuantScheme { ftype, pure: false }
    }

    /// Every matrix in `dtype` (what `llama-quantize --pure` writes; rows that do not split into its
    /// blocks still fall back as llama-quantize's do). The file type recorded is the one whose
    /// default is `dtype` (the `_S` one of a K-quant).
    pub const fn pure(dtype: DType) -> QuantScheme {
        let ftype = match dtype {
            DType::F32 => FileType::F32,
            DType::F16 => FileType::F16,
            DType::BF16 => FileType::BF16,
            DType::Q8_0 => FileType::Q8_0,
            DType::Q4_0 => FileType::Q4_0,
            DType::Q4_1 => FileType::Q4_1,
            DType::Q5_0 => FileType::Q5_0,
            DType::Q5_1 => FileType::Q5_1,
            DType::Q2_K => FileType::Q2_K,
            DType::Q3_K => FileType::Q3_K_S,
            DType::Q4_K => FileType::Q4_K_S,
            DType::Q5_K => FileType::Q5_K_S,
            DType::Q6_K => FileType::Q6_K,
            DType::IQ4_NL => FileType::IQ4_NL,
            DType::IQ4_XS => FileType::IQ4_XS,
            DType::IQ2_XXS => FileType::IQ2_XXS,
            DType::IQ2_XS => FileType::IQ2_XS,
            DType::IQ2_S => FileType::IQ2_S,
            DType::IQ3_XXS => FileType::IQ3_XXS,
            DType::IQ3_S => FileType::IQ3_S,
            DType::IQ1_S => FileType::IQ1_S,
            DType::IQ1_M => FileType::IQ1_M,
        };
        QuantScheme { ftype, pure: true }
    }

    /// Parses a file type's name ([`FileType::parse`]); an unknown name is an error listing the
    /// accepted ones.
    pub fn parse(s: &str, pure: bool) -> Result<QuantScheme> {
        match FileType::parse(s.trim()) {
            Some(ftype) => Ok(QuantScheme { ftype, pure }),
            None => Err(LoaderError::UnknownFileType {
                name: s.to_owned(),
                accepted: FileType::accepted_names(),
            }),
        }
    }

    /// The block type of the matrices that no rule singles out.
    pub const fn default_type(self) -> DType {
        self.ftype.default_type()
    }
}

impl From<FileType> for QuantScheme {
    fn from(ftype: FileType) -> Self {
        QuantScheme::mix(ftype)
    }
}

impl From<DType> for QuantScheme {
    fn from(dtype: DType) -> Self {
        QuantScheme::pure(dtype)
    }
}

impl fmt::Display for QuantScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pure {
            true => write!(f, "{} (pure {})", self.ftype, self.default_type().name()),
            false => f.write_str(self.ftype.name()),
        }
    }
}

/// What llama-quantize reads of the model besides the tensors (its `llama_quant_model_desc`).
#[derive(Clone, Debug)]
pub struct QuantModel {
    /// `general.architecture`: `llama`, `qwen3moe`, ... (`falcon` and the 70B-class models have
    /// rules of their own).
    pub arch: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Routed experts per layer; 0 for a dense model.
    pub n_expert: usize,
}

impl QuantModel {
    fn n_gqa(&self) -> usize {
        match self.n_head_kv {
            0 => 0,
            kv => self.n_head / kv,
        }
    }

    /// llama.cpp's `LLM_TYPE_70B` (its `attn_v` gets Q5_K for Q3_K/Q4_K), by architecture and depth.
    fn is_70b(&self) -> bool {
        match self.arch.as_str() {
            "llama" => self.n_expert != 8 && self.n_layer == 80 && self.n_head != self.n_head_kv,
            "qwen2" | "deci" | "olmo" => self.n_layer == 80,
            "jais2" => self.n_layer == 68,
            _ => false,
        }
    }
}

/// One tensor of the file: its name and ggml dims (innermost first: `[cols, rows, n_expert]`).
#[derive(Clone, Copy, Debug)]
pub struct QuantTensor<'a> {
    pub name: &'a str,
    pub ne: &'a [usize],
}

/// The type chosen for one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorType {
    pub dtype: DType,
    /// The type the rules chose when its blocks do not fit the rows and `dtype` is the fallback.
    pub fallback_from: Option<DType>,
}

/// Where the blocks of a plan's matrices come from, which decides the types a plan may give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// Quantised from real weights (`cosmoe convert`, `--quantize` on load): every type needs a
    /// quantiser of cosmoe's ([`DType::has_quantizer`]).
    Quantised,
    /// Random blocks (`cosmoe synth`): also the types cosmoe has no quantiser for, in their pure
    /// schemes (llama-quantize's mixes of them need an importance matrix).
    Random,
}

/// Whether `scheme` can be planned with `blocks` at all: the check of [`plan_types`], which a command
/// can make before any work (it needs no model).
pub fn check_blocks(scheme: QuantScheme, blocks: Blocks) -> Result<()> {
    let default = scheme.default_type();
    if blocks == Blocks::Quantised && !default.has_quantizer() {
        return Err(cosmoe_kernels::KernelError::NoQuantizer(default).into());
    }
    Ok(())
}

/// The type of each tensor of `tensors` under `scheme`, as llama-quantize chooses it; `None` for a
/// tensor llama-quantize copies as it is (vectors, norms, routers, ...). A scheme whose type cosmoe
/// cannot quantise to is an error for [`Blocks::Quantised`] ([`KernelError::NoQuantizer`]), and as
/// a mix for [`Blocks::Random`] too.
///
/// [`KernelError::NoQuantizer`]: cosmoe_kernels::KernelError::NoQuantizer
pub fn plan_types(
    scheme: QuantScheme,
    model: &QuantModel,
    tensors: &[QuantTensor<'_>],
    blocks: Blocks,
) -> Result<Vec<Option<TensorType>>> {
    let default = scheme.default_type();
    check_blocks(scheme, blocks)?;
    let cats: Vec<Category> = tensors.iter().map(|t| Category::of(t.name)).collect();
    let mut st = State {
        scheme,
        model,
        n_attention_wv: cats.iter().filter(|c| c.is_attn_v()).count() as i64,
        n_layer: model.n_layer as i64,
        has_tied_embeddings: !cats.contains(&Category::Output),
        i_attention_wv: 0,
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
    };
    // llama.cpp walks its tensors sorted by layer number (none: -1), then by name.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (layer_of(tensors[i].name).unwrap_or(-1), tensors[i].name);
        key(a).cmp(&key(b))
    });
    let mut out = vec![None; tensors.len()];
    for i in order {
        let t = &tensors[i];
        if !allows_quantization(t) {
            continue;
        }
        if !default.quantised_activations() {
            // F32, F16, BF16: every matrix in it, no rules, no fallbacks.
            out[i] = Some(TensorType {
                dtype: default,
                fallback_from: None,
            });
            continue;
        }
        let chosen = match scheme.pure {
            true => default,
            // Random blocks only (see above).
            false if !default.has_quantizer() => {
                return Err(LoaderError::Quantize {
                    tensor: t.name.to_owned(),
                    msg: format!(
                        "llama-quantize's {} mix needs an importance matrix, which cosmoe does not \
                         take: only --pure {} (every matrix in it; random blocks in `synth`)",
                        scheme.ftype,
                        scheme.ftype.name().to_lowercase()
                    ),
                })
            }
            false => st.rules(default, t, cats[i])?,
        };
        let dtype = fallback(t.ne.first().copied().unwrap_or(0), chosen);
        out[i] = Some(TensorType {
            dtype,
            fallback_from: (dtype != chosen).then_some(chosen),
        });
    }
    Ok(out)
}

/// llama.cpp's broad tensor categories (`tensor_get_category`), by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttentionQkv,
    AttentionKvB,
    AttentionV,
    AttentionK,
    AttentionQ,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

impl Category {
    fn of(name: &str) -> Category {
        if name == "output.weight" {
            return Category::Output;
        }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            return Category::TokenEmbd;
        }
        let table = [
            ("attn_qkv.weight", Category::AttentionQkv),
            ("attn_kv_b.weight", Category::AttentionKvB),
            ("attn_v.weight", Category::AttentionV),
            ("attn_k.weight", Category::AttentionK),
            ("attn_q.weight", Category::AttentionQ),
            ("attn_output.weight", Category::AttentionOutput),
            ("ffn_up", Category::FfnUp),
            ("ffn_gate", Category::FfnGate),
            ("ffn_down", Category::FfnDown),
        ];
        table
            .iter()
            .find(|(s, _)| name.contains(s))
            .map_or(Category::Other, |&(_, c)| c)
    }

    /// `attn_v`-like: more sensitive to quantisation (`category_is_attn_v`).
    fn is_attn_v(self) -> bool {
        matches!(
            self,
            Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
        )
    }
}

/// The layer number of `blk.N.…` (C's `sscanf(name, "blk.%d.", …)`: a sign and digits after `blk.`).
fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start();
    let (neg, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n: i64 = digits[..end].parse().ok()?;
    Some(if neg { -n } else { n })
}

/// ggml's `ggml_n_dims`: 1 + the index of the last dim above 1.
fn n_dims(ne: &[usize]) -> usize {
    ne.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// llama-quantize's `tensor_allows_quantization`: 2-D and 3-D `*weight` tensors except norms,
/// routers and the small or positional tables of other architectures.
fn allows_quantization(t: &QuantTensor<'_>) -> bool {
    let name = t.name;
    if n_dims(t.ne) < 2 || !name.ends_with("weight") {
        return false;
    }
    const NEVER: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
        // (llama.cpp tests the name for "ffn_gate_inp.weight"; "_inp_shexp" contains it too.)
        "ffn_gate_inp",
    ];
    !NEVER.iter().any(|s| name.contains(s))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// llama-quantize's `tensor_type_fallback`: a type whose blocks split rows of `ncols`, or F16.
fn fallback(ncols: usize, target: DType) -> DType {
    if ncols.is_multiple_of(target.block_len()) {
        return target;
    }
    let smaller = match target {
        DType::IQ4_XS
        | DType::IQ3_XXS
        | DType::IQ3_S
        | DType::IQ2_XXS
        | DType::IQ2_XS
        | DType::IQ2_S
        | DType::IQ1_S
        | DType::IQ1_M => DType::IQ4_NL,
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        // A 32-value block type has nothing smaller to go to.
        other => other,
    };
    match ncols.is_multiple_of(smaller.block_len()) {
        true => smaller,
        false => DType::F16,
    }
}

/// llama-quantize's `quantize_state_impl`: its counters as the tensors go by.
struct State<'a> {
    scheme: QuantScheme,
    model: &'a QuantModel,
    n_attention_wv: i64,
    n_layer: i64,
    has_tied_embeddings: bool,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl State<'_> {
    /// `(i_layer, n_layer)` of an FFN tensor: with experts, its `blk.N.` number (Mixtral's expert
    /// tensors are not in layer order); else the count of such tensors so far.
    fn layer_info(&self, counter: i64, name: &str) -> Result<(i64, i64)> {
        if self.model.n_expert <= 1 {
            return Ok((counter, self.n_layer));
        }
        let bad = |msg: String| LoaderError::Quantize {
            tensor: name.to_owned(),
            msg,
        };
        let l = layer_of(name).ok_or_else(|| bad("cannot tell its layer (no `blk.N.`)".into()))?;
        if l < 0 || l >= self.n_layer {
            return Err(bad(format!(
                "layer {l} is outside the model's {} layers",
                self.n_layer
            )));
        }
        Ok((l, self.n_layer))
    }

    /// `llama_tensor_get_type_impl` for the file types of [`FileType`].
    fn rules(&mut self, default: DType, t: &QuantTensor<'_>, cat: Category) -> Result<DType> {
        use FileType as F;
        let ftype = self.scheme.ftype;
        let m = self.model;
        let falcon = m.arch == "falcon";
        let eight = m.n_expert == 8;
        let mut new = default;
        if cat == Category::Output || (self.has_tied_embeddings && cat == Category::TokenEmbd) {
            let nx = t.ne.first().copied().unwrap_or(0);
            if falcon || !nx.is_multiple_of(new.block_len()) {
                new = DType::Q8_0;
            } else if new != DType::Q8_0 {
                new = DType::Q6_K;
            }
        } else if cat == Category::TokenEmbd {
            // Only the IQ1/IQ2/IQ3/TQ file types change the embeddings.
        } else if cat.is_attn_v() {
            let more = use_more_bits(self.i_attention_wv, self.n_attention_wv);
            match ftype {
                F::Q2_K => {
                    new = if m.n_gqa() >= 4 {
                        DType::Q4_K
                    } else {
                        DType::Q3_K
                    }
                }
                F::Q3_K_M => {
                    new = if self.i_attention_wv < 2 {
                        DType::Q5_K
                    } else {
                        DType::Q4_K
                    }
                }
                F::Q3_K_L => new = DType::Q5_K,
                F::IQ4_NL | F::IQ4_XS if m.n_gqa() >= 4 => new = DType::Q5_K,
                F::Q4_K_M | F::Q5_K_M if more => new = DType::Q6_K,
                F::Q4_K_S if self.i_attention_wv < 4 => new = DType::Q5_K,
                _ => {}
            }
            if m.is_70b() && matches!(new, DType::Q3_K | DType::Q4_K) {
                // 8 heads share each attn_v in a 70B model: more bits for little size.
                new = DType::Q5_K;
            }
            if eight {
                new = DType::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttentionK {
            if eight {
                new = DType::Q8_0;
            }
        } else if cat == Category::AttentionQ {
            // Only the IQ3 file types change attn_q.
        } else if cat == Category::FfnDown {
            let (i, n) = self.layer_info(self.i_ffn_down, t.name)?;
            let more = use_more_bits(i, n);
            match ftype {
                F::Q2_K => new = DType::Q3_K,
                F::Q3_K_M => {
                    new = if i < n / 16 {
                        DType::Q5_K
                    } else if !falcon || more {
                        DType::Q4_K
                    } else {
                        DType::Q3_K
                    }
                }
                F::Q3_K_L => new = if falcon { DType::Q4_K } else { DType::Q5_K },
                F::Q4_K_M => {
                    if falcon {
                        new = if i < n / 16 {
                            DType::Q6_K
                        } else if more {
                            DType::Q5_K
                        } else {
                            DType::Q4_K
                        };
                    } else if more {
                        new = DType::Q6_K;
                    }
                }
                F::IQ4_NL | F::IQ4_XS if i < n / 8 => new = DType::Q5_K,
                F::Q5_K_M if more => new = DType::Q6_K,
                F::Q4_K_S if !falcon && i < n / 8 => new = DType::Q5_K,
                // (Q4_0 and Q5_0 change ffn_down only with an importance matrix.)
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttentionOutput {
            if !falcon {
                if eight {
                    if matches!(
                        ftype,
                        F::Q2_K
                            | F::Q3_K_S
                            | F::Q3_K_M
                            | F::IQ4_NL
                            | F::Q4_K_S
                            | F::Q4_K_M
                            | F::IQ4_XS
                    ) {
                        new = DType::Q5_K;
                    }
                } else {
                    match ftype {
                        F::Q2_K => new = DType::Q3_K,
                        F::Q3_K_M => new = DType::Q4_K,
                        F::Q3_K_L => new = DType::Q5_K,
                        _ => {}
                    }
                }
            } else if ftype == F::Q3_K_L {
                new = DType::Q4_K;
            }
        } else if cat == Category::FfnGate {
            // Only IQ3_XS changes ffn_gate; the layer is still checked and counted.
            self.layer_info(self.i_ffn_gate, t.name)?;
            self.i_ffn_gate += 1;
        } else if cat == Category::FfnUp {
            self.layer_info(self.i_ffn_up, t.name)?;
            self.i_ffn_up += 1;
        }
        // (attn_qkv and attn_kv_b took the attn_v branch above, as in llama.cpp, where the branch
        // of their own comes after it and is never reached.)
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(n_layer: usize, n_expert: usize) -> QuantModel {
        QuantModel {
            arch: "llama".into(),
            n_layer,
            n_head: 8,
            n_head_kv: 2,
            n_expert,
        }
    }

    fn types(scheme: QuantScheme, m: &QuantModel, t: &[(&str, Vec<usize>)]) -> Vec<Option<DType>> {
        let ts: Vec<QuantTensor<'_>> = t
            .iter()
            .map(|(name, ne)| QuantTensor { name, ne })
            .collect();
        plan_types(scheme, m, &ts, Blocks::Quantised)
            .unwrap()
            .into_iter()
            .map(|t| t.map(|t| t.dtype))
            .collect()
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_list_the_accepted() {
        assert_eq!(FileType::parse("q4_k_m"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q4_K_M"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("iq4_xs"), Some(FileType::IQ4_XS));
        assert_eq!(FileType::parse("q4_k"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q3_K"), Some(FileType::Q3_K_M));
        assert_eq!(FileType::parse("q4_k_x"), None);
        for f in FileType::ALL {
            assert_eq!(FileType::parse(&f.name().to_lowercase()), Some(f));
        }
        let e = QuantScheme::parse("q7_k", false).unwrap_err().to_string();
        assert!(
            e.contains("q7_k") && e.contains("q4_k_m") && e.contains("bf16"),
            "{e}"
        );
    }

    #[test]
    fn layer_numbers_parse_as_sscanf_does() {
        assert_eq!(layer_of("blk.12.attn_v.weight"), Some(12));
        assert_eq!(layer_of("blk.3x"), Some(3));
        assert_eq!(layer_of("output.weight"), None);
        assert_eq!(layer_of("blk.x.attn_v.weight"), None);
    }

    #[test]
    fn vectors_norms_and_routers_are_kept() {
        let m = model(1, 4);
        let t = [
            ("blk.0.attn_norm.weight", vec![256]),
            ("blk.0.ffn_gate_inp.weight", vec![256, 4]),
            ("blk.0.ffn_gate_inp_shexp.weight", vec![256, 1]),
            ("blk.0.attn_q.bias", vec![256, 2]),
            ("blk.0.attn_q.weight", vec![256, 256]),
            ("blk.0.attn_k.weight", vec![256, 1, 1]),
        ];
        let got = types(FileType::Q4_K_M.into(), &m, &t);
        assert_eq!(got, [None, None, None, None, Some(DType::Q4_K), None]);
    }

    #[test]
    fn q4_k_m_follows_llama_quantize() {
        // 8 layers: use_more_bits holds for layers 0, 3, 6 and 7.
        let m = model(8, 0);
        let mut t: Vec<(String, Vec<usize>)> = vec![
            ("token_embd.weight".into(), vec![256, 100]),
            ("output.weight".into(), vec![256, 100]),
        ];
        for l in 0..8 {
            t.push((format!("blk.{l}.attn_v.weight"), vec![256, 64]));
            t.push((format!("blk.{l}.ffn_down.weight"), vec![512, 256]));
        }
        let t: Vec<(&str, Vec<usize>)> = t.iter().map(|(n, ne)| (n.as_str(), ne.clone())).collect();
        let got = types(FileType::Q4_K_M.into(), &m, &t);
        assert_eq!(got[0], Some(DType::Q4_K));
        assert_eq!(got[1], Some(DType::Q6_K));
        for l in 0..8 {
            let want = match l {
                0 | 3 | 6 | 7 => DType::Q6_K,
                _ => DType::Q4_K,
            };
            assert_eq!(got[2 + 2 * l], Some(want), "attn_v {l}");
            assert_eq!(got[3 + 2 * l], Some(want), "ffn_down {l}");
        }
        // Pure: one type throughout.
        let pure = types(QuantScheme::pure(DType::Q4_K), &m, &t);
        assert!(pure.iter().all(|&d| d == Some(DType::Q4_K)));
    }

    #[test]
    fn tied_embeddings_take_the_output_type_and_rows_fall_back() {
        let m = model(1, 8);
        let t = [
            ("token_embd.weight", vec![448, 1000]),
            ("blk.0.attn_k.weight", vec![448, 64]),
            ("blk.0.attn_output.weight", vec![448, 448]),
            ("blk.0.ffn_up_exps.weight", vec![448, 1280, 8]),
            ("blk.0.ffn_down_exps.weight", vec![1280, 448, 8]),
            ("blk.0.attn_q.weight", vec![40, 448]),
        ];
        let got = types(FileType::Q4_K_M.into(), &m, &t);
        // No output.weight: token_embd is the output (448 is no whole Q4_K block: Q8_0).
        assert_eq!(got[0], Some(DType::Q8_0));
        assert_eq!(got[1], Some(DType::Q8_0)); // 8 experts: attn_k Q8_0
        assert_eq!(got[2], Some(DType::Q5_1)); // 8 experts: Q5_K, 448 falls back to Q5_1
        assert_eq!(got[3], Some(DType::Q5_0)); // Q4_K falls back to Q5_0
        assert_eq!(got[4], Some(DType::Q6_K)); // layer 0 of 1: use_more_bits
        assert_eq!(got[5], Some(DType::F16)); // 40 is no whole 32-value block
    }

    #[test]
    fn expert_tensors_outside_the_layers_are_errors() {
        let m = model(2, 4);
        let ne = [512usize, 256, 4];
        let t = [QuantTensor {
            name: "blk.7.ffn_down_exps.weight",
            ne: &ne,
        }];
        let e = plan_types(FileType::Q4_K_M.into(), &m, &t, Blocks::Quantised).unwrap_err();
        assert!(e.to_string().contains("layer 7"), "{e}");
    }

    /// A type cosmoe cannot quantise to: refused for quantised blocks, pure or mixed, with the
    /// kernels' reason; allowed pure for random blocks, and refused as a mix, which needs an
    /// importance matrix.
    #[test]
    fn types_without_a_quantiser_are_random_and_pure_only() {
        let m = model(1, 0);
        let ne = [512usize, 256];
        let t = [QuantTensor {
            name: "blk.0.attn_q.weight",
            ne: &ne,
        }];
        for scheme in [
            QuantScheme::mix(FileType::IQ3_S),
            QuantScheme::pure(DType::IQ3_S),
        ] {
            let e = plan_types(scheme, &m, &t, Blocks::Quantised).unwrap_err();
            assert!(e.to_string().contains("cannot quantise to IQ3_S"), "{e}");
        }
        let pure = plan_types(QuantScheme::pure(DType::IQ3_S), &m, &t, Blocks::Random).unwrap();
        assert_eq!(pure[0].map(|t| t.dtype), Some(DType::IQ3_S));
        let mix = QuantScheme::mix(FileType::IQ3_S);
        let e = plan_types(mix, &m, &t, Blocks::Random).unwrap_err();
        assert!(e.to_string().contains("importance matrix"), "{e}");
    }
}
