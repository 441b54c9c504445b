//! `cosmoe logits`: every position's logits of a list of token ids, as a raw f32 file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use cosmoe::forward::Logits;
use cosmoe::{Session, TokenizerSource};

use super::{init_threads, load, ModelArgs};

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct LogitsArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    ids: Vec<u32>,
    /// Output file; `-` writes to stdout.
    #[arg(short, long)]
    out: PathBuf,
}

pub fn logits(a: LogitsArgs) -> Result<()> {
    init_threads(a.m.threads)?;
    let to_stdout = a.out.as_os_str() == "-";
    if !to_stdout {
        cosmoe::outfile::check_output(&a.out, &[&a.m.model])?;
    }
    let model = load(&a.m, TokenizerSource::None)?;
    let t0 = Instant::now();
    let mut session = Session::new(model.clone());
    let logits = session.eval(&a.ids, Logits::All)?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    if to_stdout {
        super::output::stdout_bytes(&bytes)?;
    } else {
        cosmoe::outfile::write(&a.out, &bytes)?;
    }
    errln!(
        "wrote {} x {} logits to {} ({:.1} ms)",
        a.ids.len(),
        model.config.vocab_size,
        if to_stdout {
            "stdout".into()
        } else {
            a.out.display().to_string()
        },
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
