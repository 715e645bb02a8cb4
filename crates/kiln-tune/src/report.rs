//! What a study leaves for people: `trials.csv`, `best.toml` (the study's
//! config with the best trial's settings: train with it as it is),
//! `report.md` and SVG plots (the optimisation history, each setting against
//! the objective). Each file is written whole or not at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_config::PipelineConfig;
use kiln_core::output::write_file_atomically;
use kiln_plots::{Scatter, scatter_svg};

use crate::journal::{Study, Trial, TrialState};
use crate::space::{self, Space};

pub const TRIALS_CSV: &str = "trials.csv";
pub const BEST_TOML: &str = "best.toml";
pub const REPORT_MD: &str = kiln_core::stages::REPORT;
pub const HISTORY_SVG: &str = "history.svg";

/// The files [`write`] made.
pub struct Written {
    pub best: Option<PathBuf>,
    pub files: Vec<PathBuf>,
}

/// Writes every output of the study in `dir` from its journal's state.
pub fn write(dir: &Path, config: &PipelineConfig, space: &Space, study: &Study) -> Result<Written> {
    let maximize = config.tune.metric.higher_is_better();
    let mut files = vec![dir.join(TRIALS_CSV)];
    write_file_atomically(&files[0], &trials_csv(space, study)?)?;
    let best = study.best(maximize);
    let best_file = match best {
        Some(trial) => {
            let path = dir.join(BEST_TOML);
            write_file_atomically(&path, best_toml(config, trial)?.as_bytes())?;
            files.push(path.clone());
            Some(path)
        }
        None => None,
    };
    let mut plots = vec![HISTORY_SVG.to_owned()];
    draw(&dir.join(HISTORY_SVG), |path| history_svg(config, study, path))?;
    for param in &space.params {
        let name = format!("param-{}.svg", param.name);
        draw(&dir.join(&name), |path| param_svg(config, study, &param.name, param.domain.is_log(), path))?;
        plots.push(name);
    }
    files.extend(plots.iter().map(|p| dir.join(p)));
    let report = dir.join(REPORT_MD);
    write_file_atomically(&report, report_md(config, space, study, &plots).as_bytes())?;
    files.push(report);
    Ok(Written { best: best_file, files })
}

/// Plotters writes to a path: draw beside the target, then rename over it.
fn draw(path: &Path, render: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().map_or_else(|| "plot.svg".into(), |n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(".{name}.tmp"));
    render(&temp)?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot move {} into place", path.display()))
}

/// The trials as CSV: number, state, value, time, attempts, epochs reached, run id, then each setting.
fn trials_csv(space: &Space, study: &Study) -> Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> =
        ["trial", "state", "value", "seconds", "attempts", "epochs_trained", "run_id"].map(String::from).to_vec();
    header.extend(space.names().map(String::from));
    csv.write_record(&header)?;
    for trial in &study.trials {
        let mut row = vec![
            trial.number.to_string(),
            trial.state.to_string(),
            trial.value.map_or_else(String::new, |v| v.to_string()),
            format!("{:.1}", trial.seconds),
            trial.attempt.to_string(),
            trial.reports.last().map_or_else(String::new, |r| format!("{:.3}", r.epoch)),
            trial.run_id.clone().unwrap_or_default(),
        ];
        row.extend(space.names().map(|name| trial.params.get(name).map_or_else(String::new, plain)));
        csv.write_record(&row)?;
    }
    csv.into_inner().map_err(|e| anyhow::anyhow!("cannot write the trials table: {e}"))
}

fn plain(value: &serde_json::Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// The study's config with the best trial's settings (and metric): a whole
/// config, so `train --config best.toml` retrains the winner into the
/// pipeline's usual folders.
fn best_toml(config: &PipelineConfig, best: &Trial) -> Result<String> {
    let mut merged = space::apply(config, &best.params)?;
    merged.train.metric = config.tune.metric;
    let mut text = format!(
        "# The best trial of study '{}': trial {} ({} {:.4}).\n# This is the study's whole config with its settings:\n",
        config.tune.study,
        best.number,
        config.tune.metric,
        best.value.unwrap_or(f64::NAN)
    );
    for (name, value) in &best.params {
        let section = if name == space::MAX_LENGTH { "tokenize" } else { "train" };
        let _ = writeln!(text, "#   {section}.{name} = {value}");
    }
    text.push_str("# Retrain it in full: `train --config <this file>` (`tokenize` first when max_length is set).\n\n");
    text.push_str(&merged.to_toml());
    Ok(text)
}

/// A trial's point on the plots: its value, or a pruned trial's last validation.
fn plotted_value(trial: &Trial) -> Option<f64> {
    trial.value.or(trial.reports.last().map(|r| r.value))
}

fn history_svg(config: &PipelineConfig, study: &Study, path: &Path) -> Result<()> {
    let maximize = config.tune.metric.higher_is_better();
    let by_state = |state: TrialState| -> Vec<(f64, f64)> {
        study
            .trials
            .iter()
            .filter(|t| t.state == state)
            .filter_map(|t| Some((t.number as f64, plotted_value(t)?)))
            .collect()
    };
    let mut best_so_far = Vec::new();
    let mut best: Option<f64> = None;
    for trial in study.trials.iter().filter(|t| t.state == TrialState::Complete) {
        if let Some(value) = trial.value {
            let better = best.is_none_or(|b| if maximize { value > b } else { value < b });
            if better {
                best = Some(value);
            }
            best_so_far.push((trial.number as f64, best.unwrap_or(value)));
        }
    }
    let metric = config.tune.metric.to_string();
    let series = [
        Scatter { name: "complete", points: by_state(TrialState::Complete), hollow: false, line: false },
        Scatter { name: "pruned (last value)", points: by_state(TrialState::Pruned), hollow: true, line: false },
        Scatter { name: "best so far", points: best_so_far, hollow: false, line: true },
    ];
    scatter_svg(&format!("Study '{}': {metric} by trial", config.tune.study), "trial", &metric, &series, false, path)
}

fn param_svg(config: &PipelineConfig, study: &Study, name: &str, log: bool, path: &Path) -> Result<()> {
    let points = |state: TrialState| -> Vec<(f64, f64)> {
        study
            .trials
            .iter()
            .filter(|t| t.state == state)
            .filter_map(|t| {
                let x = t.params.get(name)?;
                let x = x.as_f64().or_else(|| x.as_bool().map(f64::from))?;
                Some((x, plotted_value(t)?))
            })
            .collect()
    };
    let metric = config.tune.metric.to_string();
    let series = [
        Scatter { name: "complete", points: points(TrialState::Complete), hollow: false, line: false },
        Scatter { name: "pruned (last value)", points: points(TrialState::Pruned), hollow: true, line: false },
    ];
    scatter_svg(&format!("{name} against {metric}"), name, &metric, &series, log, path)
}

fn report_md(config: &PipelineConfig, space: &Space, study: &Study, plots: &[String]) -> String {
    let tune = &config.tune;
    let maximize = tune.metric.higher_is_better();
    let mut md = format!("# Study `{}`\n\n", tune.study);
    let _ = writeln!(
        md,
        "Objective: validation {} ({}). Sampler `{}` (seed {}), pruner `{}`. {} trials: {} complete, {} pruned, {} \
         failed, {} not finished.\n",
        tune.metric,
        if maximize { "maximised" } else { "minimised" },
        tune.sampler,
        tune.seed,
        tune.pruner,
        study.trials.len(),
        study.count(TrialState::Complete),
        study.count(TrialState::Pruned),
        study.count(TrialState::Failed),
        study.count(TrialState::Running) + study.count(TrialState::Interrupted),
    );
    let hours: f64 = study.trials.iter().map(|t| t.seconds).sum::<f64>() / 3600.0;
    let _ = writeln!(md, "Training time, all trials together: {hours:.2} h.\n");
    match study.best(maximize) {
        Some(best) => {
            let _ = writeln!(
                md,
                "## Best: trial {} ({} {:.4})\n",
                best.number,
                tune.metric,
                best.value.unwrap_or(f64::NAN)
            );
            md.push_str("| setting | value |\n|---|---|\n");
            for (name, value) in &best.params {
                let _ = writeln!(md, "| {name} | {} |", space::short(value));
            }
            let _ = writeln!(
                md,
                "\nRetrain it in full with `train --config {}` (a whole config: the study's, with these settings).\n",
                tune.study_dir().join(BEST_TOML).display()
            );
        }
        None => md.push_str("No trial has completed yet.\n\n"),
    }
    md.push_str(
        "## Trials, best first\n\n| trial | state | value | epochs | minutes | settings |\n|---|---|---|---|---|---|\n",
    );
    let mut ranked: Vec<&Trial> = study.trials.iter().collect();
    let key = |t: &Trial| {
        let value = t.value.unwrap_or(f64::NAN);
        let value = if value.is_nan() {
            f64::NEG_INFINITY
        } else if maximize {
            value
        } else {
            -value
        };
        (t.state != TrialState::Complete, -value)
    };
    ranked.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.number.cmp(&b.number))
    });
    for trial in ranked {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {} |",
            trial.number,
            trial.state,
            trial.value.map_or_else(|| "-".into(), |v| format!("{v:.4}")),
            trial.reports.last().map_or_else(|| "-".into(), |r| format!("{:.2}", r.epoch)),
            trial.seconds / 60.0,
            space::describe(&trial.params)
        );
    }
    md.push_str("\n## Plots\n\n");
    for plot in plots {
        let _ = writeln!(md, "![{plot}]({plot})\n");
    }
    let _ = writeln!(
        md,
        "## More\n\n- Every trial is a `train` run with its own record: `runs compare --with-tag study={}` puts \
         them side by side.\n- `trials.csv` has one row per trial; `journal.jsonl` is the study's whole history.\n\
         - Settings searched: {}.",
        tune.study,
        space.names().collect::<Vec<_>>().join(", ")
    );
    md
}
