//! Writing to stdout and stderr without `println!`'s panics. A failed write to stdout is returned as
//! a [`StdoutError`]: stdout closed by its reader (`cosmoe inspect M | head -1`) ends the command
//! quietly with [`EXIT_CLOSED_PIPE`], any other failure (`> /dev/full`) is a one-line error. A
//! failed write to stderr is ignored: there is nowhere left to report it.

use std::fmt;
use std::io::{ErrorKind, Write};

/// A failed write to stdout (its cause, the I/O error, is the error's source).
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout")]
pub struct StdoutError(#[from] pub std::io::Error);

impl StdoutError {
    /// Whether the reader went away (EPIPE): the output is not wanted, which is not an error.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == ErrorKind::BrokenPipe
    }
}

/// The exit status when stdout's reader closed it: the shell's status of a process killed by
/// SIGPIPE (128 + 13), as `cat` or `yes` show, so that `set -o pipefail` sees the cut output alike.
pub const EXIT_CLOSED_PIPE: i32 = 141;

/// `print!` that returns a [`StdoutError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that ignores a failed write instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::stderr(format_args!($($arg)*))
    };
}

/// Writes `args` to stdout and flushes, so that a failure shows here and not at exit.
pub fn stdout(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.flush()?;
    Ok(())
}

/// Writes raw bytes to stdout and flushes.
pub fn stdout_bytes(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Writes `args` and a newline to stderr, ignoring a failure.
pub fn stderr(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|_| err.write_all(b"\n"));
}

/// Ends the process after a failed command: [`EXIT_CLOSED_PIPE`] quietly when stdout's reader went
/// away, else 1 with the error on one line.
pub fn fail(e: anyhow::Error) -> ! {
    if e.downcast_ref::<StdoutError>()
        .is_some_and(StdoutError::is_closed_pipe)
    {
        std::process::exit(EXIT_CLOSED_PIPE);
    }
    errln!("error: {e:#}");
    std::process::exit(1)
}
