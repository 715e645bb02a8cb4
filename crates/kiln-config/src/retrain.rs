//! `[retrain]`: feedback into the next data version and a new model.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, IngestConfig, ServeConfig};

/// What `retrain` does with a feedback label the training data never had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NewLabelPolicy {
    /// Stop, naming the label: a person decides.
    #[default]
    Error,
    /// Leave those rows out, counted in the report.
    Drop,
    /// Train on it as a new class (the champion cannot be compared on it; the gate leaves those rows out).
    Add,
}

/// Where `retrain`'s challenger starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RetrainInit {
    /// The pre-trained encoder and a new head, on all the old data plus the feedback: `train`'s run again.
    #[default]
    Pretrained,
    /// The production model's weights, head included, on the feedback plus a
    /// `replay_share` of the old training rows, its top `warm_trainable_layers`
    /// for `warm_epochs`: a recovery in a fraction of the time.
    Production,
}

impl std::fmt::Display for RetrainInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pretrained => "pretrained",
            Self::Production => "production",
        })
    }
}

/// `[retrain]`: the next training set (the current one plus the predictions
/// that got feedback) and the pipeline run on it into `output_dir`, then the
/// result registered as a candidate and judged by `[gate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// `serve`'s prediction log (feedback and the texts it labels); `None` = `[serve] log_dir`.
    pub log_dir: Option<PathBuf>,
    /// The current raw splits; `None` = `[ingest] output_dir`.
    pub base_dir: Option<PathBuf>,
    /// The new data version and every stage's output of the retraining run.
    pub output_dir: PathBuf,
    /// Share of the feedback held back from training for the gate's holdout.
    pub holdout_share: f64,
    /// Fewer usable feedback rows than this: nothing to retrain on (exit 0, no candidate).
    pub min_feedback: usize,
    pub new_labels: NewLabelPolicy,
    /// Also train on the served texts no feedback names, labelled by the
    /// config's `[[label.functions]]` and label model (a weak config only).
    pub weak_labels: bool,
    /// How much such a row counts in the loss, against 1 for a gold or base row.
    pub weak_weight: f64,
    /// The most served texts labelled so (the latest ones).
    pub weak_max_rows: usize,
    /// `pretrained` trains the challenger as `train` does; `production` warm-starts
    /// it from the production model in `[registry]` (a recovery in a fraction of the time).
    pub init: RetrainInit,
    /// A warm start's share of the old training rows, taken from each class
    /// alike (at least one row of each), so the classes the feedback lacks are not forgotten.
    pub replay_share: f64,
    /// A warm start's epochs over the feedback and the replayed rows (in place of `train.epochs`).
    pub warm_epochs: usize,
    /// A warm start's peak learning rate (in place of `train.learning_rate`):
    /// higher than a full fine-tune's, as only the top layers and the head train.
    pub warm_learning_rate: f64,
    /// A warm start trains only the top N encoder layers, the pooler and the
    /// head (`train.trainable_layers`); 0 trains every layer.
    pub warm_trainable_layers: usize,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        Self {
            log_dir: None,
            base_dir: None,
            output_dir: "artifacts/retrain".into(),
            holdout_share: 0.2,
            min_feedback: 50,
            new_labels: NewLabelPolicy::Error,
            weak_labels: false,
            weak_weight: 0.5,
            weak_max_rows: 10_000,
            init: RetrainInit::Pretrained,
            replay_share: 0.25,
            warm_epochs: 3,
            warm_learning_rate: 3e-4,
            warm_trainable_layers: 3,
        }
    }
}

impl RetrainConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..1.0).contains(&self.holdout_share) {
            return Err(ConfigError::invalid(
                "retrain.holdout_share",
                format!("must be in [0, 1), got {}", self.holdout_share),
            ));
        }
        if !(self.weak_weight > 0.0 && self.weak_weight <= 1.0) {
            return Err(ConfigError::invalid(
                "retrain.weak_weight",
                format!("must be in (0, 1] (a weak label counts at most as a gold one), got {}", self.weak_weight),
            ));
        }
        if !(self.replay_share > 0.0 && self.replay_share <= 1.0) {
            return Err(ConfigError::invalid(
                "retrain.replay_share",
                format!("must be in (0, 1] (1 replays every old row), got {}", self.replay_share),
            ));
        }
        if self.warm_epochs == 0 {
            return Err(ConfigError::invalid("retrain.warm_epochs", "must be at least 1"));
        }
        if !(self.warm_learning_rate.is_finite() && self.warm_learning_rate > 0.0) {
            return Err(ConfigError::invalid(
                "retrain.warm_learning_rate",
                format!("must be positive, got {}", self.warm_learning_rate),
            ));
        }
        Ok(())
    }

    /// The share of the old training rows the challenger trains on: all of them from pre-trained weights.
    pub fn replayed_share(&self) -> f64 {
        match self.init {
            RetrainInit::Pretrained => 1.0,
            RetrainInit::Production => self.replay_share,
        }
    }

    /// Fills the settings left to `[serve]` and `[ingest]`.
    pub fn resolved(&self, serve: &ServeConfig, ingest: &IngestConfig) -> Self {
        Self {
            log_dir: Some(self.log_dir.clone().unwrap_or_else(|| serve.log_dir.clone())),
            base_dir: Some(self.base_dir.clone().unwrap_or_else(|| ingest.output_dir.clone())),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Retrain settings (config section [retrain])")]
pub struct RetrainArgs {
    /// serve's prediction log, with the feedback [default: [serve] log_dir].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The current raw splits the feedback is added to [default: [ingest] output_dir].
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Where the new data version and the run's outputs go [default: artifacts/retrain].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Share of the feedback held back for the gate's holdout [default: 0.2].
    #[arg(long, value_name = "FRACTION")]
    pub holdout_share: Option<f64>,
    /// Fewest usable feedback rows worth a retraining [default: 50].
    #[arg(long, value_name = "N")]
    pub min_feedback: Option<usize>,
    /// A feedback label training never had: error, drop or add [default: error].
    #[arg(long, value_enum)]
    pub new_labels: Option<NewLabelPolicy>,
    /// Also train on served texts without feedback, labelled by [[label.functions]] [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub weak_labels: Option<bool>,
    /// Weight of such a row in the loss, gold rows 1 [default: 0.5].
    #[arg(long, value_name = "WEIGHT")]
    pub weak_weight: Option<f64>,
    /// The most served texts labelled so, the latest [default: 10000].
    #[arg(long, value_name = "N")]
    pub weak_max_rows: Option<usize>,
    /// Start the challenger from pretrained weights or warm from the production model [default: pretrained].
    #[arg(long, value_enum)]
    pub init: Option<RetrainInit>,
    /// A warm start's share of the old training rows, per class [default: 0.25].
    #[arg(long, value_name = "FRACTION")]
    pub replay_share: Option<f64>,
    /// A warm start's epochs, in place of train.epochs [default: 3].
    #[arg(long, value_name = "N")]
    pub warm_epochs: Option<usize>,
    /// A warm start's peak learning rate, in place of train.learning_rate [default: 0.0003].
    #[arg(long, value_name = "LR")]
    pub warm_learning_rate: Option<f64>,
    /// A warm start trains only the top N encoder layers, pooler and head; 0 = all [default: 3].
    #[arg(long, value_name = "N")]
    pub warm_trainable_layers: Option<usize>,
}

impl RetrainArgs {
    pub fn apply(self, config: &mut RetrainConfig) {
        apply_overrides!(self, config, [output_dir, holdout_share, min_feedback, new_labels, weak_labels, weak_weight, weak_max_rows, init, replay_share, warm_epochs, warm_learning_rate, warm_trainable_layers], optional [log_dir, base_dir]);
    }
}
