//! `pipeline`: what `make pipeline` asks of kiln beside the stages: which stage is stale, and the closing summary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_stage::{CommonArgs, print_output, run_stage};

/// The pipeline as a whole, for `make pipeline` (scripts/make/pipeline.mk) and people:
/// the state make needs to rerun only the stages whose settings or inputs
/// changed, the summary it ends with, and the book's page of every config key.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write each stage's resolved section (`<stage>.json`, rewritten only when it
    /// changed) and `paths.mk` (each stage's done file and prerequisites) into DIR.
    MakeState {
        /// The folder for this config's state, e.g. .cache/pipeline/default.
        dir: PathBuf,
    },
    /// Print the test figures, the report, the model folder and its registry version.
    Summary,
    /// Print the book's page of every config key (docs/src/config-reference.md).
    ConfigReference,
}

fn main() -> ExitCode {
    let Cli { common, command } = Cli::parse();
    let config_path =
        common.config.as_ref().map_or_else(|| "the built-in defaults".to_owned(), |p| p.display().to_string());
    run_stage(
        "pipeline",
        &common,
        |_| {},
        |config, _| match &command {
            Command::MakeState { dir } => kiln_track::pipeline::write_make_state(config, dir),
            Command::Summary => {
                let exe = std::env::current_exe().context("cannot find where pipeline runs from")?;
                let bin = exe.parent().context("pipeline's folder")?;
                print_output(&kiln_track::pipeline::summary(config, &config_path, bin)?);
                Ok(())
            }
            Command::ConfigReference => {
                print_output(&kiln_config::reference::markdown());
                Ok(())
            }
        },
    )
}
