//! `[label]`: weak supervision, labelling functions and the label model that
//! turn an unlabelled split into a probabilistically labelled one.

use std::path::{Path, PathBuf};

use clap::Args;
use kiln_label::FunctionSpec;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Split};

/// How the functions' votes become one distribution over labels per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LabelModelKind {
    /// Count the votes; ties split the probability.
    Majority,
    /// EM over each function's confusion matrix (Dawid and Skene, 1979).
    DawidSkene,
    /// Snorkel's `LabelModel`: matrix completion over the functions' overlaps (Ratner et al., 2019).
    #[default]
    Snorkel,
}

/// Rows on which every function abstains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum UncoveredRows {
    /// Leave them out of the labelled split, counted in the report.
    #[default]
    Drop,
    /// Keep them with the label model's prior (the class balance) as their distribution.
    Keep,
}

/// `[label]`: labelling functions vote on each row of `split` (or abstain), a
/// label model learns how far to trust each, and every row gets `label` (the
/// most probable) and `label_probs` (the distribution). The other splits
/// pass through with their gold labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelConfig {
    /// `clean`'s output: train/validation/test.parquet.
    pub input_dir: PathBuf,
    /// The labelled splits, the label matrix, label_report.json and report.md.
    pub output_dir: PathBuf,
    /// The split the functions label (its own labels, if any, only score the result).
    pub split: Split,
    /// The labels, in any order (they are sorted, as `labels.json` sorts them).
    pub labels: Vec<String>,
    /// The labelling functions, `[[label.functions]]` tables.
    pub functions: Vec<FunctionSpec>,
    pub model: LabelModelKind,
    /// A split with gold labels on which each function's accuracy is measured; `None`: no accuracies.
    pub gold_split: Option<Split>,
    pub uncovered: UncoveredRows,
    /// Seeds the label model (snorkel's seed: the same seed, the same model).
    pub seed: u64,
    /// Snorkel: optimizer steps.
    pub epochs: usize,
    /// Snorkel: SGD learning rate.
    pub learning_rate: f64,
    /// Snorkel: pull towards the initial estimate.
    pub l2: f64,
    /// Snorkel: each label's share, in the sorted label order; empty: uniform.
    pub class_balance: Vec<f64>,
    /// Dawid-Skene: most EM iterations.
    pub max_iterations: usize,
    /// Dawid-Skene: stop when no probability moves more than this.
    pub tolerance: f64,
}

impl Default for LabelConfig {
    fn default() -> Self {
        Self {
            input_dir: "data/interim".into(),
            output_dir: "data/labelled".into(),
            split: Split::Train,
            labels: Vec::new(),
            functions: Vec::new(),
            model: LabelModelKind::Snorkel,
            gold_split: None,
            uncovered: UncoveredRows::Drop,
            seed: 0,
            epochs: 500,
            learning_rate: 0.01,
            l2: 0.0,
            class_balance: Vec::new(),
            max_iterations: 1000,
            tolerance: 1e-4,
        }
    }
}

impl LabelConfig {
    /// The labels in id order (sorted, de-duplicated), as `labels.json` holds them.
    pub fn sorted_labels(&self) -> Vec<String> {
        let unique: std::collections::BTreeSet<&String> = self.labels.iter().collect();
        unique.into_iter().cloned().collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sorted_labels().len() < 2 {
            return Err(ConfigError::invalid("label.labels", "list at least two labels the functions vote"));
        }
        if self.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(ConfigError::invalid("label.labels", "a label is empty"));
        }
        if self.functions.is_empty() {
            return Err(ConfigError::invalid("label.functions", "no labelling functions ([[label.functions]] tables)"));
        }
        let mut names = std::collections::BTreeSet::new();
        if let Some(twice) = self.functions.iter().find(|f| !names.insert(f.name.as_str())) {
            return Err(ConfigError::invalid("label.functions", format!("two functions are named `{}`", twice.name)));
        }
        if self.gold_split == Some(self.split) {
            return Err(ConfigError::invalid(
                "label.gold_split",
                format!("the gold split must be another split than the one labelled ({})", self.split),
            ));
        }
        if self.epochs == 0 || self.max_iterations == 0 {
            return Err(ConfigError::invalid("label.epochs", "epochs and max_iterations must be at least 1"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(ConfigError::invalid("label.learning_rate", "must be positive"));
        }
        if !(self.l2 >= 0.0 && self.tolerance > 0.0) {
            return Err(ConfigError::invalid("label.l2", "l2 must be at least 0 and tolerance positive"));
        }
        if !self.class_balance.is_empty() {
            let sum: f64 = self.class_balance.iter().sum();
            if self.class_balance.len() != self.sorted_labels().len()
                || self.class_balance.iter().any(|&s| s <= 0.0)
                || (sum - 1.0).abs() > 1e-6
            {
                return Err(ConfigError::invalid(
                    "label.class_balance",
                    format!("give one positive share per label ({}), summing to 1", self.sorted_labels().join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// `--functions FILE`'s functions (a newtype: clap reads `Option<Vec<_>>` as a repeated flag).
#[derive(Debug, Clone)]
pub struct FunctionsFile(pub Vec<FunctionSpec>);

/// Reads `--functions FILE`: a TOML file of `[[functions]]` tables.
fn functions_file(path: &str) -> Result<FunctionsFile, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        functions: Vec<FunctionSpec>,
    }
    let text = std::fs::read_to_string(Path::new(path)).map_err(|error| format!("cannot read {path}: {error}"))?;
    toml::from_str::<File>(&text)
        .map(|file| FunctionsFile(file.functions))
        .map_err(|error| format!("{path} is not a list of [[functions]] tables: {error}"))
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Label settings (config section [label])")]
pub struct LabelArgs {
    /// Folder with clean's train/validation/test.parquet [default: data/interim].
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Where the labelled splits, label_matrix.parquet, label_report.json and report.md go [default: data/labelled].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// The split the functions label [default: train].
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// A label the functions may vote (repeat for each; at least two) [default: none].
    #[arg(long, value_name = "LABEL")]
    pub labels: Vec<String>,
    /// The labelling functions: a TOML file of [[functions]] tables, in place of the config's [default: none].
    #[arg(long, value_name = "FILE", value_parser = functions_file)]
    pub functions: Option<FunctionsFile>,
    /// The label model [default: snorkel].
    #[arg(long, value_enum)]
    pub model: Option<LabelModelKind>,
    /// A split with gold labels to measure each function's accuracy on [default: none].
    #[arg(long, value_enum)]
    pub gold_split: Option<Split>,
    /// Rows no function votes on: drop them (counted) or keep them with the class balance [default: drop].
    #[arg(long, value_enum)]
    pub uncovered: Option<UncoveredRows>,
    /// Seed of the label model [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Snorkel: optimizer steps [default: 500].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Snorkel: learning rate [default: 0.01].
    #[arg(long, value_name = "RATE")]
    pub learning_rate: Option<f64>,
    /// Snorkel: L2 pull towards the initial estimate [default: 0.0].
    #[arg(long, value_name = "STRENGTH")]
    pub l2: Option<f64>,
    /// Snorkel: a label's share, in sorted label order (repeat for each; none: uniform) [default: none].
    #[arg(long, value_name = "SHARE")]
    pub class_balance: Vec<f64>,
    /// Dawid-Skene: most EM iterations [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_iterations: Option<usize>,
    /// Dawid-Skene: convergence threshold on the probabilities [default: 0.0001].
    #[arg(long, value_name = "DELTA")]
    pub tolerance: Option<f64>,
}

impl LabelArgs {
    pub fn apply(self, config: &mut LabelConfig) {
        apply_overrides!(self, config,
            [input_dir, output_dir, split, model, uncovered, seed, epochs, learning_rate, l2, max_iterations, tolerance],
            optional [gold_split],
            by_hand [labels, functions, class_balance]);
        if let Some(FunctionsFile(functions)) = functions {
            config.functions = functions;
        }
        if !labels.is_empty() {
            config.labels = labels;
        }
        if !class_balance.is_empty() {
            config.class_balance = class_balance;
        }
    }
}
