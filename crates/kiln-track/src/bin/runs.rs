//! `runs`: List and compare the run records that train and eval leave.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::TrackArgs;
use kiln_stage::{CommonArgs, print_output, run_stage};
use kiln_track::cli::RunsCommand;

/// List and compare the records that every train and eval run leaves in
/// artifacts/runs/<run-id>/ (params, metrics by step, tags, input hashes, outputs).
#[derive(Debug, Parser)]
#[command(name = "runs", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    track: TrackArgs,
    #[command(subcommand)]
    command: Option<RunsCommand>,
}

fn main() -> ExitCode {
    let Cli { common, track, command } = Cli::parse();
    run_stage(
        "runs",
        &common,
        |config| track.apply(&mut config.track),
        |config, _| kiln_track::cli::runs(config, command).map(|output| print_output(&output)),
    )
}
