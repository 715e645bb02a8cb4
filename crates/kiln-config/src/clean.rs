//! `[clean]`: the text rules, the same in training and serving.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Task};

/// What `clean` does with `#hashtags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum HashtagMode {
    Keep,
    /// `#great` -> `great`: keeps the word, which often carries the meaning.
    #[default]
    StripSymbol,
    /// Drops the whole tag.
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeNormalization {
    None,
    /// Canonical composition: same text, one byte form.
    #[default]
    Nfc,
    /// Compatibility composition: also folds ligatures, full-width forms, superscripts.
    Nfkc,
}

/// What to do with texts that appear with more than one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// Keep them and list them in the report.
    #[default]
    Report,
    /// Drop every row whose text has conflicting labels.
    Drop,
}

/// `[clean]`: normalise texts, drop empties, duplicates and cross-split leaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanConfig {
    pub input_dir: PathBuf,
    pub output_dir: PathBuf,
    /// Remove http(s):// and www. links.
    pub strip_urls: bool,
    /// Remove @mentions.
    pub strip_mentions: bool,
    pub hashtags: HashtagMode,
    /// Decode HTML entities (`&amp;`) and remove tags (`<br/>`).
    pub strip_html: bool,
    /// Remove control and invisible format characters (zero-width spaces, BOMs,
    /// soft hyphens, U+FFFD); tabs and newlines become spaces.
    pub strip_control: bool,
    /// Turn runs of whitespace into one space and trim both ends.
    pub collapse_whitespace: bool,
    /// Off by default: uncased tokenizers lowercase anyway, cased ones need case.
    pub lowercase: bool,
    pub unicode_normalization: UnicodeNormalization,
    /// Texts shorter than this (in characters, after cleaning) are dropped.
    pub min_chars: usize,
    /// Texts longer than this (in characters, after cleaning) are dropped.
    pub max_chars: usize,
    /// Remove exact duplicates (same text and label) within a split.
    pub dedup: bool,
    /// Remove validation/test rows whose text is in train (and test rows in validation).
    pub drop_leaks: bool,
    pub conflicts: ConflictPolicy,
}

impl Default for CleanConfig {
    fn default() -> Self {
        Self {
            input_dir: "data/raw".into(),
            output_dir: "data/interim".into(),
            strip_urls: true,
            strip_mentions: true,
            hashtags: HashtagMode::StripSymbol,
            strip_html: true,
            strip_control: true,
            collapse_whitespace: true,
            lowercase: false,
            unicode_normalization: UnicodeNormalization::Nfc,
            min_chars: 1,
            max_chars: 5000,
            dedup: true,
            drop_leaks: true,
            conflicts: ConflictPolicy::Report,
        }
    }
}

impl CleanConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Task::SequenceClassification)
    }

    /// As [`Self::validate`], and the rules `task` allows: token
    /// classification cleans one word at a time, and never removes a word.
    pub fn validate_for(&self, task: Task) -> Result<(), ConfigError> {
        if task == Task::TokenClassification && self.hashtags == HashtagMode::Remove {
            return Err(ConfigError::invalid(
                "clean.hashtags",
                "\"remove\" would delete words and shift their tags; for token classification use \"strip_symbol\" or \"keep\"",
            ));
        }
        if self.min_chars > self.max_chars {
            return Err(ConfigError::invalid(
                "clean.min_chars",
                format!("{} is larger than clean.max_chars {}", self.min_chars, self.max_chars),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Clean settings (config section [clean])")]
pub struct CleanArgs {
    /// Folder with ingest's Parquet splits [default: data/raw].
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Where cleaned splits and clean_report.json go [default: data/interim].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Remove http(s):// and www. links [default: true].
    #[arg(long, value_name = "BOOL")]
    pub strip_urls: Option<bool>,
    /// Remove @mentions [default: true].
    #[arg(long, value_name = "BOOL")]
    pub strip_mentions: Option<bool>,
    /// What to do with #hashtags [default: strip-symbol].
    #[arg(long, value_enum)]
    pub hashtags: Option<HashtagMode>,
    /// Decode HTML entities and remove tags [default: true].
    #[arg(long, value_name = "BOOL")]
    pub strip_html: Option<bool>,
    /// Remove control and invisible format characters [default: true].
    #[arg(long, value_name = "BOOL")]
    pub strip_control: Option<bool>,
    /// Collapse runs of whitespace and trim [default: true].
    #[arg(long, value_name = "BOOL")]
    pub collapse_whitespace: Option<bool>,
    /// Lowercase texts [default: false; uncased tokenizers lowercase anyway].
    #[arg(long, value_name = "BOOL")]
    pub lowercase: Option<bool>,
    /// Unicode normalization form [default: nfc].
    #[arg(long, value_enum)]
    pub unicode_normalization: Option<UnicodeNormalization>,
    /// Drop texts with fewer characters, after cleaning [default: 1].
    #[arg(long, value_name = "N")]
    pub min_chars: Option<usize>,
    /// Drop texts with more characters, after cleaning [default: 5000].
    #[arg(long, value_name = "N")]
    pub max_chars: Option<usize>,
    /// Remove exact duplicates (text and label) within a split [default: true].
    #[arg(long, value_name = "BOOL")]
    pub dedup: Option<bool>,
    /// Remove validation/test rows whose text is also in an earlier split [default: true].
    #[arg(long, value_name = "BOOL")]
    pub drop_leaks: Option<bool>,
    /// Texts seen with several labels: report them, or drop them [default: report].
    #[arg(long, value_enum)]
    pub conflicts: Option<ConflictPolicy>,
}

impl CleanArgs {
    pub fn apply(self, config: &mut CleanConfig) {
        apply_overrides!(self, config,
            [input_dir, output_dir, strip_urls, strip_mentions, hashtags, strip_html, strip_control,
             collapse_whitespace, lowercase, unicode_normalization, min_chars, max_chars, dedup,
             drop_leaks, conflicts],
            optional []);
    }
}
