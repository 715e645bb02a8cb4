//! `runs`: List and compare the run records that train and eval leave.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kiln_cli::CommonArgs;
use kiln_config::cli::TrackArgs;

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
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One line per run, oldest first (the default).
    List {
        /// Only runs of this stage (train or eval).
        #[arg(long)]
        stage: Option<String>,
        /// Only the last N runs.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// A run's whole record, as JSON.
    Show {
        /// The run id, or a unique prefix of it.
        id: String,
    },
    /// Runs side by side: the params that differ between them, and every metric.
    Compare {
        /// Run ids, or unique prefixes of them.
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    let Cli { common, track, command } = Cli::parse();
    kiln_cli::run_stage(
        "runs",
        &common,
        |config| track.apply(&mut config.track),
        |config, _progress| {
            let dir = &config.track.runs_dir;
            let output = match command.unwrap_or(Command::List { stage: None, last: None }) {
                Command::List { stage, last } => {
                    let mut records = kiln_track::list(dir)?;
                    records.retain(|r| stage.as_ref().is_none_or(|s| &r.stage == s));
                    let skip = last.map_or(0, |n| records.len().saturating_sub(n));
                    if records.is_empty() {
                        tracing::info!("no runs recorded in {} yet", dir.display());
                        return Ok(());
                    }
                    kiln_track::table::list(&records[skip..])
                }
                Command::Show { id } => {
                    let record = kiln_track::find(dir, &id)?;
                    serde_json::to_string_pretty(&record)? + "\n"
                }
                Command::Compare { ids } => {
                    let records = ids.iter().map(|id| kiln_track::find(dir, id)).collect::<Result<Vec<_>>>()?;
                    kiln_track::table::compare(&records)
                }
            };
            #[allow(clippy::print_stdout)] // The table is the program's output.
            {
                print!("{output}");
            }
            Ok(())
        },
    )
}
