//! `cosmoe inspect`: a model's architecture, sizes, parameter counts and expert/resident split.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cosmoe::inspect::ModelReport;
use cosmoe::Model;

use super::print_report;

#[derive(Args)]
// A negative number is a value (refused by its range), not an unknown flag.
#[command(allow_negative_numbers = true)]
pub struct InspectArgs {
    /// Model folder or GGUF file.
    path: PathBuf,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn inspect(a: InspectArgs) -> Result<()> {
    let model = Model::load(&a.path)?;
    let mut report = ModelReport::of(&model, &a.path.display().to_string());
    if cosmoe_loader::GgufFile::is_gguf_path(&a.path) {
        report = report.with_gguf_metadata(&cosmoe_loader::GgufFile::open(&a.path)?);
    }
    print_report(&report, a.json)
}
