//! `[track]`: run records and MLflow.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

/// `[track]`: the run record every `train` and `eval` run leaves, which `runs`
/// lists and compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackConfig {
    /// Each run's record goes to `<runs_dir>/<run-id>/`.
    pub runs_dir: PathBuf,
    /// An MLflow tracking server (http or https) that each run is also logged
    /// to. A server that cannot be reached costs a warning, never the run.
    pub mlflow_tracking_uri: Option<String>,
    /// The MLflow experiment the runs go to; created when missing.
    pub mlflow_experiment: String,
    /// Extra tags for the run record (and MLflow): `tune` tags its trials with
    /// the study and trial, and `mlflow.parentRunId` nests them under the study.
    pub tags: BTreeMap<String, String>,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self {
            runs_dir: "artifacts/runs".into(),
            mlflow_tracking_uri: None,
            mlflow_experiment: "kiln".into(),
            tags: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Tracking settings (config section [track])")]
pub struct TrackArgs {
    /// Where each train/eval run's record goes, as <runs-dir>/<run-id>/ [default: artifacts/runs].
    #[arg(long, value_name = "DIR", env = "KILN_RUNS_DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Also log each run to this MLflow tracking server (http or https) [default: none].
    #[arg(long, value_name = "URI", env = "MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
    /// MLflow experiment the runs go to, created when missing [default: kiln].
    #[arg(long, value_name = "NAME", env = "MLFLOW_EXPERIMENT_NAME")]
    pub mlflow_experiment: Option<String>,
    /// Extra tag for the run record and MLflow, KEY=VALUE (repeat for several).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

impl TrackArgs {
    pub fn apply(self, config: &mut TrackConfig) {
        apply_overrides!(self, config, [runs_dir, mlflow_experiment], optional[mlflow_tracking_uri], by_hand[tags]);
        config.tags.extend(tags);
    }
}
