//! `ingest`: Read raw labelled text (CSV, TSV, JSONL, Parquet) or tagged words (CoNLL, JSONL), map its columns, split it and write train/validation/test Parquet files.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::IngestArgs;
use kiln_stage::{CommonArgs, run_stage};

/// Read raw labelled text (CSV, TSV, JSONL, Parquet) or tagged words (CoNLL, JSONL), map its columns, split it and write train/validation/test Parquet files.
#[derive(Debug, Parser)]
#[command(name = "ingest", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: IngestArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    run_stage(
        "ingest",
        &common,
        |config| settings.apply(&mut config.ingest),
        |config, progress| {
            let report = kiln_data::ingest::run(&config.ingest, config.task, &progress)?;
            for (split, s) in &report.splits {
                match s.words {
                    None => tracing::info!("{split}: {} rows, {} labels", s.rows, s.labels.len()),
                    Some(words) => tracing::info!(
                        "{split}: {} sentences, {words} words, {} entities of {} types",
                        s.rows,
                        s.labels.values().sum::<usize>(),
                        s.labels.len()
                    ),
                }
            }
            for source in report.sources.iter().filter(|s| s.dropped_no_label > 0) {
                tracing::info!(
                    "{}: {} rows matched no score rule and were dropped",
                    source.path,
                    source.dropped_no_label
                );
            }
            tracing::info!("wrote {}", config.ingest.output_dir.display());
            Ok(())
        },
    )
}
