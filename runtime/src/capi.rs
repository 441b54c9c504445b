//! The C ABI. `include/cosmoe.h` is generated from this file by cbindgen (`cbindgen.toml`;
//! tests/c_header.rs fails when the header is out of date, and `COSMOE_BLESS=1` rewrites it). The
//! doc comments below become the header's documentation.
//!
//! Every entry point catches panics (a caught panic is `COSMOE_ERR_INTERNAL`, with the message and
//! where it happened in `cosmoe_last_error()`), checks every pointer, and returns a status.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once, TryLockError};

use crate::forward::Logits;
use crate::generate::{GenerateConfig, StopReason, TextStream};
use crate::routing::Prefetch;
use crate::sampler::SamplerConfig;
use crate::{CancelHandle, Error, LoadOptions, Model, Session, TokenizerSource};

/// What a call did. Every function that can fail returns one; `cosmoe_last_error()` then says why.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cosmoe_status {
    COSMOE_OK = 0,
    /// A NULL pointer, invalid UTF-8, a value out of range, a token id outside the vocabulary, or a
    /// session used by two threads at once.
    COSMOE_ERR_INVALID_ARGUMENT = 1,
    /// A file could not be read (or vanished or shrank under a running model).
    COSMOE_ERR_IO = 2,
    /// A malformed or unsupported model file (or tokenizer).
    COSMOE_ERR_FORMAT = 3,
    /// The buffer is too small; the size needed is in the length out-parameter.
    COSMOE_ERR_BUFFER_TOO_SMALL = 4,
    /// The tokens do not fit the context that is left (`cosmoe_session_reset` empties it).
    COSMOE_ERR_CONTEXT_FULL = 5,
    /// `cosmoe_session_cancel` stopped the call.
    COSMOE_ERR_CANCELLED = 6,
    COSMOE_ERR_OUT_OF_MEMORY = 7,
    /// A bug: a caught panic; the message says where.
    COSMOE_ERR_INTERNAL = 99,
}

/// Why `cosmoe_session_generate` stopped (with `COSMOE_OK`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cosmoe_stop {
    /// It sampled an end-of-sequence token (which the callback received).
    COSMOE_STOP_EOS = 0,
    /// It generated `max_tokens` tokens.
    COSMOE_STOP_MAX_TOKENS = 1,
    /// The callback returned false.
    COSMOE_STOP_CALLBACK = 2,
    /// The context is full.
    COSMOE_STOP_CONTEXT_FULL = 3,
}

/// `cosmoe_model_params.io_mode`: how experts are read from the file.
#[repr(C)]
pub enum cosmoe_io_mode {
    /// `pread` with `O_DIRECT` (falls back to buffered where the file system refuses it).
    COSMOE_IO_DIRECT = 0,
    /// `pread` through the page cache.
    COSMOE_IO_BUFFERED = 1,
    /// Served from a memory map; the OS page cache decides what stays in RAM (no budget).
    COSMOE_IO_MMAP = 2,
}

/// `cosmoe_model_params.prefetch`: how the next layer's experts are predicted.
#[repr(C)]
pub enum cosmoe_prefetch {
    COSMOE_PREFETCH_NONE = 0,
    /// The next layer's router applied to this layer's input.
    COSMOE_PREFETCH_GATE = 1,
    /// The previous token's experts of the next layer.
    COSMOE_PREFETCH_HISTORY = 2,
    COSMOE_PREFETCH_GATE_HISTORY = 3,
}

/// `cosmoe_model_params.cache_policy`: which expert leaves the cache first.
#[repr(C)]
pub enum cosmoe_cache_policy {
    /// Experts their layer stopped using, then in layer order (measured better than LRU).
    COSMOE_CACHE_LAYER = 0,
    COSMOE_CACHE_LRU = 1,
    /// Request counts halving every 16 tokens.
    COSMOE_CACHE_LFU = 2,
    /// The expert expected back last (layer order, aged counts, reuse rate).
    COSMOE_CACHE_STALE = 3,
}

/// How to load a model. Start from `cosmoe_model_default_params()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cosmoe_model_params {
    /// Worker threads of the model's own pool; 0: the physical cores.
    pub n_threads: u32,
    /// Expert cache budget in MiB; 0 (and `expert_cache_pct` 0): every expert resident.
    pub expert_cache_mb: u64,
    /// Expert cache budget as a percentage (0, 100] of all expert bytes, instead of
    /// `expert_cache_mb`; 0: unused.
    pub expert_cache_pct: f32,
    /// A `cosmoe_io_mode` value.
    pub io_mode: u32,
    /// A `cosmoe_prefetch` value (the predictor of every session of the model).
    pub prefetch: u32,
    /// Background reader threads of the expert cache (read-ahead and prefetch); 0: none.
    pub io_threads: u32,
    /// A `cosmoe_cache_policy` value.
    pub cache_policy: u32,
    /// A tokenizer.json to use instead of the model's own (NUL-terminated UTF-8 path; NULL: the
    /// `tokenizer.json` beside the model, else the GGUF file's vocabulary). Read during the load only.
    pub tokenizer_path: *const c_char,
}

/// How to sample. `cosmoe_sampling_default_params()`: greedy.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cosmoe_sampling_params {
    /// 0: greedy (the most likely token); higher flattens the distribution.
    pub temperature: f32,
    /// Sample among the `top_k` most likely tokens; 0: off.
    pub top_k: i32,
    /// Then among the smallest set whose probability reaches `top_p`, in (0, 1]; 1: off.
    pub top_p: f32,
    /// Seed of the random generator (the same seed gives the same tokens).
    pub seed: u64,
}

/// The statistics of a session's runs since it was created or reset (`cosmoe_session_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct cosmoe_stats {
    /// Tokens evaluated by `cosmoe_session_eval`.
    pub prompt_tokens: u64,
    /// Tokens sampled by `cosmoe_session_generate`.
    pub generated_tokens: u64,
    /// The last prompt's evaluation plus sampling its first token.
    pub ttft_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Per generated token after the first of each generation (nearest-rank percentiles).
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    /// This session's expert fetches that found the expert in RAM, and those that waited for a
    /// read (other sessions of the model are not counted).
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Bytes this session's fetches and prefetches read from the file.
    pub bytes_read: u64,
    /// Time this session's fetches waited for reads.
    pub stall_ms: f64,
    /// The paper's expert replacement rate over the evaluated positions (0: the same experts every
    /// token; 1: all new).
    pub exrep: f64,
    /// The process's peak resident set (0 where the OS does not say).
    pub peak_rss_bytes: u64,
    /// Experts evicted to make room for this session's reads.
    pub evictions: u64,
    /// Bytes of this session's KV cache.
    pub kv_bytes: u64,
    /// Time per generated token after the first, the slowest.
    pub latency_max_ms: f64,
}

/// Receives each generated token as soon as it is sampled: its id, and its UTF-8 text (not
/// NUL-terminated; an incomplete multi-byte character is held back until the token that completes
/// it, and a generation's last token carries all that is left; NULL and 0 when the model has no
/// tokenizer). `text` is valid during the call only. Return false to stop.
pub type cosmoe_token_fn = Option<
    unsafe extern "C" fn(
        token: i32,
        text: *const c_char,
        text_len: usize,
        user_data: *mut c_void,
    ) -> bool,
>;

/// A loaded model: weights, tokenizer and expert cache. Thread-safe: any thread may use it and
/// create sessions of it.
pub struct cosmoe_model {
    model: Arc<Model>,
}

/// One conversation with a model: its context (KV cache), routing and statistics. One thread at a
/// time (a second thread's call meanwhile gets `COSMOE_ERR_INVALID_ARGUMENT`), except
/// `cosmoe_session_cancel`, which any thread may call at any time. After a call returned
/// `COSMOE_ERR_INTERNAL` the session refuses every call but reset and free.
pub struct cosmoe_session {
    cancel: CancelHandle,
    session: Mutex<Session>,
}

// ---------------------------------------------------------------------------------------------
// Errors and panics

use cosmoe_status::*;

struct Failure {
    status: cosmoe_status,
    msg: String,
}

type Res<T = ()> = std::result::Result<T, Failure>;

fn fail<T>(status: cosmoe_status, msg: impl Into<String>) -> Res<T> {
    Err(Failure {
        status,
        msg: msg.into(),
    })
}

fn invalid<T>(msg: impl Into<String>) -> Res<T> {
    fail(COSMOE_ERR_INVALID_ARGUMENT, msg)
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        use cosmoe_cache::CacheError as C;
        use cosmoe_loader::LoaderError as L;
        let status = match &e {
            Error::Load(L::Io { .. }) => COSMOE_ERR_IO,
            Error::Load(_) | Error::Model { .. } | Error::Tokenizer(_) => COSMOE_ERR_FORMAT,
            Error::Cache(c) => match c {
                C::Io { .. } | C::ShortRead { .. } | C::Truncated { .. } | C::Open { .. } => {
                    COSMOE_ERR_IO
                }
                C::Alloc { .. } => COSMOE_ERR_OUT_OF_MEMORY,
                C::ExpertTooLarge { .. } | C::BudgetTooSmall { .. } => COSMOE_ERR_INVALID_ARGUMENT,
                C::Layout { .. } => COSMOE_ERR_FORMAT,
                _ => COSMOE_ERR_INTERNAL,
            },
            Error::TokenOutOfRange { .. }
            | Error::EmptyInput
            | Error::InvalidArgument(_)
            | Error::Output { .. } => COSMOE_ERR_INVALID_ARGUMENT,
            Error::ContextFull { .. } => COSMOE_ERR_CONTEXT_FULL,
            Error::Cancelled => COSMOE_ERR_CANCELLED,
        };
        Failure {
            status,
            msg: e.to_string(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// Where the last panic on this thread happened (recorded by the hook below).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Records each panic's message and location for `cosmoe_last_error`, then runs the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            prev(info);
        }));
    });
}

/// Runs `f` as an entry point: its failure or panic becomes a status and this thread's last error.
fn entry(f: impl FnOnce() -> Res) -> cosmoe_status {
    install_panic_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => COSMOE_OK,
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.status
        }
        Err(_) => {
            let what = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panic".into());
            set_last_error(&format!("internal error (a bug in cosmoe): {what}"));
            COSMOE_ERR_INTERNAL
        }
    }
}

/// `*p`, or an error naming `what` when `p` is NULL.
///
/// # Safety
/// `p` is NULL or points to a valid `T` for `'a`.
unsafe fn deref<'a, T>(p: *const T, what: &str) -> Res<&'a T> {
    // SAFETY: the caller's contract.
    match unsafe { p.as_ref() } {
        Some(r) => Ok(r),
        None => invalid(format!("{what} is NULL")),
    }
}

/// Writes `v` to `out` unless it is NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the caller's contract; non-NULL checked.
        unsafe { out.write(v) };
    }
}

/// `n` values at `p`; NULL is fine when `n` is 0.
///
/// # Safety
/// `p` is NULL or valid for reads of `n` values of `T` for `'a`.
unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Res<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return invalid(format!("{what} is NULL but its length is {n}"));
    }
    // SAFETY: the caller's contract; non-NULL, n > 0.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Res<&'a str> {
    if p.is_null() {
        return invalid(format!("{what} is NULL"));
    }
    // SAFETY: the caller's contract; non-NULL.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .or_else(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// A caller's buffer of `capacity` values gets `src`, and `*len` its length; a buffer too small gets
/// nothing (`COSMOE_ERR_BUFFER_TOO_SMALL`: the length says what is needed).
///
/// # Safety
/// `dst` is NULL or valid for `capacity` writes; `len` is valid for a write (checked non-NULL by the
/// caller).
unsafe fn copy_out<T: Copy>(
    src: &[T],
    dst: *mut T,
    capacity: usize,
    len: *mut usize,
    what: &str,
) -> Res {
    // SAFETY: the caller's contract.
    unsafe { len.write(src.len()) };
    if dst.is_null() && capacity > 0 {
        return invalid(format!("{what} is NULL but capacity is {capacity}"));
    }
    if capacity < src.len() {
        return fail(
            COSMOE_ERR_BUFFER_TOO_SMALL,
            format!("{what} holds {capacity}, {} needed", src.len()),
        );
    }
    if src.is_empty() {
        return Ok(());
    }
    // SAFETY: src.len() <= capacity values at dst (the caller's contract), and a caller's buffer
    // does not overlap ours.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    Ok(())
}

/// Writes NULL to `*out`, then a new handle made by `make` (NULL stays on failure).
///
/// # Safety
/// `out` is NULL or valid for a write.
unsafe fn create<T>(out: *mut *mut T, make: impl FnOnce() -> Res<T>) -> Res {
    if out.is_null() {
        return invalid("out is NULL");
    }
    // SAFETY: non-NULL, valid for a write (the caller's contract).
    unsafe { out.write(std::ptr::null_mut()) };
    let handle = Box::into_raw(Box::new(make()?));
    // SAFETY: as above.
    unsafe { out.write(handle) };
    Ok(())
}

/// Frees the handle `*slot` holds and sets it to NULL; NULL or `*slot == NULL` does nothing.
///
/// # Safety
/// `slot` is NULL or points to NULL or to a handle `create` made and nobody freed.
unsafe fn destroy<T>(slot: *mut *mut T) {
    // SAFETY: the caller's contract.
    if let Some(slot) = unsafe { slot.as_mut() } {
        let p = std::mem::replace(slot, std::ptr::null_mut());
        if !p.is_null() {
            // SAFETY: made by Box::into_raw in `create`, and not freed (the slot held it).
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// `n` token ids at `ids` to evaluate, checked against the session's vocabulary.
///
/// # Safety
/// `ids` is valid for `n` ids.
unsafe fn eval_ids(session: &Session, ids: *const i32, n: usize) -> Res<Vec<u32>> {
    if n == 0 {
        return invalid("no tokens to evaluate (n_ids is 0)");
    }
    // SAFETY: the caller's contract.
    token_ids(
        unsafe { slice(ids, n, "ids")? },
        session.model().config.vocab_size,
    )
}

/// Token ids checked against the vocabulary.
fn token_ids(ids: &[i32], vocab: usize) -> Res<Vec<u32>> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| match u32::try_from(id) {
            Ok(t) if (t as usize) < vocab => Ok(t),
            _ => invalid(format!(
                "token id {id} (at index {i}) is outside the vocabulary of {vocab}"
            )),
        })
        .collect()
}

/// The session, unless another call is using it, or a call on it panicked (its context may be
/// half-updated: only `cosmoe_session_reset` brings it back).
fn lock(s: &cosmoe_session) -> Res<MutexGuard<'_, Session>> {
    match s.session.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => invalid(
            "the session is in use (by another thread, or from inside its own callback): \
             one call at a time",
        ),
        Err(TryLockError::Poisoned(_)) => fail(
            COSMOE_ERR_INTERNAL,
            "an earlier call on this session failed inside cosmoe (COSMOE_ERR_INTERNAL): \
             cosmoe_session_reset makes it usable again",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// The library's version, e.g. "0.1.0" (a static string; never free it).
#[no_mangle]
pub extern "C" fn cosmoe_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of this thread's last failed call ("" if none has failed). Valid until this
/// thread's next failed call; never free it.
#[no_mangle]
pub extern "C" fn cosmoe_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The default model parameters: physical cores, every expert resident, O_DIRECT reads, no
/// prefetch predictor, 2 reader threads, the `stale` cache policy, the model's own tokenizer.
#[no_mangle]
pub extern "C" fn cosmoe_model_default_params() -> cosmoe_model_params {
    cosmoe_model_params {
        n_threads: 0,
        expert_cache_mb: 0,
        expert_cache_pct: 0.0,
        io_mode: cosmoe_io_mode::COSMOE_IO_DIRECT as u32,
        prefetch: cosmoe_prefetch::COSMOE_PREFETCH_NONE as u32,
        io_threads: 2,
        cache_policy: cosmoe_cache_policy::COSMOE_CACHE_STALE as u32,
        tokenizer_path: std::ptr::null(),
    }
}

/// Greedy sampling: temperature 0, top_k 40, top_p 0.95 (used once the temperature is raised),
/// seed 0.
#[no_mangle]
pub extern "C" fn cosmoe_sampling_default_params() -> cosmoe_sampling_params {
    cosmoe_sampling_params {
        temperature: 0.0,
        top_k: 40,
        top_p: 0.95,
        seed: 0,
    }
}

fn load_options(p: &cosmoe_model_params) -> Res<LoadOptions> {
    let io = match p.io_mode {
        0 => cosmoe_cache::IoMode::Direct,
        1 => cosmoe_cache::IoMode::Buffered,
        2 => cosmoe_cache::IoMode::Mmap,
        v => return invalid(format!("io_mode {v} is not a cosmoe_io_mode")),
    };
    let prefetch = match p.prefetch {
        0 => Prefetch::None,
        1 => Prefetch::Gate,
        2 => Prefetch::History,
        3 => Prefetch::GateHistory,
        v => return invalid(format!("prefetch {v} is not a cosmoe_prefetch")),
    };
    let policy = match p.cache_policy {
        0 => cosmoe_cache::PolicyKind::Layer,
        1 => cosmoe_cache::PolicyKind::Lru,
        2 => cosmoe_cache::PolicyKind::Lfu,
        3 => cosmoe_cache::PolicyKind::Stale,
        v => return invalid(format!("cache_policy {v} is not a cosmoe_cache_policy")),
    };
    let pct = p.expert_cache_pct;
    if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
        return invalid(format!("expert_cache_pct {pct} is not in [0, 100]"));
    }
    let tokenizer = match p.tokenizer_path.is_null() {
        true => TokenizerSource::Auto,
        // SAFETY: the caller passes a NUL-terminated string (documented on the field).
        false => TokenizerSource::File(PathBuf::from(unsafe {
            c_str(p.tokenizer_path, "tokenizer_path")?
        })),
    };
    let threads = match p.n_threads {
        0 => num_cpus::get_physical(),
        n => n as usize,
    };
    Ok(LoadOptions {
        quantize: None,
        cache: cosmoe_cache::CacheConfig {
            budget: (p.expert_cache_mb > 0 && pct == 0.0)
                .then(|| p.expert_cache_mb.saturating_mul(1 << 20)),
            io,
            prefetch_threads: p.io_threads as usize,
            policy,
            ..Default::default()
        },
        cache_share: (pct > 0.0).then(|| f64::from(pct) / 100.0),
        cache_experts_per_layer: None,
        prefetch,
        threads: Some(threads),
        tokenizer,
    })
}

/// Loads a model: a `.gguf` file or a Hugging Face folder (config.json, *.safetensors,
/// tokenizer.json). `path` is a NUL-terminated UTF-8 path; `params` NULL means the defaults. On
/// success `*out` is a new model, which the caller frees with `cosmoe_model_free`; on failure it is
/// NULL.
///
/// Returns OK; INVALID_ARGUMENT (NULL `path` or `out`, bad parameters, a cache budget smaller than
/// one token's experts of a layer); IO (the file cannot be read); FORMAT (malformed, truncated or
/// unsupported file or tokenizer); OUT_OF_MEMORY.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `params` is NULL or points to parameters; `out` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_model_load(
    path: *const c_char,
    params: *const cosmoe_model_params,
    out: *mut *mut cosmoe_model,
) -> cosmoe_status {
    // SAFETY: the caller's contract, for `out`, `path` and `params`.
    entry(|| unsafe {
        create(out, || {
            let path = c_str(path, "path")?;
            let params = match params.as_ref() {
                Some(p) => *p,
                None => cosmoe_model_default_params(),
            };
            let opts = load_options(&params)?;
            let model = Model::load_with(std::path::Path::new(path), &opts)?;
            Ok(cosmoe_model {
                model: Arc::new(model),
            })
        })
    })
}

/// Frees a model and sets `*model` to NULL; NULL or `*model == NULL` does nothing (so freeing twice
/// through the same pointer is harmless). Sessions of the model may outlive this call: the model's
/// memory is released when its last session is freed.
///
/// # Safety
/// `model` is NULL or points to NULL or to a model from `cosmoe_model_load` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_model_free(model: *mut *mut cosmoe_model) {
    let _ = entry(|| {
        // SAFETY: the caller's contract.
        unsafe { destroy(model) };
        Ok(())
    });
}

/// Creates a session of `model` in `*out` (NULL on failure), which the caller frees with
/// `cosmoe_session_free`. Any number of sessions of one model may run at once on different threads.
///
/// Returns OK; INVALID_ARGUMENT (NULL `model` or `out`).
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_new(
    model: *mut cosmoe_model,
    out: *mut *mut cosmoe_session,
) -> cosmoe_status {
    // SAFETY: the caller's contract, for `out` and `model`.
    entry(|| unsafe {
        create(out, || {
            let session = Session::new(deref(model, "model")?.model.clone());
            Ok(cosmoe_session {
                cancel: session.cancel_handle(),
                session: Mutex::new(session),
            })
        })
    })
}

/// Frees a session and sets `*session` to NULL; NULL or `*session == NULL` does nothing. No call
/// may be running on the session.
///
/// # Safety
/// `session` is NULL or points to NULL or to a session from `cosmoe_session_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_free(session: *mut *mut cosmoe_session) {
    let _ = entry(|| {
        // SAFETY: the caller's contract.
        unsafe { destroy(session) };
        Ok(())
    });
}

/// Tokenizes `text_len` bytes of UTF-8 `text` (not NUL-terminated; NULL is fine when `text_len` is
/// 0) into `ids`, adding the model's special tokens (e.g. BOS) when `add_special`. `*n_ids` is set to
/// the number of ids. `ids` may be NULL when `capacity` is 0 (a size query).
///
/// Returns OK; BUFFER_TOO_SMALL (`capacity < *n_ids`; nothing written); INVALID_ARGUMENT (NULL
/// `model` or `n_ids`, invalid UTF-8, NULL `ids` with `capacity > 0`); FORMAT (the model has no
/// usable tokenizer; the message says why). Thread-safe.
///
/// # Safety
/// `model` is NULL or a live model; `text` is valid for `text_len` bytes; `ids` for `capacity`
/// ids; `n_ids` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_tokenize(
    model: *const cosmoe_model,
    text: *const c_char,
    text_len: usize,
    add_special: bool,
    ids: *mut i32,
    capacity: usize,
    n_ids: *mut usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { deref(model, "model")? };
        if n_ids.is_null() {
            return invalid("n_ids is NULL");
        }
        // SAFETY: the caller's contract.
        let bytes = unsafe { slice(text.cast::<u8>(), text_len, "text")? };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return invalid("text is not valid UTF-8");
        };
        let tok = m.model.tokenizer()?;
        let enc = tok
            .encode(text, add_special)
            .or_else(|e| fail(COSMOE_ERR_FORMAT, format!("tokenizing: {e}")))?;
        let got: Vec<i32> = enc.get_ids().iter().map(|&id| id as i32).collect();
        // SAFETY: the caller's contract.
        unsafe { copy_out(&got, ids, capacity, n_ids, "ids") }
    })
}

/// Writes the UTF-8 text of `n_ids` ids (special tokens left out) to `buf` and its length in bytes
/// to `*len`. A NUL is written after the text only when `capacity > *len`. `buf` may be NULL when
/// `capacity` is 0 (a size query).
///
/// Returns OK; BUFFER_TOO_SMALL (`capacity < *len`; nothing written); INVALID_ARGUMENT (NULL
/// `model` or `len`, NULL `ids` with `n_ids > 0`, an id outside the vocabulary); FORMAT (no usable
/// tokenizer). Thread-safe.
///
/// # Safety
/// `model` is NULL or a live model; `ids` is valid for `n_ids` ids; `buf` for `capacity` bytes;
/// `len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_detokenize(
    model: *const cosmoe_model,
    ids: *const i32,
    n_ids: usize,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { deref(model, "model")? };
        if len.is_null() {
            return invalid("len is NULL");
        }
        // SAFETY: the caller's contract.
        let ids = token_ids(
            unsafe { slice(ids, n_ids, "ids")? },
            m.model.config.vocab_size,
        )?;
        let text = m
            .model
            .tokenizer()?
            .decode(&ids, true)
            .or_else(|e| fail(COSMOE_ERR_FORMAT, format!("detokenizing: {e}")))?;
        let buf = buf.cast::<u8>();
        // SAFETY: the caller's contract.
        unsafe { copy_out(text.as_bytes(), buf, capacity, len, "buf")? };
        if capacity > text.len() {
            // SAFETY: within the caller's `capacity` (> 0) bytes; copy_out refused a NULL `buf`.
            unsafe { buf.add(text.len()).write(0) };
        }
        Ok(())
    })
}

/// Appends `n_ids` tokens to the session's context and computes the logits of the last one
/// (`cosmoe_session_logits`). On failure the context is as it was.
///
/// Returns OK; INVALID_ARGUMENT (NULL `session`, NULL `ids` or `n_ids` 0, an id outside the
/// vocabulary, the session in use by another thread); CONTEXT_FULL (the tokens do not fit);
/// CANCELLED; IO (an expert could not be read: the file shrank or vanished); OUT_OF_MEMORY.
///
/// # Safety
/// `session` is NULL or a live session; `ids` is valid for `n_ids` ids.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_eval(
    session: *mut cosmoe_session,
    ids: *const i32,
    n_ids: usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        let mut guard = lock(s)?;
        // SAFETY: the caller's contract.
        let ids = unsafe { eval_ids(&guard, ids, n_ids)? };
        guard.eval(&ids, Logits::Last)?;
        Ok(())
    })
}

/// Points `*logits` at the `*n_vocab` logits of the last evaluated position. The pointer is owned by
/// the session and valid until its next eval, generate or reset, or its free. After a generation the
/// last sampled token is in the context but not yet evaluated (the next eval or generate does it), so
/// these are the logits it was sampled from.
///
/// Returns OK; INVALID_ARGUMENT (a NULL argument, nothing evaluated yet, the session in use).
///
/// # Safety
/// `session` is NULL or a live session; `logits` and `n_vocab` are NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_logits(
    session: *const cosmoe_session,
    logits: *mut *const f32,
    n_vocab: *mut usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        if logits.is_null() || n_vocab.is_null() {
            return invalid("logits or n_vocab is NULL");
        }
        let guard = lock(s)?;
        let Some(l) = guard.logits() else {
            return invalid("nothing evaluated yet: no logits");
        };
        // SAFETY: non-NULL checked; the buffer lives in the session until its next mutation.
        unsafe {
            logits.write(l.as_ptr());
            n_vocab.write(l.len());
        }
        Ok(())
    })
}

/// Generates up to `max_tokens` tokens after what the session holds (evaluate a prompt first),
/// calling `on_token` (may be NULL) with each one. `params` NULL means
/// `cosmoe_sampling_default_params()`. `*n_generated` (optional) gets the number of tokens sampled
/// and `*stop` (optional) why it stopped. Generation that reaches the context limit stops with
/// `COSMOE_STOP_CONTEXT_FULL` and OK; its last token, sampled from the last position, is passed to
/// the callback but has no position left in the context.
///
/// Returns OK; INVALID_ARGUMENT (NULL `session`, bad sampling parameters, nothing evaluated yet, the
/// session in use); CANCELLED (`cosmoe_session_cancel`: the tokens sampled so far stay in the
/// context); IO; OUT_OF_MEMORY.
///
/// # Safety
/// `session` is NULL or a live session; `params` NULL or valid; `on_token` NULL or a function that
/// may be called on this thread with `user_data`; `n_generated` and `stop` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_generate(
    session: *mut cosmoe_session,
    params: *const cosmoe_sampling_params,
    max_tokens: usize,
    on_token: cosmoe_token_fn,
    user_data: *mut c_void,
    n_generated: *mut usize,
    stop: *mut cosmoe_stop,
) -> cosmoe_status {
    let mut count = 0usize;
    let status = entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        // SAFETY: the caller's contract.
        let p = match unsafe { params.as_ref() } {
            Some(p) => *p,
            None => cosmoe_sampling_default_params(),
        };
        let Ok(top_k) = usize::try_from(p.top_k) else {
            return invalid(format!("top_k {} is negative", p.top_k));
        };
        let mut guard = lock(s)?;
        let model = guard.model().clone();
        let cfg = GenerateConfig {
            max_new_tokens: max_tokens,
            stop_at_eos: true,
            context_shift: None,
            sampler: SamplerConfig {
                temperature: p.temperature,
                top_k,
                top_p: p.top_p,
                seed: p.seed,
                ..SamplerConfig::default()
            },
        };
        let mut text = model.tokenizer.as_ref().map(TextStream::new);
        let g = guard.generate(&cfg, |tok, last| {
            count += 1;
            let Some(f) = on_token else {
                return true;
            };
            let piece = text.as_mut().map(|t| t.push(tok, last));
            let (ptr, len) = match &piece {
                Some(s) => (s.as_ptr().cast::<c_char>(), s.len()),
                None => (std::ptr::null(), 0),
            };
            // SAFETY: the caller's callback, called as documented; `piece` outlives the call.
            unsafe { f(tok as i32, ptr, len, user_data) }
        })?;
        let why = match g.stop {
            StopReason::Eos => cosmoe_stop::COSMOE_STOP_EOS,
            StopReason::MaxTokens => cosmoe_stop::COSMOE_STOP_MAX_TOKENS,
            StopReason::Callback => cosmoe_stop::COSMOE_STOP_CALLBACK,
            StopReason::ContextFull => cosmoe_stop::COSMOE_STOP_CONTEXT_FULL,
        };
        // SAFETY: the caller's contract.
        unsafe { put(stop, why) };
        Ok(())
    });
    // SAFETY: the caller's contract.
    unsafe { put(n_generated, count) };
    status
}

/// Makes the eval or generate running on `session` (on another thread) return CANCELLED within one
/// token; with no call running it does nothing. The session stays usable. Any thread, any time.
///
/// Returns OK; INVALID_ARGUMENT (NULL `session`).
///
/// # Safety
/// `session` is NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_cancel(session: *mut cosmoe_session) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        s.cancel.cancel();
        Ok(())
    })
}

/// Empties the session's context and statistics; also makes a session usable again after a call
/// on it returned COSMOE_ERR_INTERNAL.
///
/// Returns OK; INVALID_ARGUMENT (NULL `session`, the session in use).
///
/// # Safety
/// `session` is NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_reset(session: *mut cosmoe_session) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        let mut guard = match s.session.try_lock() {
            Ok(g) => g,
            // Reset is what brings a session back after a panic inside a call.
            Err(TryLockError::Poisoned(p)) => {
                s.session.clear_poison();
                p.into_inner()
            }
            Err(TryLockError::WouldBlock) => return lock(s).map(drop),
        };
        guard.reset();
        Ok(())
    })
}

/// Fills `*out` with the statistics of the session's runs since it was created or reset. Waits for
/// the expert reads in flight, so their outcomes are counted.
///
/// Returns OK; INVALID_ARGUMENT (a NULL argument, the session in use).
///
/// # Safety
/// `session` is NULL or a live session; `out` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_stats(
    session: *const cosmoe_session,
    out: *mut cosmoe_stats,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        if out.is_null() {
            return invalid("out is NULL");
        }
        let st = lock(s)?.stats();
        let stats = cosmoe_stats {
            prompt_tokens: st.prompt_tokens as u64,
            generated_tokens: st.gen_tokens as u64,
            ttft_ms: st.ttft_ms,
            prefill_tok_s: st.prefill_tok_s,
            decode_tok_s: st.decode_tok_s,
            latency_p50_ms: st.latency.p50_ms,
            latency_p90_ms: st.latency.p90_ms,
            latency_p99_ms: st.latency.p99_ms,
            cache_hits: st.cache.hits,
            cache_misses: st.cache.misses,
            bytes_read: st.cache.bytes_read,
            stall_ms: st.cache.stall_ms,
            exrep: st.routing.exrep,
            peak_rss_bytes: st.memory.peak_rss_bytes.unwrap_or(0),
            evictions: st.cache.evictions,
            kv_bytes: st.memory.kv_bytes,
            latency_max_ms: st.latency.max_ms,
        };
        // SAFETY: non-NULL checked.
        unsafe { out.write(stats) };
        Ok(())
    })
}

/// Like `cosmoe_session_eval`, and points `*logits` at the logits of every one of the `n_ids` tokens:
/// `n_ids * *n_vocab` floats, row-major (token i's row at `i * *n_vocab`), owned by the session and
/// valid until its next eval, generate, reset or state load, or its free. For scoring text
/// (perplexity) or inspecting a prompt's predictions.
///
/// Returns as `cosmoe_session_eval`, and INVALID_ARGUMENT when `logits` or `n_vocab` is NULL.
///
/// # Safety
/// `session` is NULL or a live session; `ids` is valid for `n_ids` ids; `logits` and `n_vocab` are
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_eval_all(
    session: *mut cosmoe_session,
    ids: *const i32,
    n_ids: usize,
    logits: *mut *const f32,
    n_vocab: *mut usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        if logits.is_null() || n_vocab.is_null() {
            return invalid("logits or n_vocab is NULL");
        }
        let mut guard = lock(s)?;
        // SAFETY: the caller's contract.
        let ids = unsafe { eval_ids(&guard, ids, n_ids)? };
        let vocab = guard.model().config.vocab_size;
        let rows = guard.eval(&ids, Logits::All)?;
        // SAFETY: non-NULL checked; the rows live in the session until its next mutation.
        unsafe {
            logits.write(rows.as_ptr());
            n_vocab.write(vocab);
        }
        Ok(())
    })
}

/// Saves the session's context (evaluated positions, the pending sampled token, the last logits; not
/// its statistics) into `buf` and its length into `*len`, for `cosmoe_session_state_load` on a
/// session of the same model (or another load of the same file) later. `buf` may be NULL when
/// `capacity` is 0 (a size query). The bytes hold the KV cache: about `n_past * n_layers * 2 *
/// kv_dim * 4` bytes.
///
/// Returns OK; BUFFER_TOO_SMALL (`capacity < *len`; nothing written); INVALID_ARGUMENT (NULL
/// `session` or `len`, the session in use).
///
/// # Safety
/// `session` is NULL or a live session; `buf` is valid for `capacity` bytes; `len` NULL or valid for
/// a write.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_state_save(
    session: *const cosmoe_session,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        if len.is_null() {
            return invalid("len is NULL");
        }
        let guard = lock(s)?;
        let need = guard.state_len();
        if capacity < need {
            // SAFETY: non-NULL checked.
            unsafe { len.write(need) };
            return fail(
                COSMOE_ERR_BUFFER_TOO_SMALL,
                format!("the state needs {need} bytes, buf holds {capacity}"),
            );
        }
        let state = guard.save_state();
        // SAFETY: the caller's contract; `len` checked.
        unsafe { copy_out(&state, buf, capacity, len, "buf") }
    })
}

/// Replaces the session's context with one `cosmoe_session_state_save` wrote; the statistics start
/// afresh. The session then continues exactly as the one that saved it would have. On failure the
/// session is unchanged.
///
/// Returns OK; INVALID_ARGUMENT (NULL `session`, NULL `buf` with `len > 0`, the session in use, or a
/// state that is not one: truncated, altered, or saved with a model of another shape; the message
/// says which).
///
/// # Safety
/// `session` is NULL or a live session; `buf` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_state_load(
    session: *mut cosmoe_session,
    buf: *const u8,
    len: usize,
) -> cosmoe_status {
    entry(|| {
        // SAFETY: the caller's contract.
        let s = unsafe { deref(session, "session")? };
        // SAFETY: the caller's contract.
        let bytes = unsafe { slice(buf, len, "buf")? };
        lock(s)?.load_state(bytes)?;
        Ok(())
    })
}

/// The model's vocabulary size (token ids are `0..n_vocab`); 0 for NULL.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_model_n_vocab(model: *const cosmoe_model) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.model.config.vocab_size)
}

/// The most positions a session's context holds; 0 for NULL.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_model_n_ctx(model: *const cosmoe_model) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }.map_or(0, |m| m.model.config.max_position_embeddings)
}

/// Positions in the session's context (evaluated tokens and the last sampled one); 0 for NULL or a
/// session in use by another thread.
///
/// # Safety
/// `session` is NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn cosmoe_session_n_past(session: *const cosmoe_session) -> usize {
    // SAFETY: the caller's contract.
    unsafe { session.as_ref() }
        .and_then(|s| s.session.try_lock().ok().map(|g| g.n_past()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: cosmoe_last_error returns a NUL-terminated string owned by this thread.
        unsafe { CStr::from_ptr(cosmoe_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_is_an_internal_error_naming_where() {
        let status = entry(|| panic!("boom {}", 42));
        assert_eq!(status, COSMOE_ERR_INTERNAL);
        let msg = last_error();
        assert!(msg.contains("boom 42") && msg.contains("capi.rs"), "{msg}");
        // A failure after it replaces the message.
        assert_eq!(entry(|| invalid("second")), COSMOE_ERR_INVALID_ARGUMENT);
        assert_eq!(last_error(), "second");
    }

    #[test]
    fn every_cache_policy_maps_and_others_are_refused() {
        let mut p = cosmoe_model_default_params();
        for (v, kind) in [
            (
                cosmoe_cache_policy::COSMOE_CACHE_LAYER,
                cosmoe_cache::PolicyKind::Layer,
            ),
            (
                cosmoe_cache_policy::COSMOE_CACHE_LRU,
                cosmoe_cache::PolicyKind::Lru,
            ),
            (
                cosmoe_cache_policy::COSMOE_CACHE_LFU,
                cosmoe_cache::PolicyKind::Lfu,
            ),
            (
                cosmoe_cache_policy::COSMOE_CACHE_STALE,
                cosmoe_cache::PolicyKind::Stale,
            ),
        ] {
            p.cache_policy = v as u32;
            assert_eq!(load_options(&p).map(|o| o.cache.policy).ok(), Some(kind));
        }
        p.cache_policy = 4;
        match load_options(&p) {
            Err(e) => assert_eq!(e.status, COSMOE_ERR_INVALID_ARGUMENT),
            Ok(_) => panic!("cache_policy 4 accepted"),
        }
    }

    #[test]
    fn errors_map_to_statuses() {
        let s = |e: Error| Failure::from(e).status;
        assert_eq!(s(Error::Cancelled), COSMOE_ERR_CANCELLED);
        assert_eq!(
            s(Error::ContextFull { needed: 9, max: 8 }),
            COSMOE_ERR_CONTEXT_FULL
        );
        assert_eq!(
            s(Error::TokenOutOfRange {
                id: 9,
                vocab_size: 8
            }),
            COSMOE_ERR_INVALID_ARGUMENT
        );
        assert_eq!(s(Error::Tokenizer("x".into())), COSMOE_ERR_FORMAT);
    }

    #[test]
    fn token_ids_are_checked_against_the_vocabulary() {
        assert_eq!(token_ids(&[0, 7], 8).ok(), Some(vec![0, 7]));
        for bad in [[0, 8], [-1, 0]] {
            let e = token_ids(&bad, 8).err().map(|f| (f.status, f.msg));
            let (status, msg) = e.unwrap();
            assert_eq!(status, COSMOE_ERR_INVALID_ARGUMENT);
            assert!(msg.contains("outside the vocabulary of 8"), "{msg}");
        }
    }

    #[test]
    fn a_session_whose_call_panicked_refuses_calls_until_reset() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gguf/qwen3_moe.f32.gguf");
        let model = Arc::new(Model::load(&path).unwrap());
        let session = Session::new(model);
        let handle = cosmoe_session {
            cancel: session.cancel_handle(),
            session: Mutex::new(session),
        };
        let ptr = &handle as *const cosmoe_session as *mut cosmoe_session;
        let ids = [1i32, 2, 3];
        // SAFETY: a live session and three ids.
        assert_eq!(
            unsafe { cosmoe_session_eval(ptr, ids.as_ptr(), 3) },
            COSMOE_OK
        );
        // A panic while a call holds the session (as a bug inside eval would).
        let status = entry(|| {
            let _g = lock(&handle)?;
            panic!("inside a call");
        });
        assert_eq!(status, COSMOE_ERR_INTERNAL);
        // SAFETY: as above.
        let again = unsafe { cosmoe_session_eval(ptr, ids.as_ptr(), 3) };
        assert_eq!(again, COSMOE_ERR_INTERNAL);
        assert!(
            last_error().contains("cosmoe_session_reset"),
            "{}",
            last_error()
        );
        // SAFETY: as above.
        unsafe {
            assert_eq!(cosmoe_session_reset(ptr), COSMOE_OK);
            assert_eq!(cosmoe_session_n_past(ptr), 0);
            assert_eq!(cosmoe_session_eval(ptr, ids.as_ptr(), 3), COSMOE_OK);
            assert_eq!(cosmoe_session_n_past(ptr), 3);
        }
    }
}
