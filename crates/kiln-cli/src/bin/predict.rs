//! `predict`: Classify a file of texts with a trained model; write Parquet.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::PredictArgs;
use kiln_stage::CommonArgs;

/// Classify a file of texts (CSV, TSV, JSONL or Parquet) with a trained model,
/// cleaning them exactly as in training; write id, predicted label and probability
/// (and the top-k with --top-k) to Parquet.
///
/// Batch prediction over N processes or pods: each runs with
/// `--shard-count N --shard-index I` and writes its part; then
/// `predict --merge --shard-count N` joins the parts into --output-file.
#[derive(Debug, Parser)]
#[command(name = "predict", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: PredictArgs,
    /// Instead of predicting, join the --shard-count parts beside --output-file
    /// into it, checking that they cover the input exactly once.
    #[arg(long)]
    merge: bool,
}

fn main() -> ExitCode {
    let Cli { common, settings, merge } = Cli::parse();
    kiln_stage::run_stage(
        "predict",
        &common,
        |config| settings.apply(&mut config.predict),
        |config, progress| {
            if merge {
                let report = kiln_data::shards::merge(&config.predict)?;
                tracing::info!(
                    "merged {} parts of {}: {} rows; wrote {}",
                    report.parts,
                    report.input,
                    report.rows,
                    config.predict.output_file.display()
                );
                return Ok(());
            }
            let report = kiln_infer::predict::run(&config.predict, &progress)?;
            tracing::info!(
                "{} rows in {:.1} s ({:.0} rows/s); wrote {}",
                report.rows,
                report.seconds,
                report.rows_per_second,
                report.output.display()
            );
            Ok(())
        },
    )
}
