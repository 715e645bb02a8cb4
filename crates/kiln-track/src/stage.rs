//! The stage harness for stages that leave a run record (`train`, `eval`,
//! `monitor`): [`kiln_config::stage::run_stage`] plus the record, mirrored to
//! MLflow when tracking is on.

use std::process::ExitCode;

use anyhow::{Context, Result};
use kiln_config::PipelineConfig;
use kiln_config::stage::{CommonArgs, catch_panics, panic_if_asked, run_stage_uncaught};
use kiln_core::Progress;

use crate::mlflow::Mlflow;
use crate::{Run, RunStatus};

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
            for (key, value) in &config.track.tags {
                run.tag(key, value.clone());
            }
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
