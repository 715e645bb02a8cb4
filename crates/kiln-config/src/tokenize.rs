//! `[tokenize]`: texts (or words) to a model's token ids.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Task};

/// Whether `tokenize` writes a `token_type_ids` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenTypeIds {
    /// When the model's config.json says it has token types (BERT yes, DistilBERT no).
    #[default]
    Auto,
    Include,
    Omit,
}

/// What to do with a validation/test row whose label never occurs in train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnknownLabelPolicy {
    /// Stop, naming the label and the row.
    #[default]
    Error,
    /// Drop the row and count it in the report.
    Drop,
}

/// `[tokenize]`: token ids for the model, and the label list every later stage shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizeConfig {
    pub input_dir: PathBuf,
    pub output_dir: PathBuf,
    /// A Hugging Face model folder with tokenizer.json (and config.json).
    pub model_dir: PathBuf,
    /// Longer texts are truncated to this many tokens, [CLS] and [SEP] included.
    pub max_length: usize,
    pub token_type_ids: TokenTypeIds,
    pub unknown_labels: UnknownLabelPolicy,
    /// Token classification: sub-words after a word's first get its label too
    /// (`B-` turned into `I-`), not ignored by the loss (transformers' `label_all_tokens`).
    pub label_all_tokens: bool,
    /// Token classification: a sentence longer than `max_length` is split into
    /// overlapping windows of whole words, or truncated (its cut words counted).
    pub long_sentences: LongSentences,
    /// Token classification: sub-words a window shares with the one before, at most.
    pub window_overlap: usize,
}

/// What `tokenize` does with a sentence longer than `max_length` (token classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LongSentences {
    /// Overlapping windows of whole words, each labelled; eval reads each word from one.
    #[default]
    Window,
    /// Cut at `max_length`; the words cut off are counted in the report.
    Truncate,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        Self {
            input_dir: "data/interim".into(),
            output_dir: "data/processed".into(),
            model_dir: "models/pretrained/all-MiniLM-L6-v2".into(),
            max_length: 128,
            token_type_ids: TokenTypeIds::Auto,
            unknown_labels: UnknownLabelPolicy::Error,
            label_all_tokens: false,
            long_sentences: LongSentences::Window,
            window_overlap: 32,
        }
    }
}

impl TokenizeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Task::SequenceClassification)
    }

    /// As [`Self::validate`], and the window settings when `task` uses them.
    pub fn validate_for(&self, task: Task) -> Result<(), ConfigError> {
        if self.max_length < 2 {
            return Err(ConfigError::invalid(
                "tokenize.max_length",
                format!("must leave room for [CLS] and [SEP] (at least 2), got {}", self.max_length),
            ));
        }
        let windows = task == Task::TokenClassification && self.long_sentences == LongSentences::Window;
        if windows && self.window_overlap * 2 > self.max_length {
            return Err(ConfigError::invalid(
                "tokenize.window_overlap",
                format!(
                    "{} is more than half of max_length {}: windows would barely move",
                    self.window_overlap, self.max_length
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Tokenize settings (config section [tokenize])")]
pub struct TokenizeArgs {
    /// Folder with clean's Parquet splits [default: data/interim].
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Where token ids, labels.json and tokenize_report.json go [default: data/processed].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Hugging Face model folder with tokenizer.json [default: models/pretrained/all-MiniLM-L6-v2].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Truncate to this many tokens, special tokens included [default: 128].
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// Write token_type_ids [default: auto, from the model's config.json].
    #[arg(long, value_enum)]
    pub token_type_ids: Option<TokenTypeIds>,
    /// Validation/test labels never seen in train: error, or drop the rows [default: error].
    #[arg(long, value_enum)]
    pub unknown_labels: Option<UnknownLabelPolicy>,
    /// Token classification: label every sub-word of a word, not just the first [default: false].
    #[arg(long, value_name = "BOOL")]
    pub label_all_tokens: Option<bool>,
    /// Token classification: sentences over max_length become overlapping windows, or are truncated [default: window].
    #[arg(long, value_enum)]
    pub long_sentences: Option<LongSentences>,
    /// Token classification: sub-words a window shares with the one before, at most [default: 32].
    #[arg(long, value_name = "N")]
    pub window_overlap: Option<usize>,
}

impl TokenizeArgs {
    pub fn apply(self, config: &mut TokenizeConfig) {
        apply_overrides!(self, config,
            [input_dir, output_dir, model_dir, max_length, token_type_ids, unknown_labels, label_all_tokens,
             long_sentences, window_overlap],
            optional []);
    }
}
