//! Files the `cosmoe` commands write: only regular files, never one of their inputs, refused before
//! any work, and no `.part` left behind by a failure or Ctrl-C (issue 13, defects 1-3).
#![cfg(unix)]

mod common;

use std::ffi::CString;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::golden_dir;

fn cosmoe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .output()
        .expect("run cosmoe")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `args`, which must fail with a message containing every one of `want` and no panic.
fn refused(args: &[&str], want: &[&str]) -> String {
    let out = cosmoe(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: {err}");
    }
    err
}

fn mkfifo(p: &Path) {
    let c = CString::new(s(p)).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn is_fifo(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

fn part(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", p.display()))
}

/// A checkpoint folder of our own, which the tests may try to damage.
fn own_checkpoint() -> tempfile::TempDir {
    common::copy_fixture("llama")
}

/// `synth` of `preset` in pure Q4_0 (random blocks: the fastest) into `out`.
fn synth_args<'a>(preset: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "synth", "--preset", preset, "--type", "q4_0", "--pure", "-o", out,
    ]
}

fn gguf_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/mixtral.q8_0.gguf")
}

#[test]
fn convert_refuses_a_fifo_output() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("out.gguf");
    mkfifo(&fifo);
    let src = golden_dir().join("llama");
    refused(
        &["convert", s(&src), "-o", s(&fifo), "--type", "f16"],
        &[s(&fifo), "FIFO", "only regular files"],
    );
    assert!(is_fifo(&fifo), "the FIFO was replaced");
    assert!(!part(&fifo).exists());
}

#[test]
fn synth_refuses_a_fifo_output() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("out.gguf");
    mkfifo(&fifo);
    refused(
        &synth_args("cosmoe-wearable", s(&fifo)),
        &[s(&fifo), "FIFO"],
    );
    assert!(is_fifo(&fifo), "the FIFO was replaced");
    assert!(!part(&fifo).exists());
}

/// Run as root, the old behaviour replaced /dev/null with a regular file: the refusal must come
/// before anything is created.
#[test]
fn convert_refuses_dev_null() {
    let dev_null = Path::new("/dev/null");
    let src = golden_dir().join("llama");
    for args in [
        vec!["convert", s(&src), "-o", "/dev/null", "--type", "f16"],
        synth_args("cosmoe-wearable", "/dev/null"),
    ] {
        refused(&args, &["/dev/null", "a character device"]);
        let m = std::fs::symlink_metadata(dev_null).unwrap();
        assert!(
            m.file_type().is_char_device(),
            "/dev/null is no longer a device"
        );
        assert!(!Path::new("/dev/null.part").exists());
    }
}

#[test]
fn logits_refuses_to_overwrite_its_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.gguf");
    std::fs::copy(gguf_fixture(), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    // The same file by name, through a symbolic link, and through a hard link.
    let link = tmp.path().join("link.f32");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let hard = tmp.path().join("hard.f32");
    std::fs::hard_link(&model, &hard).unwrap();
    for out in [&model, &link, &hard] {
        refused(
            &[
                "logits",
                "--model",
                s(&model),
                "--ids",
                "1,2",
                "--out",
                s(out),
            ],
            &[s(out), "same file as", "input"],
        );
    }
    assert_eq!(std::fs::read(&model).unwrap(), before, "the model changed");
    // A model folder: each of its files is an input.
    let own = own_checkpoint();
    let cfg = own.path().join("config.json");
    refused(
        &[
            "logits",
            "--model",
            s(own.path()),
            "--ids",
            "1,2",
            "--out",
            s(&cfg),
        ],
        &["config.json", "input"],
    );
}

#[test]
fn convert_refuses_output_inside_input_as_same_file() {
    let own = own_checkpoint();
    let dir = own.path();
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let hard = tempfile::tempdir().unwrap();
    let hard = hard.path().join("x.gguf");
    std::fs::hard_link(dir.join("model.safetensors"), &hard).unwrap();
    for out in [
        dir.join("model.safetensors"),
        dir.join("config.json"),
        dir.join("tokenizer.json"),
        hard.clone(),
    ] {
        refused(
            &["convert", s(dir), "-o", s(&out), "--type", "q8_0"],
            &[s(&out), "same file as", "input"],
        );
    }
    // The folder itself is a folder; a new file inside it is fine.
    refused(
        &["convert", s(dir), "-o", s(dir), "--type", "q8_0"],
        &["a folder"],
    );
    for (p, b) in &before {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} changed", p.display());
    }
    let new = dir.join("new.gguf");
    let out = cosmoe(&["convert", s(dir), "-o", s(&new), "--type", "q8_0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(new.is_file() && !part(&new).exists());
}

/// `run --record-routing` must not write over the trace it replays, nor over the model.
#[test]
fn record_routing_refuses_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = gguf_fixture();
    let trace = tmp.path().join("trace.json");
    let run = |extra: &[&str]| {
        let mut a = vec![
            "run",
            "--model",
            s(&model),
            "--ids",
            "1,2",
            "-n",
            "2",
            "--print-ids",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let args = run(&[
        "--routing",
        "synthetic:exrep=0.5",
        "--record-routing",
        s(&trace),
    ]);
    let out = cosmoe(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded = std::fs::read(&trace).unwrap();
    let args = run(&["--routing-trace", s(&trace), "--record-routing", s(&trace)]);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[s(&trace), "input"],
    );
    assert_eq!(std::fs::read(&trace).unwrap(), recorded);
    let copy = tmp.path().join("m.gguf");
    std::fs::copy(&model, &copy).unwrap();
    refused(
        &[
            "run",
            "--model",
            s(&copy),
            "--ids",
            "1",
            "-n",
            "1",
            "--routing",
            "synthetic:exrep=0.5",
            "--record-routing",
            s(&copy),
        ],
        &["input"],
    );
}

/// An output that is a folder, or in a folder that does not exist, is refused at once: before the
/// work (seconds to minutes for a real model), and without a `.part`.
#[test]
fn output_directory_is_refused_before_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out.gguf");
    std::fs::create_dir(&dir).unwrap();
    let missing = tmp.path().join("no/such/out.gguf");
    let src = golden_dir().join("llama");
    for out in [&dir, &missing] {
        let want = if out == &dir {
            "a folder"
        } else {
            "does not exist"
        };
        // cosmoe-phone takes tens of seconds to write: a refusal after the work would show.
        let t0 = Instant::now();
        refused(&synth_args("cosmoe-phone", s(out)), &[s(out), want]);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        refused(
            &["convert", s(&src), "-o", s(out), "--type", "f16"],
            &[s(out), want],
        );
        refused(
            &[
                "logits",
                "--model",
                s(&gguf_fixture()),
                "--ids",
                "1",
                "--out",
                s(out),
            ],
            &[s(out), want],
        );
        assert!(!part(out).exists());
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// `OUT.part` is written first: it must not be anything but a (stale) regular file either.
#[test]
fn part_path_that_is_not_a_regular_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    mkfifo(&part(&out));
    let src = golden_dir().join("llama");
    refused(
        &["convert", s(&src), "-o", s(&out), "--type", "f16"],
        &[s(&part(&out)), "FIFO"],
    );
    assert!(is_fifo(&part(&out)) && !out.exists());
    // A symbolic link as the part: writing through it would clobber its target.
    std::fs::remove_file(part(&out)).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::os::unix::fs::symlink(&victim, part(&out)).unwrap();
    refused(
        &["convert", s(&src), "-o", s(&out), "--type", "f16"],
        &["symbolic link"],
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    // A stale regular part (a killed run's) is replaced.
    std::fs::remove_file(part(&out)).unwrap();
    std::fs::write(part(&out), b"stale").unwrap();
    let o = cosmoe(&["convert", s(&src), "-o", s(&out), "--type", "f16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file() && !part(&out).exists());
}

/// Ctrl-C during a long `synth`: the process dies of SIGINT (the shell shows 130) and leaves
/// neither the `.part` nor the output.
#[test]
fn sigint_during_synth_removes_part_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cosmoe"));
    cmd.args(synth_args("cosmoe-phone", s(&out)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // A test runner started in the background may pass SIGINT on ignored; cosmoe keeps an ignored
    // signal ignored, so give it the default disposition.
    // SAFETY: signal() is async-signal-safe, and nothing else runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    // Wait until the file is being written (the part exists and has data).
    while std::fs::metadata(part(&out)).map_or(true, |m| m.len() == 0) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no part file");
        assert!(child.try_wait().unwrap().is_none(), "synth ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill() on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGINT),
        "{:?}: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!part(&out).exists(), "the part file is left");
    assert!(!out.exists(), "an output is left");
}
