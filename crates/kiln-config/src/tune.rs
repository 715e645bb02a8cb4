//! `[tune]`: the hyper-parameter search `tune` runs, each trial a `train` run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Metric, Precision};

/// How `tune` picks each trial's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Each setting drawn independently from its range.
    Random,
    /// Every combination once (continuous ranges at `grid_points` points), in a seeded order.
    Grid,
    /// Tree-structured Parzen estimator (Optuna's default): random for the
    /// first `startup_trials`, then drawn where good trials cluster.
    #[default]
    Tpe,
}

/// How `tune` stops unpromising trials early, from their validation records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrunerKind {
    /// Every trial trains to the end.
    None,
    /// Stop a trial whose best value so far is worse than the median of the
    /// finished trials at the same point of training.
    #[default]
    Median,
    /// Asynchronous successive halving: at `min_resource` x `reduction_factor`^k
    /// epochs, only the best 1/`reduction_factor` of the trials there go on.
    Asha,
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Random => "random",
            Self::Grid => "grid",
            Self::Tpe => "tpe",
        })
    }
}

impl std::fmt::Display for PrunerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Median => "median",
            Self::Asha => "asha",
        })
    }
}

/// One setting's range in `[tune.space]`: exactly one of these, e.g.
/// `learning_rate = { log_uniform = [1e-5, 1e-4] }` or `batch_size = { choices = [16, 32] }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// A real number whose logarithm is uniform in [low, high] (learning rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_uniform: Option<[f64; 2]>,
    /// A real number uniform in [low, high].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniform: Option<[f64; 2]>,
    /// An integer uniform in [low, high], both included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int: Option<[i64; 2]>,
    /// An integer in [low, high] whose logarithm is uniform (sizes over decades).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_int: Option<[i64; 2]>,
    /// One of these values, each as likely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<toml::Value>>,
}

/// `[tune]`: a hyper-parameter search over `[train]` settings (and `[tokenize]
/// max_length`), each trial a real `train` run. The objective is a validation
/// metric of `train`; its direction is the metric's own (loss is minimised,
/// accuracy and macro_f1 maximised). The study's state is a journal under
/// `<output_dir>/<study>/`, so `tune` resumes where it stopped and several
/// `tune --worker` processes can share one study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuneConfig {
    /// The study's name: its folder under `output_dir`, and the `study` tag of its trials' run records.
    pub study: String,
    /// Studies go to `<output_dir>/<study>/`: journal.jsonl, trials/, trials.csv, best.toml, report.md, plots.
    pub output_dir: PathBuf,
    /// The validation metric each trial is judged by (also the trial's `train.metric`).
    pub metric: Metric,
    /// Trials in the study, all workers together (a grid stops when its points run out).
    pub trials: usize,
    /// Start no new trial after this long (e.g. "2h", "30m"); `None`: no time limit.
    pub timeout: Option<String>,
    pub sampler: SamplerKind,
    /// TPE: random trials before it starts modelling.
    pub startup_trials: usize,
    /// Grid: points of each continuous range (evenly spaced, on a log scale for log ranges).
    pub grid_points: usize,
    pub pruner: PrunerKind,
    /// Median: finished trials needed before it prunes at all.
    pub pruner_startup_trials: usize,
    /// Median: epochs of training before a trial may be pruned.
    pub pruner_warmup_epochs: f64,
    /// ASHA: the share 1/reduction_factor of trials goes on at each rung.
    pub reduction_factor: usize,
    /// ASHA: epochs of training at the first rung.
    pub min_resource: f64,
    /// Seeds the sampler; trial N's draw depends only on it, N and the trials before.
    pub seed: u64,
    /// Keep each trial's model folder and checkpoint (by default only the run files stay).
    pub keep_models: bool,
    /// Each trial trains on this stratified share of the training split (its
    /// `train.data_fraction`), a cheaper search; best.toml keeps `[train]`'s own.
    pub data_fraction: f64,
    /// The trials' matrix products (their `train.precision`): `bf16` searches
    /// faster on a device with fast bf16; unset, `[train]`'s own. best.toml
    /// keeps `[train]`'s.
    pub precision: Option<Precision>,
    /// Setting name (a `[train]` key, or `max_length` for `[tokenize]`) to its
    /// range; empty: learning rate, batch size, epochs, warm-up and weight decay
    /// over the usual BERT fine-tuning ranges.
    pub space: BTreeMap<String, ParamSpec>,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            study: "study".into(),
            output_dir: "artifacts/tune".into(),
            metric: Metric::MacroF1,
            trials: 20,
            timeout: None,
            sampler: SamplerKind::Tpe,
            startup_trials: 10,
            grid_points: 3,
            pruner: PrunerKind::Median,
            pruner_startup_trials: 5,
            pruner_warmup_epochs: 0.0,
            reduction_factor: 3,
            min_resource: 1.0,
            seed: 42,
            keep_models: false,
            data_fraction: 1.0,
            precision: None,
            space: BTreeMap::new(),
        }
    }
}

impl TuneConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let study_ok = !self.study.is_empty()
            && self.study.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !self.study.starts_with('.');
        if !study_ok {
            return Err(ConfigError::invalid(
                "tune.study",
                format!("'{}' must be a folder name: letters, digits, '-', '_' or '.'", self.study),
            ));
        }
        for (key, value) in [("tune.trials", self.trials), ("tune.grid_points", self.grid_points)] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.reduction_factor < 2 {
            return Err(ConfigError::invalid("tune.reduction_factor", "must be at least 2"));
        }
        if !(self.min_resource.is_finite() && self.min_resource > 0.0) {
            return Err(ConfigError::invalid("tune.min_resource", "must be a positive number of epochs"));
        }
        if !(self.data_fraction > 0.0 && self.data_fraction <= 1.0) {
            return Err(ConfigError::invalid("tune.data_fraction", "must be in (0, 1]"));
        }
        if !(self.pruner_warmup_epochs.is_finite() && self.pruner_warmup_epochs >= 0.0) {
            return Err(ConfigError::invalid("tune.pruner_warmup_epochs", "must be 0 or more"));
        }
        self.timeout()?;
        Ok(())
    }

    pub fn timeout(&self) -> Result<Option<Duration>, ConfigError> {
        self.timeout
            .as_deref()
            .map(|text| {
                humantime::parse_duration(text)
                    .map_err(|e| ConfigError::invalid("tune.timeout", format!("'{text}' is not a duration: {e}")))
            })
            .transpose()
    }

    pub fn study_dir(&self) -> PathBuf {
        self.output_dir.join(&self.study)
    }
}

/// `KEY=SPEC` from the command line, SPEC an inline TOML table:
/// `learning_rate={ log_uniform = [1e-5, 1e-4] }`.
pub fn parse_space_entry(text: &str) -> Result<(String, ParamSpec), String> {
    let (key, spec) = text.split_once('=').ok_or_else(|| format!("'{text}' is not KEY=SPEC"))?;
    let key = key.trim();
    let parsed: BTreeMap<String, ParamSpec> = toml::from_str(&format!("{key:?} = {spec}"))
        .map_err(|e| format!("'{text}': SPEC must be a TOML table such as {{ uniform = [0.0, 0.1] }}: {e}"))?;
    parsed.into_iter().next().ok_or_else(|| format!("'{text}' names no setting"))
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Tune settings (config section [tune])")]
pub struct TuneArgs {
    /// The study's name: its folder under --output-dir [default: study].
    #[arg(long, value_name = "NAME", env = "KILN_STUDY")]
    pub study: Option<String>,
    /// Where studies go, as <output-dir>/<study>/ [default: artifacts/tune].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Validation metric to optimise; loss is minimised, the others maximised [default: macro_f1].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Trials in the study, all workers together [default: 20].
    #[arg(long, value_name = "N")]
    pub trials: Option<usize>,
    /// Start no new trial after this long, e.g. 2h or 30m [default: no limit].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// How each trial's settings are picked [default: tpe].
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerKind>,
    /// TPE: random trials before it starts modelling [default: 10].
    #[arg(long, value_name = "N")]
    pub startup_trials: Option<usize>,
    /// Grid: points of each continuous range [default: 3].
    #[arg(long, value_name = "N")]
    pub grid_points: Option<usize>,
    /// How unpromising trials are stopped early [default: median].
    #[arg(long, value_enum)]
    pub pruner: Option<PrunerKind>,
    /// Median: finished trials needed before it prunes [default: 5].
    #[arg(long, value_name = "N")]
    pub pruner_startup_trials: Option<usize>,
    /// Median: epochs before a trial may be pruned [default: 0].
    #[arg(long, value_name = "EPOCHS")]
    pub pruner_warmup_epochs: Option<f64>,
    /// ASHA: 1/N of the trials at a rung go on [default: 3].
    #[arg(long, value_name = "N")]
    pub reduction_factor: Option<usize>,
    /// ASHA: epochs of training at the first rung [default: 1].
    #[arg(long, value_name = "EPOCHS")]
    pub min_resource: Option<f64>,
    /// Seed of the sampler [default: 42].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Keep each trial's model folder and checkpoint [default: false].
    #[arg(long, value_name = "BOOL")]
    pub keep_models: Option<bool>,
    /// Each trial trains on this stratified share of the training data [default: 1].
    #[arg(long, value_name = "FRACTION")]
    pub data_fraction: Option<f64>,
    /// The trials' matrix products: fp32, bf16 or auto [default: train's precision].
    #[arg(long, value_enum, env = "KILN_PRECISION")]
    pub precision: Option<Precision>,
    /// A setting's range, KEY=SPEC with SPEC a TOML table, e.g. 'learning_rate={ log_uniform = [1e-5, 1e-4] }'
    /// (repeat for several; replaces the config's [tune.space]) [default: the BERT fine-tuning space].
    #[arg(long, value_name = "KEY=SPEC", value_parser = crate::parse_space_entry)]
    pub space: Vec<(String, ParamSpec)>,
}

impl TuneArgs {
    pub fn apply(self, config: &mut TuneConfig) {
        apply_overrides!(
            self,
            config,
            [
                study,
                output_dir,
                metric,
                trials,
                sampler,
                startup_trials,
                grid_points,
                pruner,
                pruner_startup_trials,
                pruner_warmup_epochs,
                reduction_factor,
                min_resource,
                seed,
                keep_models,
                data_fraction
            ],
            optional[timeout, precision],
            by_hand[space]
        );
        if !space.is_empty() {
            config.space = space.into_iter().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_reads_from_toml_and_bad_values_name_their_key() {
        let config = crate::PipelineConfig::from_toml(
            "[tune]\ntrials = 4\npruner = \"asha\"\n[tune.space]\nlearning_rate = { log_uniform = [1e-5, 1e-4] }\n\
             batch_size = { choices = [16, 32] }\n",
        )
        .expect("parses");
        assert_eq!((config.tune.trials, config.tune.pruner), (4, PrunerKind::Asha));
        assert_eq!(config.tune.space["learning_rate"].log_uniform, Some([1e-5, 1e-4]));
        assert_eq!(config.tune.space["batch_size"].choices.as_ref().map(Vec::len), Some(2));
        let typo = crate::PipelineConfig::from_toml("[tune.space]\nlr = { log_unifrom = [1, 2] }\n").expect_err("typo");
        assert!(typo.to_string().contains("log_unifrom"), "{typo}");
        let bad = TuneConfig { timeout: Some("soon".into()), ..TuneConfig::default() };
        assert!(bad.validate().expect_err("timeout").to_string().contains("tune.timeout"));
        let bad = TuneConfig { study: "../x".into(), ..TuneConfig::default() };
        assert!(bad.validate().expect_err("study").to_string().contains("tune.study"));
        let hours = TuneConfig { timeout: Some("2h".into()), ..TuneConfig::default() };
        assert_eq!(hours.timeout().expect("valid"), Some(Duration::from_secs(7200)));
    }

    #[test]
    fn space_entries_parse_from_the_command_line() {
        let (key, spec) = parse_space_entry("warmup_ratio={ uniform = [0.0, 0.1] }").expect("parses");
        assert_eq!((key.as_str(), spec.uniform), ("warmup_ratio", Some([0.0, 0.1])));
        assert!(parse_space_entry("warmup_ratio").is_err());
        assert!(parse_space_entry("epochs={ ints = [1, 2] }").expect_err("unknown").contains("ints"));
    }
}
