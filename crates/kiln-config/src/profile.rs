//! `[profile]`: what the data looks like, and the reference `monitor` compares traffic with.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, InputFormat, TokenizeConfig};

/// `[profile]`: what the data looks like (rows, labels, lengths, truncation,
/// unknown tokens, duplicates, odd texts, frequent tokens per label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// A folder with train/validation/test.parquet: raw, cleaned or tokenized.
    pub input_dir: PathBuf,
    /// Profile one file instead (CSV, TSV, JSONL or Parquet, read as `ingest` reads).
    pub input_file: Option<PathBuf>,
    pub format: InputFormat,
    pub has_header: bool,
    pub quoting: bool,
    pub text_column: String,
    /// `None`: an unlabelled file.
    pub label_column: Option<String>,
    pub output_dir: PathBuf,
    /// Tokenizer folder; `None` = `[tokenize] model_dir`.
    pub model_dir: Option<PathBuf>,
    /// Truncation length; `None` = `[tokenize] max_length`.
    pub max_length: Option<usize>,
    pub histogram_bins: usize,
    /// Tokens listed per label.
    pub top_tokens: usize,
    /// Odd texts shown per kind.
    pub examples: usize,
    /// A text with fewer non-space characters than this is near-empty.
    pub near_empty_chars: usize,
    /// A text with more characters than this is very long.
    pub long_chars: usize,
    /// A text with at least this share of punctuation and symbols (of its non-space characters).
    pub punctuation_share: f64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            input_dir: "data/interim".into(),
            input_file: None,
            format: InputFormat::Auto,
            has_header: true,
            quoting: true,
            text_column: "text".into(),
            label_column: None,
            output_dir: "artifacts/profile".into(),
            model_dir: None,
            max_length: None,
            histogram_bins: 32,
            top_tokens: 10,
            examples: 5,
            near_empty_chars: 3,
            long_chars: 2000,
            punctuation_share: 0.5,
        }
    }
}

impl ProfileConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.histogram_bins == 0 {
            return Err(ConfigError::invalid("profile.histogram_bins", "must be at least 1"));
        }
        if !(self.punctuation_share > 0.0 && self.punctuation_share <= 1.0) {
            return Err(ConfigError::invalid(
                "profile.punctuation_share",
                format!("must be in (0, 1], got {}", self.punctuation_share),
            ));
        }
        if self.max_length.is_some_and(|n| n < 2) {
            return Err(ConfigError::invalid("profile.max_length", "must leave room for [CLS] and [SEP] (at least 2)"));
        }
        Ok(())
    }

    /// Fills the settings left to `[tokenize]`: the profile then measures what training will see.
    pub fn resolved(&self, tokenize: &TokenizeConfig) -> Self {
        Self {
            model_dir: Some(self.model_dir.clone().unwrap_or_else(|| tokenize.model_dir.clone())),
            max_length: Some(self.max_length.unwrap_or(tokenize.max_length)),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Profile settings (config section [profile])")]
pub struct ProfileArgs {
    /// Folder with train/validation/test.parquet, raw, cleaned or tokenized [default: data/interim].
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Profile one file instead (CSV, TSV, JSONL or Parquet).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Input file format [default: auto, from the file extension].
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Whether CSV/TSV files have a header row [default: true].
    #[arg(long, value_name = "BOOL")]
    pub has_header: Option<bool>,
    /// Whether `"` quotes CSV/TSV fields [default: true].
    #[arg(long, value_name = "BOOL")]
    pub quoting: Option<bool>,
    /// Column with the text, for --input-file [default: text].
    #[arg(long, value_name = "NAME")]
    pub text_column: Option<String>,
    /// Column with the label, for --input-file [default: none, unlabelled].
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Where profile.json, the plots and report.md go [default: artifacts/profile].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Tokenizer folder [default: [tokenize] model_dir].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Truncation length in tokens [default: [tokenize] max_length].
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// Bins of the length histograms [default: 32].
    #[arg(long, value_name = "N")]
    pub histogram_bins: Option<usize>,
    /// Tokens listed per label [default: 10].
    #[arg(long, value_name = "N")]
    pub top_tokens: Option<usize>,
    /// Odd texts shown per kind [default: 5].
    #[arg(long, value_name = "N")]
    pub examples: Option<usize>,
    /// Fewer non-space characters than this is near-empty [default: 3].
    #[arg(long, value_name = "N")]
    pub near_empty_chars: Option<usize>,
    /// More characters than this is very long [default: 2000].
    #[arg(long, value_name = "N")]
    pub long_chars: Option<usize>,
    /// This share of punctuation or symbols (of non-space characters) or more is odd [default: 0.5].
    #[arg(long, value_name = "FRACTION")]
    pub punctuation_share: Option<f64>,
}

impl ProfileArgs {
    pub fn apply(self, config: &mut ProfileConfig) {
        apply_overrides!(self, config,
            [input_dir, format, has_header, quoting, text_column, output_dir, histogram_bins, top_tokens, examples,
             near_empty_chars, long_chars, punctuation_share],
            optional [input_file, label_column, model_dir, max_length]);
    }
}
