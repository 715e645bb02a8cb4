//! What the model stages' binaries share beyond the common harness
//! ([`kiln_config::stage`]): the run record that `train` and `eval` leave.

use anyhow::{Context, Result};
pub use kiln_config::stage::{CommonArgs, run_stage};
use kiln_config::stage::{catch_panics, panic_if_asked, run_stage_uncaught};
use kiln_config::{EvalConfig, PipelineConfig, TrainConfig};
use kiln_core::output::read_manifest;
use kiln_core::{EvalMetrics, Progress};
use kiln_track::mlflow::Mlflow;
use kiln_track::{Run, RunStatus};
use std::process::ExitCode;

/// `run_stage` for the stages that leave a run record (`train`, `eval`): the
/// record is started before `work`, which fills it in and says how the run
/// ended; an error ends it as `failed`, with the message.
pub fn run_tracked_stage(
    name: &'static str,
    common: &CommonArgs,
    apply: impl FnOnce(&mut PipelineConfig),
    work: impl FnOnce(&PipelineConfig, Progress, &mut Run) -> Result<RunStatus>,
) -> ExitCode {
    run_stage_uncaught(name, common, apply, |config, progress| {
        catch_panics(|| {
            let mut run = Run::start(&config.track.runs_dir, name, common.config.as_deref(), &config.redacted())
                .context("cannot start the run record (config key `track.runs_dir`)")?;
            let track = &config.track;
            let mut mlflow = track.mlflow_tracking_uri.as_deref().map(|uri| {
                let mlflow = Mlflow::start(uri, &track.mlflow_experiment, run.record());
                if let Some(id) = mlflow.run_id() {
                    tracing::info!("MLflow run {id} in experiment '{}'", track.mlflow_experiment);
                    run.tag("mlflow.run_id", id);
                }
                mlflow
            });
            let outcome = catch_panics(|| {
                panic_if_asked(name);
                work(config, progress, &mut run)
            });
            let (status, error) = match &outcome {
                Ok(status) => (*status, None),
                Err(error) => (RunStatus::Failed, Some(format!("{error:#}"))),
            };
            let dir = run.dir().to_owned();
            match run.finish(status, error) {
                Ok((record, points)) => {
                    tracing::info!("run record: {}", dir.display());
                    if let Some(mlflow) = &mut mlflow {
                        mlflow.finish(&record, &points);
                    }
                }
                Err(error) => tracing::warn!("could not complete the run record {}: {error:#}", dir.display()),
            }
            outcome.map(|_| ())
        })
    })
}

/// What a finished `train` run adds to its record: every logged step, the best
/// validation figures, speed, the data it read and where the model went.
pub fn record_train(run: &mut Run, config: &TrainConfig, summary: &kiln_train::TrainSummary) -> Result<()> {
    run.tag("device", summary.device.clone());
    let log = config.run_dir.join(kiln_train::METRICS);
    for point in kiln_track::points_from_train_log(&log, kiln_track::now_ms())? {
        run.log(point);
    }
    let step = summary.steps as u64;
    let best = &summary.best.metrics;
    for (key, value) in [
        ("best_val_accuracy", best.accuracy),
        ("best_val_macro_f1", best.macro_f1),
        ("best_val_loss", best.loss),
        ("train_seconds", summary.train_seconds),
        ("samples_per_second", summary.samples_per_second),
        ("tokens_per_second", summary.tokens_per_second),
        ("steps", summary.steps as f64),
    ] {
        run.metric(key, value, step);
    }
    let manifest = read_manifest::<serde::de::IgnoredAny>(&config.run_dir.join(kiln_train::SUMMARY));
    run.inputs(manifest.map(|m| m.inputs).unwrap_or_default());
    run.output(&config.output_dir);
    run.output(&config.run_dir);
    Ok(())
}

/// What an `eval` run adds to its record: the split's figures (`test_accuracy`,
/// ...), the model and data hashes, where the report went.
pub fn record_eval(run: &mut Run, config: &EvalConfig, metrics: &EvalMetrics) {
    run.tag("device", config.device.clone());
    let split = &metrics.split;
    for (name, value) in metrics.headline() {
        run.metric(&format!("{split}_{name}"), value, 0);
    }
    run.inputs(metrics.model.iter().cloned().chain([metrics.data.clone()]));
    run.output(&config.output_dir);
}
