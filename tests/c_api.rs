//! The C ABI as C and Python programs use it: tests/c/cosmoe_example.c compiled against include/cosmoe.h and
//! the built library, linked dynamically (libcosmoe.so) and statically (libcosmoe.a), and
//! examples/python/cosmoe_ctypes.py through ctypes.
//!
//! The expected ids come from the `cosmoe` command line (greedy, EOS ignored), so the C API must generate
//! exactly what the CLI generates. With COSMOE_VALGRIND=1 (and valgrind on PATH) the dynamically linked
//! program also runs under Valgrind's leak check.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const PROMPT_IDS: &str = "1,15,27,99,4";
const N_GENERATE: usize = 12;
const PASSED: &str = "all C API checks passed";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> PathBuf {
    repo().join("tests/fixtures/gguf/mixtral.q8_0.gguf")
}

/// `name` next to the `cosmoe` binary (target/debug or target/release), else in its deps/ folder.
fn find_lib(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_cosmoe"));
    let dir = bin.parent().expect("the cosmoe binary has a parent folder");
    let candidates = [dir.join(name), dir.join("deps").join(name)];
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "{name} not found (looked at {} and {}): the [lib] of Cargo.toml must list crate-type \
         \"cdylib\" and \"staticlib\" (next to \"rlib\")",
        candidates[0].display(),
        candidates[1].display()
    );
}

/// The folder holding libcosmoe.so.
fn lib_dir() -> PathBuf {
    find_lib("libcosmoe.so").parent().unwrap().to_path_buf()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// True if `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The greedy continuation of PROMPT_IDS by the CLI, as a comma-separated list.
fn expected_ids() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(["run", "--model", path_str(&model()), "--ids", PROMPT_IDS])
        .args(["-n", &N_GENERATE.to_string(), "--print-ids", "--ignore-eos"])
        .output()
        .expect("run the cosmoe CLI");
    assert!(
        out.status.success(),
        "cosmoe run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 ids");
    let ids: Vec<u32> = stdout
        .split_whitespace()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("not an id: {s:?} in {stdout:?}"))
        })
        .collect();
    assert_eq!(ids.len(), N_GENERATE, "cosmoe run printed {stdout:?}");
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// A copy of the model cut to half its bytes, in `dir`.
fn truncated_model(dir: &Path) -> PathBuf {
    let bytes = std::fs::read(model()).expect("read the model");
    let p = dir.join("truncated.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    p
}

/// The C compiler: $CC (which may carry arguments, as in "ccache gcc") or `cc`.
fn c_compiler() -> Command {
    let cc = std::env::var("CC")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cc".to_string());
    let mut parts = cc.split_whitespace();
    let mut cmd = Command::new(parts.next().unwrap());
    cmd.args(parts);
    cmd
}

enum Link {
    Dynamic,
    Static,
}

/// Compiles tests/c/cosmoe_example.c into `dir` and returns the executable.
fn compile_example(dir: &Path, link: Link) -> PathBuf {
    let include = repo().join("include");
    assert!(
        include.join("cosmoe.h").is_file(),
        "{} is missing (the header cbindgen generates from runtime/src/capi.rs)",
        include.join("cosmoe.h").display()
    );
    let exe = dir.join("cosmoe_example");
    let mut cmd = c_compiler();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-I"])
        .arg(&include)
        .arg(repo().join("tests/c/cosmoe_example.c"))
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Dynamic => {
            let libdir = lib_dir();
            cmd.arg("-L")
                .arg(&libdir)
                .arg("-lcosmoe")
                .arg(format!("-Wl,-rpath,{}", path_str(&libdir)));
        }
        Link::Static => {
            cmd.arg(find_lib("libcosmoe.a"));
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run the C compiler {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "compiling the C example failed: {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with stdout and stderr in files of `dir` (no pipe to fill), killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, dir: &Path, name: &str, timeout: Duration) -> Run {
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    cmd.current_dir(repo())
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish in {timeout:?} (a hang, as in a cancel that never arrives?)\n\
                 --- stdout\n{}\n--- stderr\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    }
}

/// Runs the example (under `wrapper`, e.g. valgrind, if given) and asserts that every check passed.
fn run_example(exe: &Path, dir: &Path, expected: &str, wrapper: &[&str], timeout: Duration) {
    let truncated = truncated_model(dir);
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg(model())
        .arg(&truncated)
        .arg(PROMPT_IDS)
        .arg(expected);
    let label = if wrapper.is_empty() {
        "example"
    } else {
        "example-wrapped"
    };
    let run = run_with_timeout(cmd, dir, label, timeout);
    assert!(
        run.status.success() && run.stdout.contains(PASSED),
        "the C example {}failed ({}); expected ids {expected}\n--- stdout\n{}\n--- stderr\n{}",
        if wrapper.is_empty() {
            String::new()
        } else {
            format!("under {wrapper:?} ")
        },
        run.status,
        run.stdout,
        run.stderr
    );
    println!(
        "--- {} {wrapper:?} (shown with --nocapture)\n{}",
        exe.display(),
        run.stdout
    );
}

#[test]
fn c_example_linked_dynamically() {
    let expected = expected_ids();
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile_example(tmp.path(), Link::Dynamic);
    run_example(&exe, tmp.path(), &expected, &[], Duration::from_secs(300));

    if std::env::var("COSMOE_VALGRIND").as_deref() == Ok("1") {
        if have("valgrind") {
            run_example(
                &exe,
                tmp.path(),
                &expected,
                &[
                    "valgrind",
                    "--error-exitcode=9",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                ],
                Duration::from_secs(1800),
            );
        } else {
            eprintln!(
                "note: COSMOE_VALGRIND=1 but valgrind is not on PATH: the Valgrind run is skipped"
            );
        }
    }
}

#[test]
fn c_example_linked_statically() {
    let expected = expected_ids();
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile_example(tmp.path(), Link::Static);
    run_example(&exe, tmp.path(), &expected, &[], Duration::from_secs(300));
}

#[test]
fn python_ctypes_example() {
    if !have("python3") {
        eprintln!("note: python3 is not on PATH: examples/python/cosmoe_ctypes.py is not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("examples/python/cosmoe_ctypes.py"))
        .arg(lib_dir().join("libcosmoe.so"))
        .arg(model());
    let run = run_with_timeout(cmd, tmp.path(), "python", Duration::from_secs(300));
    assert!(
        run.status.success() && run.stdout.contains("python ok"),
        "examples/python/cosmoe_ctypes.py failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    println!(
        "--- python3 cosmoe_ctypes.py (shown with --nocapture)\n{}",
        run.stdout
    );
}
