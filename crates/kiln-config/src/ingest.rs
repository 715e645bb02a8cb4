//! `[ingest]`: a user's labelled files (CSV, TSV, JSONL, Parquet, CoNLL) into kiln's tables.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, InvalidTags, ScoreRule, TagScheme};

/// Input file formats `ingest` (and later `predict`) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Pick from the file extension (.csv, .tsv/.tab/.txt, .jsonl/.ndjson, .parquet, .conll/.iob/.bio).
    #[default]
    Auto,
    Csv,
    Tsv,
    Jsonl,
    Parquet,
    /// One word per line with its tag, a blank line between sentences (token classification).
    Conll,
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Auto => "auto",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
            Self::Conll => "conll",
        };
        f.write_str(name)
    }
}

/// The file validation rows are carved from when the source has no validation file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ValidationSource {
    #[default]
    Train,
    Test,
}

/// `[ingest]`: read raw labelled text, map columns, split, write `data/raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Training data (or all data, when no test file is given). Each of the
    /// three files may be a glob pattern (`videos/0[1-4]*.csv`): its files are
    /// read in name order, one after another.
    pub train_file: Option<PathBuf>,
    /// The source's own validation split, if it has one.
    pub validation_file: Option<PathBuf>,
    /// The source's own test split, if it has one.
    pub test_file: Option<PathBuf>,
    pub format: InputFormat,
    /// Whether CSV/TSV files start with a header row; without one, columns are
    /// named `column_1`, `column_2`, ...
    pub has_header: bool,
    /// Whether `"` quotes fields in CSV/TSV (turn off for TSV that uses `"` as text).
    pub quoting: bool,
    pub text_column: String,
    /// Column holding the label; ignored when `score_column` is set.
    pub label_column: String,
    /// Column holding a stable row id; without one, ids are `<file stem>-<row>`.
    pub id_column: Option<String>,
    /// Numeric column turned into labels by `score_labels`.
    pub score_column: Option<String>,
    /// Rules like `"positive > 0"`; the first that matches a row gives its label,
    /// and rows no rule matches are dropped and counted.
    pub score_labels: Vec<String>,
    /// Share of the training rows carved out for validation (stratified).
    pub validation_fraction: f64,
    /// Which file validation is carved from when there is no validation file:
    /// the training file, or the test file (as Snorkel's spam tutorial splits
    /// its fifth video), which then needs a test file.
    pub validation_from: ValidationSource,
    /// Share of all rows carved out for test when the source has no test file.
    pub test_fraction: f64,
    /// Seed of the split: the same seed gives the same split, byte for byte.
    pub seed: u64,
    pub output_dir: PathBuf,
    /// Token classification, JSONL: the list of words of each sentence.
    pub tokens_column: String,
    /// Token classification, JSONL: the list of tags, one per word.
    pub tags_column: String,
    /// Token classification, CoNLL: the column (from 1) with the tag; `None` = the last.
    pub conll_tag_column: Option<usize>,
    /// How the files' tags mark entities; kiln stores IOB2 and records this.
    pub tag_scheme: TagScheme,
    /// An `I-X` that continues no entity: an error naming file and line, or read as `B-X`.
    pub invalid_tags: InvalidTags,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            train_file: None,
            validation_file: None,
            test_file: None,
            format: InputFormat::Auto,
            has_header: true,
            quoting: true,
            text_column: "text".into(),
            label_column: "label".into(),
            id_column: None,
            score_column: None,
            score_labels: Vec::new(),
            validation_fraction: 0.1,
            validation_from: ValidationSource::Train,
            test_fraction: 0.1,
            seed: 42,
            output_dir: "data/raw".into(),
            tokens_column: "tokens".into(),
            tags_column: "tags".into(),
            conll_tag_column: None,
            tag_scheme: TagScheme::Iob2,
            invalid_tags: InvalidTags::Error,
        }
    }
}

impl IngestConfig {
    /// Checks what TOML types cannot: fractions, rules, required files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.train_file.is_none() {
            return Err(ConfigError::invalid(
                "ingest.train_file",
                "no training data file given (set it in the config or pass --train-file)",
            ));
        }
        for (key, value) in
            [("ingest.validation_fraction", self.validation_fraction), ("ingest.test_fraction", self.test_fraction)]
        {
            if !(0.0..1.0).contains(&value) {
                return Err(ConfigError::invalid(key, format!("must be in [0, 1), got {value}")));
            }
        }
        if self.test_file.is_none() && self.validation_fraction + self.test_fraction >= 1.0 {
            return Err(ConfigError::invalid(
                "ingest.test_fraction",
                "validation_fraction + test_fraction must leave rows for training",
            ));
        }
        if self.validation_from == ValidationSource::Test
            && (self.test_file.is_none() || self.validation_file.is_some())
        {
            return Err(ConfigError::invalid(
                "ingest.validation_from",
                "\"test\" carves validation out of the test file: set test_file, and no validation_file",
            ));
        }
        if matches!(self.conll_tag_column, Some(0 | 1)) {
            return Err(ConfigError::invalid(
                "ingest.conll_tag_column",
                "column 1 holds the word; the tag is in column 2 or later (counted from 1)",
            ));
        }
        if self.score_column.is_some() && self.score_labels.is_empty() {
            return Err(ConfigError::invalid(
                "ingest.score_labels",
                "score_column is set but no rules turn scores into labels (e.g. [\"positive > 0\", \"negative < 0\"])",
            ));
        }
        self.score_rules().map(drop)
    }

    pub fn score_rules(&self) -> Result<Vec<ScoreRule>, ConfigError> {
        self.score_labels
            .iter()
            .map(|rule| rule.parse().map_err(|message| ConfigError::invalid("ingest.score_labels", message)))
            .collect()
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Ingest settings (config section [ingest])")]
pub struct IngestArgs {
    /// Training data file (CSV, TSV, JSONL or Parquet; a glob pattern reads its files in name order); all data when there is no test file.
    #[arg(long, value_name = "FILE")]
    pub train_file: Option<PathBuf>,
    /// The source's own validation file; else validation is carved from train.
    #[arg(long, value_name = "FILE")]
    pub validation_file: Option<PathBuf>,
    /// The source's own test file; else test is carved from the data by --test-fraction.
    #[arg(long, value_name = "FILE")]
    pub test_file: Option<PathBuf>,
    /// Input format [default: auto, from the file extension].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Whether CSV/TSV files have a header row [default: true].
    #[arg(long, value_name = "BOOL")]
    pub has_header: Option<bool>,
    /// Whether `"` quotes CSV/TSV fields [default: true].
    #[arg(long, value_name = "BOOL")]
    pub quoting: Option<bool>,
    /// Column with the text [default: text].
    #[arg(long, value_name = "NAME")]
    pub text_column: Option<String>,
    /// Column with the label [default: label].
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Column with a stable row id [default: none, ids are <file stem>-<row>].
    #[arg(long, value_name = "NAME")]
    pub id_column: Option<String>,
    /// Numeric column turned into labels by --score-labels.
    #[arg(long, value_name = "NAME")]
    pub score_column: Option<String>,
    /// Score rule such as "positive > 0" (repeat for each label; first match wins).
    #[arg(long, value_name = "RULE")]
    pub score_labels: Vec<String>,
    /// Share of training rows carved out for validation [default: 0.1].
    #[arg(long, value_name = "FRACTION")]
    pub validation_fraction: Option<f64>,
    /// Carve validation from the training file or from the test file, when there is no validation file [default: train].
    #[arg(long, value_enum)]
    pub validation_from: Option<ValidationSource>,
    /// Share of rows carved out for test when there is no test file [default: 0.1].
    #[arg(long, value_name = "FRACTION")]
    pub test_fraction: Option<f64>,
    /// Seed of the split [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where train/validation/test.parquet and manifest.json go [default: data/raw].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Token classification, JSONL: the column with each sentence's words [default: tokens].
    #[arg(long, value_name = "NAME")]
    pub tokens_column: Option<String>,
    /// Token classification, JSONL: the column with each word's tag [default: tags].
    #[arg(long, value_name = "NAME")]
    pub tags_column: Option<String>,
    /// Token classification, CoNLL: the column with the tag, counted from 1 [default: the last].
    #[arg(long, value_name = "N")]
    pub conll_tag_column: Option<usize>,
    /// How the files' tags mark entities; stored as IOB2 [default: iob2].
    #[arg(long, value_enum)]
    pub tag_scheme: Option<TagScheme>,
    /// An I- tag that continues no entity: error (with file and line) or repair (read as B-) [default: error].
    #[arg(long, value_enum)]
    pub invalid_tags: Option<InvalidTags>,
}

impl IngestArgs {
    pub fn apply(self, config: &mut IngestConfig) {
        apply_overrides!(self, config,
            [format, has_header, quoting, text_column, label_column, validation_fraction, validation_from, test_fraction,
             seed, output_dir,
             tokens_column, tags_column, tag_scheme, invalid_tags],
            optional [train_file, validation_file, test_file, id_column, score_column, conll_tag_column],
            by_hand [score_labels]);
        if !score_labels.is_empty() {
            config.score_labels = score_labels;
        }
    }
}
