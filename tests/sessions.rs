//! Several sessions of one model at the same time on different threads, sharing an expert cache so
//! small that they evict each other's experts: each session's outputs are bit-identical to running
//! alone, and each session's statistics count its own requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosmoe::forward::Logits;
use cosmoe::routing::Prefetch;
use cosmoe::{LoadOptions, Model, Session};
use cosmoe_cache::{CacheConfig, IoMode};

fn gguf(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

/// The logits of every prompt position, then of 10 greedy decode steps, and the expert requests
/// the session made.
fn run(s: &mut Session, prompt: &[u32]) -> (Vec<f32>, u64) {
    s.reset();
    let mut out = s.eval(prompt, Logits::All).unwrap().to_vec();
    let v = s.model().config.vocab_size;
    for _ in 0..10 {
        let next = cosmoe::sampler::argmax(&out[out.len() - v..]);
        out.extend_from_slice(s.eval(&[next], Logits::Last).unwrap());
    }
    (out, s.stats().cache.requests)
}

fn prompts(vocab: u32) -> Vec<Vec<u32>> {
    (0..3u32)
        .map(|p| (0..9 + p).map(|i| (i * 37 + p * 11 + 1) % vocab).collect())
        .collect()
}

#[test]
fn concurrent_sessions_equal_lone_ones() {
    for name in ["mixtral.q8_0.gguf", "qwen3_moe.f32.gguf"] {
        let path = gguf(name);
        let alone = Arc::new(Model::load(&path).unwrap());
        let vocab = alone.config.vocab_size as u32;
        let mut lone = Session::new(alone.clone());
        let want: Vec<(Vec<f32>, u64)> = prompts(vocab).iter().map(|p| run(&mut lone, p)).collect();

        // A budget of one layer's k largest experts: every session's every layer evicts.
        let m = alone.config.moe.clone().unwrap();
        let per_expert = (0..alone.experts.n_layers())
            .flat_map(|l| (0..alone.experts.n_experts(l)).map(move |e| (l, e)))
            .map(|(l, e)| alone.experts.expert_bytes(l, e))
            .max()
            .unwrap();
        for (io, prefetch) in [
            (IoMode::Buffered, Prefetch::GateHistory),
            (IoMode::Direct, Prefetch::None),
        ] {
            let opts = LoadOptions {
                cache: CacheConfig {
                    budget: Some(per_expert * m.top_k as u64),
                    io,
                    prefetch_threads: 2,
                    ..Default::default()
                },
                prefetch,
                threads: Some(2),
                ..Default::default()
            };
            let shared = Arc::new(Model::load_with(&path, &opts).unwrap());
            std::thread::scope(|scope| {
                for (i, prompt) in prompts(vocab).into_iter().enumerate() {
                    let (shared, want) = (shared.clone(), &want[i]);
                    scope.spawn(move || {
                        let mut s = Session::new(shared);
                        for round in 0..3 {
                            let (got, requests) = run(&mut s, &prompt);
                            let what = format!("{name} {io} session {i} round {round}");
                            assert!(got == want.0, "{what}: logits differ from a lone run");
                            assert_eq!(
                                requests, want.1,
                                "{what}: a session counts its own expert requests"
                            );
                        }
                    });
                }
            });
            shared.experts.wait_prefetches();
            let total = shared.experts.stats();
            let runs: u64 = want.iter().map(|w| 3 * w.1).sum();
            assert_eq!(
                total.requests, runs,
                "{name}: the sessions' requests add up"
            );
            assert!(total.evictions > 0, "{name}: the sessions must evict");
            assert!(total.peak_cached_bytes <= per_expert * m.top_k as u64);
        }
    }
}

#[test]
fn sessions_of_one_model_keep_their_own_context() {
    let model = Arc::new(Model::load(&gguf("qwen3_moe.f32.gguf")).unwrap());
    let (mut a, mut b) = (Session::new(model.clone()), Session::new(model.clone()));
    let la = a.eval(&[1, 2, 3], Logits::Last).unwrap().to_vec();
    b.eval(&[9, 8, 7, 6], Logits::Last).unwrap();
    assert_eq!((a.n_past(), b.n_past()), (3, 4));
    // a's next step is what a lone session gives for the whole sequence.
    let step = a.eval(&[4], Logits::Last).unwrap().to_vec();
    let mut c = Session::new(model);
    let whole = c.eval(&[1, 2, 3, 4], Logits::All).unwrap().to_vec();
    let v = whole.len() / 4;
    assert!(step == whole[3 * v..] && la == whole[2 * v..3 * v]);
}

fn greedy(n: usize) -> cosmoe::generate::GenerateConfig {
    cosmoe::generate::GenerateConfig {
        max_new_tokens: n,
        stop_at_eos: false,
        context_shift: None,
        sampler: Default::default(),
    }
}

#[test]
fn generation_stops_at_a_full_context_and_eval_refuses_more() {
    use cosmoe::generate::StopReason;
    let model = Arc::new(Model::load(&gguf("mixtral.q8_0.gguf")).unwrap());
    let max = model.config.max_position_embeddings;
    let mut s = Session::new(model);
    let prompt: Vec<u32> = (0..max as u32 - 3).map(|i| i % 300).collect();
    let g = s.complete(&prompt, &greedy(100), |_, _| true).unwrap();
    // Three positions were free: three tokens fill them, and the fourth, sampled from the last
    // position, is returned but has no position to stay in.
    assert_eq!((g.stop, g.tokens.len()), (StopReason::ContextFull, 4));
    assert_eq!(s.n_past(), max);
    let e = s.eval(&[1], Logits::Last).unwrap_err();
    assert!(matches!(e, cosmoe::Error::ContextFull { .. }), "{e:?}");
    s.reset();
    assert_eq!(s.n_past(), 0);
    s.eval(&[1, 2], Logits::Last).unwrap();
}

#[test]
fn a_cancel_from_another_thread_stops_generation_within_a_token() {
    let model = Arc::new(Model::load(&gguf("qwen3_moe.f32.gguf")).unwrap());
    let mut s = Session::new(model.clone());
    let cancel = s.cancel_handle();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let canceller = std::thread::spawn(move || {
        rx.recv().unwrap();
        cancel.cancel();
        done_tx.send(()).unwrap();
    });
    let mut seen = 0;
    let e = s
        .complete(&[1, 2, 3], &greedy(200), |_, _| {
            seen += 1;
            if seen == 1 {
                tx.send(()).unwrap();
                done_rx.recv().unwrap();
            }
            true
        })
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(e, cosmoe::Error::Cancelled), "{e:?}");
    assert_eq!(seen, 1, "the cancel lands before the next token");
    // The session goes on from what it holds: the prompt and the token sampled.
    assert_eq!(s.n_past(), 4);
    let g = s.generate(&greedy(2), |_, _| true).unwrap();
    assert_eq!(g.tokens.len(), 2);
    // A cancel with nothing running does nothing to the next call.
    s.cancel_handle().cancel();
    s.reset();
    assert_eq!(
        s.complete(&[1, 2, 3], &greedy(3), |_, _| true)
            .unwrap()
            .tokens
            .len(),
        3
    );
}

#[test]
fn a_saved_state_continues_bit_for_bit() {
    for name in ["qwen3_moe.f32.gguf", "llama.q8_0.gguf"] {
        let model = Arc::new(Model::load(&gguf(name)).unwrap());
        let mut a = Session::new(model.clone());
        a.complete(&[5, 9, 2, 7], &greedy(3), |_, _| true).unwrap();
        let state = a.save_state();
        // The rest of a's run, and the same from a fresh session loaded with a's state.
        let rest = a.generate(&greedy(6), |_, _| true).unwrap().tokens;
        let mut b = Session::new(model.clone());
        b.eval(&[1], Logits::Last).unwrap();
        b.load_state(&state).unwrap();
        assert_eq!(b.n_past(), 7, "{name}: 4 prompt + 3 sampled");
        assert_eq!(
            b.generate(&greedy(6), |_, _| true).unwrap().tokens,
            rest,
            "{name}"
        );
        assert!(a.logits().unwrap() == b.logits().unwrap(), "{name}");
        if model.config.moe.is_some() {
            assert_eq!(a.routing_trace(), b.routing_trace(), "{name}");
        }
        // An empty session's state loads as an empty context.
        let empty = Session::new(model.clone()).save_state();
        b.load_state(&empty).unwrap();
        assert_eq!(b.n_past(), 0);
        assert!(b.logits().is_none());
    }
}

#[test]
fn a_bad_state_is_refused_and_leaves_the_session_as_it_was() {
    let model = Arc::new(Model::load(&gguf("qwen3_moe.f32.gguf")).unwrap());
    let mut a = Session::new(model.clone());
    a.complete(&[5, 9, 2], &greedy(2), |_, _| true).unwrap();
    let state = a.save_state();
    let mut b = Session::new(model);
    b.eval(&[3, 4], Logits::Last).unwrap();
    let before = b.save_state();
    // Every truncation, a few altered bytes, trailing bytes, another model's state.
    let mut bad: Vec<(String, Vec<u8>)> = (0..state.len())
        .step_by(7)
        .map(|n| (format!("cut at {n}"), state[..n].to_vec()))
        .collect();
    for (at, v) in [(0, b'X'), (4, 9), (8, 3), (60, 1), (64, 2), (72, 7)] {
        let mut s = state.clone();
        s[at] = v;
        bad.push((format!("byte {at} = {v}"), s));
    }
    let mut long = state.clone();
    long.push(0);
    bad.push(("a byte too many".into(), long));
    let other = Arc::new(Model::load(&gguf("mixtral.q8_0.gguf")).unwrap());
    bad.push(("another model".into(), Session::new(other).save_state()));
    for (what, s) in bad {
        let e = b.load_state(&s).unwrap_err();
        assert!(e.to_string().starts_with("session state:"), "{what}: {e}");
        assert!(b.save_state() == before, "{what}: the session changed");
    }
}

#[test]
fn state_len_is_the_saved_length() {
    let model = Arc::new(Model::load(&gguf("mixtral.q8_0.gguf")).unwrap());
    let mut s = Session::new(model);
    assert_eq!(s.state_len(), s.save_state().len());
    s.complete(&[1, 2, 3], &greedy(4), |_, _| true).unwrap();
    assert_eq!(s.state_len(), s.save_state().len());
}

/// A context shift keeps what a fresh evaluation of the kept tokens would hold: on a one-layer model
/// a position's keys and values depend on its token and position only, so after dropping positions
/// 4..8 of 12 (their keys rotated back by 4) the next token's logits equal those of evaluating the
/// 8 kept tokens afresh, to rounding.
#[test]
fn a_context_shift_equals_evaluating_the_kept_tokens() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant/iq/fixture-iq-moe-256.IQ2_XS.gguf");
    let model = Arc::new(Model::load(&path).unwrap());
    assert_eq!(model.config.n_layers, 1);
    let t: Vec<u32> = (0..12).map(|i| (i * 29 + 5) % 300).collect();
    let mut shifted = Session::new(model.clone());
    shifted.eval(&t, Logits::Last).unwrap();
    assert_eq!(shifted.shift_context(4).unwrap(), 4);
    assert_eq!(shifted.n_past(), 8);
    let got = shifted.eval(&[7], Logits::Last).unwrap().to_vec();
    let mut kept: Vec<u32> = t[..4].iter().chain(&t[8..]).copied().collect();
    kept.push(7);
    let mut fresh = Session::new(model.clone());
    let want = fresh.eval(&kept, Logits::Last).unwrap().to_vec();
    let err = common_rel_err(&got, &want);
    assert!(err < 1e-5, "relative error {err}");
    // The comparison is sensitive: four more tokens before the same ones change the logits.
    let mut later = Session::new(model);
    later.eval(&[0, 0, 0, 0], Logits::Last).unwrap();
    let off = later.eval(&kept, Logits::Last).unwrap().to_vec();
    assert!(common_rel_err(&off, &want) > 1e-3);
    assert!(shifted.shift_context(7).is_ok());
    assert!(shifted.shift_context(8).is_err(), "nothing left to drop");
}

fn common_rel_err(a: &[f32], b: &[f32]) -> f32 {
    let max_b = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    max_d / max_b
}

/// `set_n_ctx` bounds the context and what the KV cache allocates, and refuses what cannot be.
#[test]
fn a_smaller_context_bounds_the_kv_cache() {
    let model = Arc::new(Model::load(&gguf("mixtral.q8_0.gguf")).unwrap());
    let max = model.config.max_position_embeddings;
    let mut s = Session::new(model.clone());
    assert!(s.set_n_ctx(0).is_err());
    assert!(s.set_n_ctx(max + 1).is_err());
    s.set_n_ctx(20).unwrap();
    let prompt: Vec<u32> = (0..13).collect();
    let g = s.complete(&prompt, &greedy(100), |_, _| true).unwrap();
    assert_eq!(g.stop, cosmoe::generate::StopReason::ContextFull);
    assert_eq!(s.n_past(), 20);
    let per_position = 2 * model.config.n_layers * model.kv_dim() * 4;
    assert_eq!(s.kv_bytes(), 20 * per_position);
    assert!(s.set_n_ctx(10).is_err(), "it holds 20 positions");
    let e = s.eval(&[1], Logits::Last).unwrap_err();
    assert!(e.to_string().contains("holds 20"), "{e}");
}
