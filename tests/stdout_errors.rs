//! Every command whose stdout or stderr fails (issue 13, defect 4): a reader that went away
//! (`cosmoe inspect M | head -1`) ends it quietly with status 141, as a death by SIGPIPE shows in a
//! shell; another write failure (`> /dev/full`) is a one-line error and status 1; never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::golden_dir;

fn gguf() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/mixtral.q8_0.gguf")
        .to_str()
        .unwrap()
        .to_owned()
}

/// `head` (which may hold paths), then the words of `flags`.
fn cmd(head: &[&str], flags: &str) -> Vec<String> {
    let flags = flags.split_whitespace();
    head.iter()
        .copied()
        .chain(flags)
        .map(str::to_owned)
        .collect()
}

/// Commands that print on stdout, each way they print.
fn printing_commands() -> Vec<Vec<String>> {
    let llama = golden_dir().join("llama");
    let llama = llama.to_str().unwrap();
    let m = gguf();
    let run = ["run", "--model", &m];
    let bench = ["bench", "--model", &m];
    vec![
        cmd(&["inspect", &m], ""),
        cmd(&["inspect", &m], "--json"),
        // Streamed text, streamed ids, ids at the end, one JSON object.
        cmd(
            &["run", "--model", llama, "--prompt", "The old mill"],
            "-n 8",
        ),
        cmd(&run, "--ids 1,2 -n 4"),
        cmd(&run, "--ids 1,2 -n 4 --print-ids"),
        cmd(&run, "--ids 1,2 -n 4 --json"),
        cmd(&bench, "--prompt-tokens 4 --gen-tokens 4"),
        cmd(&bench, "--prompt-tokens 4 --gen-tokens 4 --json"),
        cmd(
            &[],
            "bench-kernels --size-mib 1 --reps 1 --formats q8_0 --threads 1",
        ),
        cmd(&[], "--help"),
        cmd(&[], "inspect --help"),
        cmd(&[], "--version"),
    ]
}

fn cosmoe(args: &[String], stdout: Stdio, stderr: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .expect("run cosmoe")
}

/// A pipe whose reading end is already closed: the first write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

#[cfg(target_os = "linux")]
fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

#[test]
fn closed_stdout_pipe_exits_quietly() {
    for args in printing_commands() {
        let out = cosmoe(&args, closed_pipe(), Stdio::piped());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
}

#[test]
#[cfg(target_os = "linux")]
fn stdout_write_failure_is_a_one_line_error() {
    for args in printing_commands() {
        let out = cosmoe(&args, dev_full(), Stdio::piped());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: writing to stdout: ") && last.contains("No space left"),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{args:?}: {err}"
        );
    }
}

/// stderr holds only diagnostics: a command whose stderr is gone still does its work.
#[test]
fn closed_stderr_pipe_does_not_stop_a_command() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf_out = tmp.path().join("x.gguf");
    let llama = golden_dir().join("llama");
    let args = cmd(
        &[
            "convert",
            llama.to_str().unwrap(),
            "-o",
            gguf_out.to_str().unwrap(),
        ],
        "--type q8_0",
    );
    let out = cosmoe(&args, Stdio::null(), closed_pipe());
    assert!(out.status.success(), "{:?}", out.status);
    assert!(gguf_out.is_file());

    let m = gguf();
    let args = cmd(&["run", "--model", &m], "--ids 1,2 -n 4 --print-ids");
    let out = cosmoe(&args, Stdio::piped(), closed_pipe());
    assert!(out.status.success(), "{:?}", out.status);
    let ids = String::from_utf8(out.stdout).unwrap();
    assert_eq!(ids.split_whitespace().count(), 4, "{ids}");
}
