//! The harness of stages that leave a run record (`train`, `eval`, `monitor`,
//! `tune`, `gate`, `retrain`): [`kiln_stage::run_stage`] plus the record,
//! mirrored to MLflow when tracking is on.

use std::process::ExitCode;

use anyhow::{Context, Result};
use kiln_config::PipelineConfig;
use kiln_core::Progress;
use kiln_stage::{CommonArgs, Outcome, catch_panics, panic_if_asked, run_stage_uncaught};

use crate::mlflow::Mlflow;
use crate::{Run, RunStatus};

/// How a tracked stage ended: what its record says and how the process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub outcome: Outcome,
}

/// An interrupted run exits 130; a finished or pruned one 0.
impl From<RunStatus> for RunEnd {
    fn from(status: RunStatus) -> Self {
        let outcome = if status == RunStatus::Interrupted { Outcome::Interrupted } else { Outcome::Done };
        Self { status, outcome }
    }
}

/// `run_stage` for the stages that leave a run record: the record is started
/// before `work`, which fills it in and says how the run ended; an error ends
/// it as `failed`, with the message.
pub fn run_tracked_stage<E: Into<RunEnd>>(
    name: &'static str,
    common: &CommonArgs,
    apply: impl FnOnce(&mut PipelineConfig),
    work: impl FnOnce(&PipelineConfig, Progress, &mut Run) -> Result<E>,
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
            let ended = catch_panics(|| {
                panic_if_asked(name);
                work(config, progress, &mut run).map(Into::into)
            });
            let (status, error) = match &ended {
                Ok(end) => (end.status, None),
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
            ended.map(|end| end.outcome)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_exits_130_and_the_others_0() {
        assert_eq!(RunEnd::from(RunStatus::Interrupted).outcome.exit_code(), kiln_stage::exit::INTERRUPTED);
        assert_eq!(RunEnd::from(RunStatus::Finished).outcome, Outcome::Done);
        assert_eq!(RunEnd::from(RunStatus::Pruned).outcome, Outcome::Done);
    }
}
