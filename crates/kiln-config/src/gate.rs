//! `[gate]`: promote a challenger only when it is not worse than the champion.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Metric, RegistryConfig};

/// `[gate]`: the champion/challenger comparison before a promotion. Both
/// models predict the same holdout; the challenger is promoted only when it is
/// not worse by more than `margin` on `metric`, nor by more than
/// `class_margin` in recall on any class with `min_class_support` rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// `None` = `[registry] dir`.
    pub registry_dir: Option<PathBuf>,
    /// The registry version to judge; `None` = the newest candidate.
    pub candidate: Option<u32>,
    /// Labelled text tables (Parquet with text and label, as `clean` writes)
    /// both models predict: the fixed test split, plus any held-back fresh data.
    pub holdout: Vec<PathBuf>,
    /// `accuracy` or `macro_f1`.
    pub metric: Metric,
    pub margin: f64,
    pub class_margin: f64,
    pub min_class_support: usize,
    pub confidence_level: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub threads: usize,
    pub batch_size: usize,
    /// Promote when the challenger passes; `false` only decides and records.
    pub promote: bool,
    pub output_dir: PathBuf,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            registry_dir: None,
            candidate: None,
            holdout: vec!["data/interim/test.parquet".into()],
            metric: Metric::MacroF1,
            margin: 0.01,
            class_margin: 0.05,
            min_class_support: 20,
            confidence_level: 0.95,
            bootstrap_resamples: 1000,
            seed: 42,
            device: "auto".into(),
            threads: 0,
            batch_size: 64,
            promote: true,
            output_dir: "artifacts/gate".into(),
        }
    }
}

impl GateConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.metric == Metric::Loss {
            return Err(ConfigError::invalid(
                "gate.metric",
                "must be accuracy or macro_f1 (the gate compares predicted labels)",
            ));
        }
        if self.holdout.is_empty() {
            return Err(ConfigError::invalid("gate.holdout", "needs at least one labelled file"));
        }
        for (key, value) in [("gate.margin", self.margin), ("gate.class_margin", self.class_margin)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::invalid(key, format!("must be in [0, 1], got {value}")));
            }
        }
        if !(self.confidence_level > 0.0 && self.confidence_level < 1.0) {
            return Err(ConfigError::invalid("gate.confidence_level", "must be in (0, 1)"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::invalid("gate.batch_size", "must be at least 1"));
        }
        Ok(())
    }

    pub fn registry_dir(&self, registry: &RegistryConfig) -> PathBuf {
        self.registry_dir.clone().unwrap_or_else(|| registry.dir.clone())
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Gate settings (config section [gate])")]
pub struct GateArgs {
    /// The registry [default: [registry] dir].
    #[arg(long, value_name = "DIR", env = "KILN_REGISTRY_DIR")]
    pub registry_dir: Option<PathBuf>,
    /// Registry version to judge, 3 or v3 [default: the newest candidate].
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub candidate: Option<u32>,
    /// Labelled Parquet table both models predict; repeat for several [default: data/interim/test.parquet].
    #[arg(long, value_name = "FILE")]
    pub holdout: Vec<PathBuf>,
    /// Metric compared: accuracy or macro_f1 [default: macro_f1].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// How much worse than the champion the challenger may be on the metric [default: 0.01].
    #[arg(long, value_name = "X")]
    pub margin: Option<f64>,
    /// How much lower its recall may be on any class with enough rows [default: 0.05].
    #[arg(long, value_name = "X")]
    pub class_margin: Option<f64>,
    /// Rows a class needs in the holdout to be checked on its own [default: 20].
    #[arg(long, value_name = "N")]
    pub min_class_support: Option<usize>,
    /// Level of the bootstrap interval of the difference [default: 0.95].
    #[arg(long, value_name = "LEVEL")]
    pub confidence_level: Option<f64>,
    /// Paired bootstrap resamples [default: 1000].
    #[arg(long, value_name = "N")]
    pub bootstrap_resamples: Option<usize>,
    /// Seed of the bootstrap [default: 42].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long, value_name = "DEVICE", env = "KILN_DEVICE")]
    pub device: Option<String>,
    /// LibTorch CPU threads, 0 = all cores [default: 0].
    #[arg(long, value_name = "N", env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Texts per forward pass [default: 64].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Promote a challenger that passes; false only decides and records [default: true].
    #[arg(long, value_name = "BOOL")]
    pub promote: Option<bool>,
    /// Where decision.json and report.md go [default: artifacts/gate].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// A registry version: `v3` or `3`.
pub fn parse_version(text: &str) -> Result<u32, String> {
    text.strip_prefix('v').unwrap_or(text).parse().map_err(|_| format!("'{text}' is not a version (v3, or 3)"))
}

impl GateArgs {
    pub fn apply(self, config: &mut GateConfig) {
        apply_overrides!(self, config,
            [metric, margin, class_margin, min_class_support, confidence_level, bootstrap_resamples, seed, device,
             threads, batch_size, promote, output_dir],
            optional [registry_dir, candidate],
            by_hand [holdout]);
        if !holdout.is_empty() {
            config.holdout = holdout;
        }
    }
}
