//! `[eval]`: scoring a model on a labelled split.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{Aggregation, ConfigError, Precision, Split};

/// `[eval]`: score a trained model on a labelled split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// A model folder: `train`'s output, an export, or a Hugging Face classifier.
    pub model_dir: PathBuf,
    /// `tokenize`'s output folder.
    pub input_dir: PathBuf,
    /// Which split to score: `test`, `validation` or `train`.
    pub split: Split,
    /// Where metrics, tables, predictions, pictures and the report go.
    pub output_dir: PathBuf,
    /// `train`'s metrics log, drawn as training curves (skipped when absent).
    pub train_metrics: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// LibTorch CPU threads; 0 lets LibTorch pick.
    pub threads: usize,
    /// Matrix products in `fp32`, `bf16` or `auto`, as `[predict] precision`:
    /// score the model as it will be served.
    pub precision: Precision,
    pub batch_size: usize,
    /// How many classes and mistakes the report lists.
    pub report_top: usize,
    /// The split whose predictions (label mix, confidence, a fitted
    /// temperature) become the model's reference for monitoring.
    pub reference_split: Split,
    /// A top probability below this is a low-confidence prediction.
    pub low_confidence: f64,
    /// Token classification: how the reference's entities are grouped from
    /// sub-words, as `serve` groups them (set it to `[serve] aggregation`).
    pub aggregation: Aggregation,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            model_dir: "artifacts/model".into(),
            input_dir: "data/processed".into(),
            split: Split::Test,
            output_dir: "artifacts/eval".into(),
            train_metrics: Path::new("artifacts/train").join(kiln_core::metrics::TrainLogLine::FILE),
            device: "auto".into(),
            threads: 0,
            precision: Precision::Fp32,
            batch_size: 64,
            report_top: 10,
            reference_split: Split::Validation,
            low_confidence: 0.5,
            aggregation: Aggregation::Simple,
        }
    }
}

impl EvalConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 {
            return Err(ConfigError::invalid("eval.batch_size", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.low_confidence) {
            return Err(ConfigError::invalid(
                "eval.low_confidence",
                format!("must be a probability in [0, 1], got {}", self.low_confidence),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Eval settings (config section [eval])")]
pub struct EvalArgs {
    /// Model folder: train's output, an export or a Hugging Face classifier [default: artifacts/model].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Folder with tokenize's output [default: data/processed].
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Split to score: test, validation or train [default: test].
    #[arg(long, value_name = "SPLIT")]
    pub split: Option<Split>,
    /// Where metrics, tables, predictions, pictures and report.md go [default: artifacts/eval].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// train's metrics log, drawn as training curves [default: artifacts/train/metrics.jsonl].
    #[arg(long, value_name = "FILE")]
    pub train_metrics: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long, value_name = "DEVICE", env = "KILN_DEVICE")]
    pub device: Option<String>,
    /// LibTorch CPU threads, 0 = all cores [default: 0].
    #[arg(long, value_name = "N", env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Matrix products in fp32, bf16 or auto (bf16 where the device has fast bf16) [default: fp32].
    #[arg(long, value_enum, env = "KILN_PRECISION")]
    pub precision: Option<Precision>,
    /// Examples per batch [default: 64].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Classes and mistakes listed in report.md [default: 10].
    #[arg(long, value_name = "N")]
    pub report_top: Option<usize>,
    /// Split whose predictions become the model's reference for monitoring [default: validation].
    #[arg(long, value_name = "SPLIT")]
    pub reference_split: Option<Split>,
    /// A prediction whose top probability is below this counts as low-confidence [default: 0.5].
    #[arg(long, value_name = "PROBABILITY")]
    pub low_confidence: Option<f64>,
    /// Token classification: how the reference's entities group sub-words, as serve's
    /// --aggregation does [default: simple].
    #[arg(long, value_enum)]
    pub aggregation: Option<Aggregation>,
}

impl EvalArgs {
    pub fn apply(self, config: &mut EvalConfig) {
        apply_overrides!(self, config,
            [model_dir, input_dir, split, output_dir, train_metrics, device, threads, precision, batch_size, report_top,
             reference_split, low_confidence, aggregation],
            optional []);
    }
}
