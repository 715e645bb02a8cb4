//! `[monitor]`: windows of serve's log against the model's reference.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, RegistryConfig, ServeConfig, Split};

/// How `monitor` cuts the prediction log into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Every `window_predictions` predictions, in time order.
    #[default]
    Predictions,
    /// Every `window_duration` of wall-clock time (UTC, from the Unix epoch).
    Time,
}

/// Which `monitor` status makes it exit 3 (for cron and CI); it always writes its report first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FailOn {
    /// Exit 0 whatever the status.
    #[default]
    Never,
    Warn,
    Alert,
}

/// `[monitor]`: windows of live traffic against the model's reference, and
/// every threshold that turns a figure into `warn` or `alert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// `serve`'s prediction log; `None` = `[serve] log_dir`.
    pub log_dir: Option<PathBuf>,
    /// The served model folder (its reference); `None` = `[serve] model_dir`.
    pub model_dir: Option<PathBuf>,
    /// References of the registry's other versions, for logs that span a swap; `None` = `[registry] dir`.
    pub registry_dir: Option<PathBuf>,
    pub output_dir: PathBuf,
    pub window: WindowKind,
    pub window_predictions: usize,
    /// A duration such as `15m`, `1h` or `1day`.
    pub window_duration: String,
    /// A window with fewer predictions is reported but not judged (no false alarms from a handful).
    pub min_window_predictions: usize,
    /// The training data profile's split that input drift compares with.
    pub reference_split: Split,
    /// Population stability index bands (predicted labels, token lengths).
    pub psi_warn: f64,
    pub psi_alert: f64,
    /// A distance counts only when its test is significant at this level.
    pub p_value: f64,
    /// Kolmogorov-Smirnov distance bands for the top probability.
    pub ks_warn: f64,
    pub ks_alert: f64,
    /// Mean top probability this far under the reference: warn.
    pub confidence_drop_warn: f64,
    /// Truncation, unknown-token or empty-text share this far over the reference: warn.
    pub rate_increase_warn: f64,
    /// Realised or estimated accuracy this far under the reference's: warn, alert.
    pub accuracy_drop_warn: f64,
    pub accuracy_drop_alert: f64,
    /// Fewest predictions with feedback before realised accuracy is judged.
    pub min_feedback: usize,
    pub latency_p95_warn_ms: f64,
    /// Share of prediction requests the server failed (5xx, 429).
    pub error_share_warn: f64,
    pub error_share_alert: f64,
    /// A model older than this: warn (retrain on a schedule).
    pub max_model_age_days: f64,
    /// Of every confidence interval.
    pub confidence_level: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    pub fail_on: FailOn,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            log_dir: None,
            model_dir: None,
            registry_dir: None,
            output_dir: "artifacts/monitor".into(),
            window: WindowKind::Predictions,
            window_predictions: 500,
            window_duration: "1h".into(),
            min_window_predictions: 200,
            reference_split: Split::Train,
            psi_warn: 0.1,
            psi_alert: 0.25,
            p_value: 0.01,
            ks_warn: 0.1,
            ks_alert: 0.2,
            confidence_drop_warn: 0.05,
            rate_increase_warn: 0.05,
            accuracy_drop_warn: 0.05,
            accuracy_drop_alert: 0.10,
            min_feedback: 30,
            latency_p95_warn_ms: 500.0,
            error_share_warn: 0.01,
            error_share_alert: 0.05,
            max_model_age_days: 90.0,
            confidence_level: 0.95,
            bootstrap_resamples: 1000,
            seed: 42,
            fail_on: FailOn::Never,
        }
    }
}

impl MonitorConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ordered = |key: &str, warn: f64, alert: f64| {
            if warn > 0.0 && warn <= alert {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!("the warn level must be above 0 and at most the alert level, got {warn} and {alert}"),
                ))
            }
        };
        ordered("monitor.psi_warn", self.psi_warn, self.psi_alert)?;
        ordered("monitor.ks_warn", self.ks_warn, self.ks_alert)?;
        ordered("monitor.accuracy_drop_warn", self.accuracy_drop_warn, self.accuracy_drop_alert)?;
        ordered("monitor.error_share_warn", self.error_share_warn, self.error_share_alert)?;
        for (key, value) in [("monitor.p_value", self.p_value), ("monitor.confidence_level", self.confidence_level)] {
            if !(value > 0.0 && value < 1.0) {
                return Err(ConfigError::invalid(key, format!("must be in (0, 1), got {value}")));
            }
        }
        if self.window_predictions == 0 {
            return Err(ConfigError::invalid("monitor.window_predictions", "must be at least 1"));
        }
        self.window_duration()?;
        Ok(())
    }

    pub fn window_duration(&self) -> Result<std::time::Duration, ConfigError> {
        match humantime::parse_duration(&self.window_duration) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(ConfigError::invalid("monitor.window_duration", "must be longer than 0")),
            Err(error) => Err(ConfigError::invalid(
                "monitor.window_duration",
                format!("'{}' is not a duration such as 15m, 1h or 1day: {error}", self.window_duration),
            )),
        }
    }

    /// Fills the settings left to `[serve]` and `[registry]`: by default it
    /// watches what `serve` serves and logs.
    pub fn resolved(&self, serve: &ServeConfig, registry: &RegistryConfig) -> Self {
        Self {
            log_dir: Some(self.log_dir.clone().unwrap_or_else(|| serve.log_dir.clone())),
            model_dir: Some(self.model_dir.clone().unwrap_or_else(|| serve.model_dir.clone())),
            registry_dir: Some(self.registry_dir.clone().unwrap_or_else(|| registry.dir.clone())),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Monitor settings (config section [monitor])")]
pub struct MonitorArgs {
    /// serve's prediction log folder [default: [serve] log_dir].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The served model folder, whose reference windows are compared with [default: [serve] model_dir].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Registry whose versions' references cover logs that span a swap [default: [registry] dir].
    #[arg(long, value_name = "DIR")]
    pub registry_dir: Option<PathBuf>,
    /// Where monitor.json, monitor.prom, the plots and report.md go [default: artifacts/monitor].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Cut windows by count of predictions or by time [default: predictions].
    #[arg(long, value_enum)]
    pub window: Option<WindowKind>,
    /// Predictions per window, with --window predictions [default: 500].
    #[arg(long, value_name = "N")]
    pub window_predictions: Option<usize>,
    /// Window length, with --window time: 15m, 1h, 1day... [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub window_duration: Option<String>,
    /// Smaller windows are reported but not judged [default: 200].
    #[arg(long, value_name = "N")]
    pub min_window_predictions: Option<usize>,
    /// Split of the training data profile that input drift compares with [default: train].
    #[arg(long, value_enum)]
    pub reference_split: Option<kiln_core::Split>,
    /// PSI at which to warn [default: 0.1].
    #[arg(long, value_name = "X")]
    pub psi_warn: Option<f64>,
    /// PSI at which to alert [default: 0.25].
    #[arg(long, value_name = "X")]
    pub psi_alert: Option<f64>,
    /// Significance level of the chi-square and KS tests [default: 0.01].
    #[arg(long, value_name = "P")]
    pub p_value: Option<f64>,
    /// KS distance of the top probability at which to warn [default: 0.1].
    #[arg(long, value_name = "D")]
    pub ks_warn: Option<f64>,
    /// KS distance at which to alert [default: 0.2].
    #[arg(long, value_name = "D")]
    pub ks_alert: Option<f64>,
    /// Drop of the mean top probability at which to warn [default: 0.05].
    #[arg(long, value_name = "X")]
    pub confidence_drop_warn: Option<f64>,
    /// Rise of the truncation, unknown-token or empty share at which to warn [default: 0.05].
    #[arg(long, value_name = "X")]
    pub rate_increase_warn: Option<f64>,
    /// Accuracy drop (realised or estimated) at which to warn [default: 0.05].
    #[arg(long, value_name = "X")]
    pub accuracy_drop_warn: Option<f64>,
    /// Accuracy drop at which to alert [default: 0.10].
    #[arg(long, value_name = "X")]
    pub accuracy_drop_alert: Option<f64>,
    /// Fewest predictions with feedback before realised accuracy is judged [default: 30].
    #[arg(long, value_name = "N")]
    pub min_feedback: Option<usize>,
    /// Request latency p95 at which to warn, in ms [default: 500].
    #[arg(long, value_name = "MS")]
    pub latency_p95_warn_ms: Option<f64>,
    /// Share of failed requests (5xx, 429) at which to warn [default: 0.01].
    #[arg(long, value_name = "X")]
    pub error_share_warn: Option<f64>,
    /// Share of failed requests at which to alert [default: 0.05].
    #[arg(long, value_name = "X")]
    pub error_share_alert: Option<f64>,
    /// Model age at which to warn, in days [default: 90].
    #[arg(long, value_name = "DAYS")]
    pub max_model_age_days: Option<f64>,
    /// Level of every confidence interval [default: 0.95].
    #[arg(long, value_name = "LEVEL")]
    pub confidence_level: Option<f64>,
    /// Bootstrap resamples for macro-F1's interval [default: 1000].
    #[arg(long, value_name = "N")]
    pub bootstrap_resamples: Option<usize>,
    /// Seed of the bootstrap [default: 42].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Exit 3 when the status is at least this, after writing the report [default: never].
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
}

impl MonitorArgs {
    pub fn apply(self, config: &mut MonitorConfig) {
        apply_overrides!(self, config,
            [output_dir, window, window_predictions, window_duration, min_window_predictions, reference_split,
             psi_warn, psi_alert, p_value, ks_warn, ks_alert, confidence_drop_warn, rate_increase_warn,
             accuracy_drop_warn, accuracy_drop_alert, min_feedback, latency_p95_warn_ms, error_share_warn,
             error_share_alert, max_model_age_days, confidence_level, bootstrap_resamples, seed, fail_on],
            optional [log_dir, model_dir, registry_dir]);
    }
}
