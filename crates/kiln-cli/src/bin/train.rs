//! `train`: Fine-tune the pre-trained model on tokenize's output; write the best model to artifacts/model.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;
use kiln_config::{TrackArgs, TrainArgs};
use kiln_stage::CommonArgs;
use kiln_track::RunStatus;
use kiln_train::{Control, Outcome};

/// Fine-tune the pre-trained model on tokenize's output, validating every epoch;
/// write the best model to artifacts/model. Ctrl-C saves a checkpoint; `--resume`
/// continues from it.
#[derive(Debug, Parser)]
#[command(name = "train", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: TrainArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings, track } = Cli::parse();
    let mut control = Control::default();
    let flag = control.interrupt.clone();
    if let Some(link) = kiln_cli::tune_link::TuneLink::from_env(control.interrupt.clone()) {
        control.referee = Some(link);
    }
    // First Ctrl-C (or SIGTERM): finish the step, checkpoint, exit. Second: exit now.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(kiln_stage::exit::INTERRUPTED));
        }
        tracing::warn!("stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)");
    });
    kiln_track::stage::run_tracked_stage(
        "train",
        &common,
        |config| {
            settings.apply(&mut config.train);
            track.apply(&mut config.track);
        },
        |config, progress, run| match kiln_train::run_for(&config.train, config.task, &progress, &control)? {
            Outcome::Finished(summary) => {
                kiln_cli::record_train(run, &config.train, &summary)?;
                let best = &summary.best;
                tracing::info!(
                    "done: {} steps ({:.2} epochs{}) in {:.0} s, {:.1} samples/s, {:.0} tokens/s",
                    summary.steps,
                    summary.epochs,
                    if summary.stopped_early { ", stopped early" } else { "" },
                    summary.train_seconds,
                    summary.samples_per_second,
                    summary.tokens_per_second
                );
                let (accuracy, f1) = match config.task {
                    kiln_core::Task::SequenceClassification => ("accuracy", "macro-F1"),
                    kiln_core::Task::TokenClassification => ("word accuracy", "entity macro-F1"),
                };
                tracing::info!(
                    "best model (step {}, epoch {:.2}): validation {accuracy} {:.4}, {f1} {:.4}, loss {:.4}; \
                         written to {}",
                    best.step,
                    best.epoch,
                    best.metrics.accuracy,
                    best.metrics.macro_f1,
                    best.metrics.loss,
                    summary.output_dir.display()
                );
                Ok(RunStatus::Finished)
            }
            Outcome::Pruned { step, epoch } => {
                kiln_cli::record_pruned(run, &config.train, step, epoch)?;
                tracing::info!("pruned by tune after step {step} (epoch {epoch:.2}); no model was written");
                Ok(RunStatus::Pruned)
            }
            Outcome::Interrupted { step, checkpoint } => {
                tracing::warn!(
                    "interrupted after step {step}; checkpoint saved in {}. Continue with `train --resume` \
                         (same settings)",
                    checkpoint.display()
                );
                Ok(RunStatus::Interrupted)
            }
        },
    )
}
