//! `eval`: Score a trained model on a labelled split; write metrics, tables, predictions and a report.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::{EvalArgs, TrackArgs};
use kiln_stage::CommonArgs;
use kiln_track::RunStatus;

/// Score a trained model on a labelled split (default: the test split): metrics.json,
/// per_class.csv, confusion.csv, predictions.parquet and report.md in artifacts/eval.
#[derive(Debug, Parser)]
#[command(name = "eval", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: EvalArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings, track } = Cli::parse();
    kiln_track::stage::run_tracked_stage(
        "eval",
        &common,
        |config| {
            settings.apply(&mut config.eval);
            track.apply(&mut config.track);
        },
        |config, progress, run| {
            let metrics = kiln_infer::eval::run(&config.eval, &progress)?;
            kiln_cli::record_eval(run, &config.eval, &metrics);
            match &metrics.entities {
                Some(entities) => tracing::info!(
                    "{} split, {} sentences: entity F1 {:.4} micro, {:.4} macro (seqeval default), {:.4} micro \
                     (strict IOB2); word accuracy {:.4}, loss {:.4}; wrote {}",
                    metrics.split,
                    metrics.examples,
                    entities.conlleval.micro.f1,
                    entities.conlleval.macro_avg.f1,
                    entities.strict.micro.f1,
                    metrics.accuracy,
                    metrics.loss,
                    config.eval.output_dir.display()
                ),
                None => tracing::info!(
                    "{} split, {} examples: accuracy {:.4}, macro-F1 {:.4}, weighted F1 {:.4}, loss {:.4}; wrote {}",
                    metrics.split,
                    metrics.examples,
                    metrics.accuracy,
                    metrics.macro_f1,
                    metrics.weighted_f1,
                    metrics.loss,
                    config.eval.output_dir.display()
                ),
            }
            Ok(RunStatus::Finished)
        },
    )
}
