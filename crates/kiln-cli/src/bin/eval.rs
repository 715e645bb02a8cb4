//! `eval`: Score a trained model on a labelled split; write metrics, tables, predictions and a report.

use std::process::ExitCode;

use clap::Parser;
use kiln_cli::CommonArgs;
use kiln_config::cli::EvalArgs;

/// Score a trained model on a labelled split (default: the test split): metrics.json,
/// per_class.csv, confusion.csv, predictions.parquet and report.md in artifacts/eval.
#[derive(Debug, Parser)]
#[command(name = "eval", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: EvalArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    kiln_cli::run_stage(
        "eval",
        &common,
        |config| settings.apply(&mut config.eval),
        |config, progress| {
            let metrics = kiln_infer::eval::run(&config.eval, &progress)?;
            tracing::info!(
                "{} split, {} examples: accuracy {:.4}, macro-F1 {:.4}, weighted F1 {:.4}, loss {:.4}; wrote {}",
                metrics.split,
                metrics.examples,
                metrics.accuracy,
                metrics.macro_avg.f1,
                metrics.weighted_avg.f1,
                metrics.loss,
                config.eval.output_dir.display()
            );
            Ok(())
        },
    )
}
