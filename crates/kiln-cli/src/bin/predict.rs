//! `predict`: Classify a file of texts with a trained model; write Parquet.

use std::process::ExitCode;

use clap::Parser;
use kiln_cli::CommonArgs;
use kiln_config::cli::PredictArgs;

/// Classify a file of texts (CSV, TSV, JSONL or Parquet) with a trained model,
/// cleaning them exactly as in training; write id, predicted label and probability
/// (and the top-k with --top-k) to Parquet.
#[derive(Debug, Parser)]
#[command(name = "predict", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: PredictArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    kiln_cli::run_stage(
        "predict",
        &common,
        |config| settings.apply(&mut config.predict),
        |config, progress| {
            let report = kiln_infer::predict::run(&config.predict, &progress)?;
            tracing::info!(
                "{} rows in {:.1} s ({:.0} rows/s); wrote {}",
                report.rows,
                report.seconds,
                report.rows_per_second,
                config.predict.output_file.display()
            );
            Ok(())
        },
    )
}
