//! `tune`: Search train's settings; each trial a train run; the best as a config.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kiln_config::{TrackArgs, TuneArgs};
use kiln_stage::CommonArgs;
use kiln_track::RunStatus;
use kiln_track::stage::run_tracked_stage;
use kiln_tune::journal::TrialState;
use kiln_tune::report;
use kiln_tune::worker::Tuner;

/// Search train's settings over the config's [tune.space] (by default learning rate, batch size,
/// epochs, warm-up and weight decay): each trial is a real `train` run with its own run record, stopped
/// early by the pruner when it falls behind. Writes <output-dir>/<study>/trials.csv, best.toml (the
/// config with the best settings: `train --config .../best.toml`), report.md and SVG plots.
///
/// The study's journal makes it resumable: run `tune` again after Ctrl-C or a crash and it goes on,
/// rerunning only the trial that was cut short. Several `tune --worker` processes (on one machine, or
/// many sharing the folder) work on one study at once; `tune --report` then writes the outputs.
#[derive(Debug, Parser)]
#[command(name = "tune", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Run trials only: leave the outputs to `tune` or `tune --report`.
    #[arg(long, conflicts_with = "report")]
    worker: bool,
    /// Run no trial: write the outputs from the study's journal.
    #[arg(long)]
    report: bool,
    #[command(flatten)]
    settings: TuneArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, worker, report: report_only, settings, track } = Cli::parse();
    run_tracked_stage(
        "tune",
        &common,
        |config| {
            settings.apply(&mut config.tune);
            track.apply(&mut config.track);
        },
        |config, progress, run| {
            let bin_dir = std::env::current_exe()
                .context("cannot find where tune runs from")?
                .parent()
                .context("tune's folder")?
                .to_owned();
            run.tag("study", config.tune.study.clone());
            // With MLflow on, this run is the parent of the trials it runs.
            let parent = run.record().tags.get("mlflow.run_id").map(|id| ("mlflow.parentRunId".to_owned(), id.clone()));
            let journal = kiln_tune::journal::Journal::in_dir(&config.tune.study_dir());
            if report_only && !journal.exists() {
                anyhow::bail!(
                    "--report: there is no study '{}' in {} yet (no {})",
                    config.tune.study,
                    config.tune.output_dir.display(),
                    journal.path().display()
                );
            }
            let tuner = Tuner::join(config, &bin_dir, parent.into_iter().collect())?;
            let mut interrupted = false;
            let study = if report_only {
                tuner.journal().read()?
            } else {
                let stop = tuner.stopper();
                let _ = ctrlc::set_handler(move || {
                    stop();
                    tracing::warn!("stopping; the running trial checkpoints and is rerun next time");
                });
                let finished = tuner.run(&progress)?;
                interrupted = finished.interrupted;
                run.metric("trials_run_here", finished.ran as f64, 0);
                finished.study
            };
            for state in [TrialState::Complete, TrialState::Pruned, TrialState::Failed] {
                run.metric(&format!("trials_{state}"), study.count(state) as f64, 0);
            }
            if let Some(best) = study.best(config.tune.metric.higher_is_better()) {
                run.metric(&format!("best_val_{}", config.tune.metric), best.value.unwrap_or(f64::NAN), 0);
                run.tag("best_trial", best.number.to_string());
            }
            if !worker {
                let written = report::write(tuner.study_dir(), config, tuner.space(), &study)?;
                for file in &written.files {
                    run.output(file);
                }
                match &written.best {
                    Some(best) => tracing::info!(
                        "best settings: {} (retrain with `train --config {}`); report: {}",
                        study
                            .best(config.tune.metric.higher_is_better())
                            .map(|t| kiln_tune::space::describe(&t.params))
                            .unwrap_or_default(),
                        best.display(),
                        tuner.study_dir().join(report::REPORT_MD).display()
                    ),
                    None => tracing::warn!("no trial has completed yet, so there is no best.toml"),
                }
            }
            Ok(if interrupted { RunStatus::Interrupted } else { RunStatus::Finished })
        },
    )
}
