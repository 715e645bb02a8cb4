//! `[export]`: a Hugging Face model folder with everything `serve` and `monitor` need.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

/// `[export]`: a Hugging Face-compatible folder of the trained model, with a model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// `train`'s model folder.
    pub model_dir: PathBuf,
    pub output_dir: PathBuf,
    /// `eval`'s metrics, quoted in the model card (left out when absent).
    pub eval_metrics: PathBuf,
    /// `eval`'s reference predictions, carried as `reference_predictions.json`
    /// (left out when absent): monitoring's baseline for prediction drift.
    pub reference_predictions: PathBuf,
    /// `profile`'s profile of the training data, carried as `data_profile.json`
    /// (left out when absent): the reference monitoring compares traffic with.
    pub data_profile: PathBuf,
    /// Replace an existing export folder (otherwise refused).
    pub force: bool,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            model_dir: "artifacts/model".into(),
            output_dir: "artifacts/export".into(),
            eval_metrics: Path::new("artifacts/eval").join(kiln_core::EvalMetrics::FILE),
            reference_predictions: Path::new("artifacts/eval").join(kiln_core::model_folder::REFERENCE_PREDICTIONS),
            data_profile: Path::new("artifacts/profile").join(kiln_core::profile::DataProfile::FILE),
            force: false,
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Export settings (config section [export])")]
pub struct ExportArgs {
    /// train's model folder [default: artifacts/model].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Where the Hugging Face folder goes [default: artifacts/export].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// eval's metrics.json, quoted in the model card [default: artifacts/eval/metrics.json].
    #[arg(long, value_name = "FILE")]
    pub eval_metrics: Option<PathBuf>,
    /// eval's reference_predictions.json, carried for monitoring [default: artifacts/eval/reference_predictions.json].
    #[arg(long, value_name = "FILE")]
    pub reference_predictions: Option<PathBuf>,
    /// profile's profile.json of the training data, carried as data_profile.json [default: artifacts/profile/profile.json].
    #[arg(long, value_name = "FILE")]
    pub data_profile: Option<PathBuf>,
    /// Replace an existing export folder [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub force: Option<bool>,
}

impl ExportArgs {
    pub fn apply(self, config: &mut ExportConfig) {
        apply_overrides!(self, config, [model_dir, output_dir, eval_metrics, reference_predictions, data_profile, force], optional []);
    }
}
