//! kiln's pipeline configuration.
//!
//! One TOML file drives a run, with one section per stage. Every key has a
//! default here (the one place defaults live), every key can be overridden by a
//! command-line flag of the stage that reads it ([`cli`]), and unknown keys or
//! wrong types are errors that name the file and the key.
//!
//! Relative paths in a config are relative to the directory the stage runs in
//! (the repo root under `make` and `dvc repro`).

pub mod cli;
pub mod reference;
mod score;
mod tune;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use kiln_core::entities::Aggregation;
pub use kiln_core::entities::{InvalidTags, TagScheme};
pub use kiln_core::{Metric, Quantize, Split, Task};
use serde::{Deserialize, Serialize};

pub use score::{ScoreOp, ScoreRule};
pub use tune::{ParamSpec, PrunerKind, SamplerKind, TuneConfig, parse_space_entry};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The underlying errors are part of the message, not `#[source]`s: their text
    // (a TOML snippet pointing at the key) is the useful part and should print once.
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path} is not valid: {error}")]
    Parse { path: PathBuf, error: Box<toml::de::Error> },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.to_owned(), message: message.into() }
    }
}

/// The whole pipeline's settings: one section per stage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// A label per text or a tag per word; every stage follows it (`--task`).
    pub task: Task,
    pub ingest: IngestConfig,
    pub clean: CleanConfig,
    pub tokenize: TokenizeConfig,
    pub profile: ProfileConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub export: ExportConfig,
    pub predict: PredictConfig,
    pub serve: ServeConfig,
    pub track: TrackConfig,
    pub registry: RegistryConfig,
    pub monitor: MonitorConfig,
    pub gate: GateConfig,
    pub retrain: RetrainConfig,
    pub tune: TuneConfig,
}

impl PipelineConfig {
    /// Reads `path`, or the built-in defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        Self::from_toml(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), error: Box::new(error) })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every config value is representable in TOML. This is a bug.")
    }

    /// The file each pipeline stage writes last, by stage: the stage is done
    /// exactly when it exists (`make`'s targets).
    pub fn done_files(&self) -> BTreeMap<&'static str, PathBuf> {
        use kiln_core::stages::*;
        BTreeMap::from([
            ("ingest", self.ingest.output_dir.join(INGEST_DONE)),
            ("clean", self.clean.output_dir.join(CLEAN_DONE)),
            ("tokenize", self.tokenize.output_dir.join(TOKENIZE_DONE)),
            ("profile", self.profile.output_dir.join(PROFILE_DONE)),
            ("train", self.train.run_dir.join(TRAIN_DONE)),
            ("eval", self.eval.output_dir.join(EVAL_DONE)),
            ("export", self.export.output_dir.join(EXPORT_DONE)),
            ("registry", self.registry.dir.join(REGISTRY_DONE)),
        ])
    }

    /// [`Self::done_files`] as a TOML table of `stage = "path"`.
    pub fn done_files_toml(&self) -> String {
        let table: BTreeMap<&str, String> =
            self.done_files().into_iter().map(|(stage, path)| (stage, path.display().to_string())).collect();
        toml::to_string(&table).expect("a table of strings is TOML. This is a bug.")
    }

    /// The settings with secrets left out, for terminals, logs and run records.
    pub fn redacted(&self) -> Self {
        let mut config = self.clone();
        for token in &mut config.serve.api_tokens {
            // The name tells which token; the rest may be the secret.
            *token = match token.split_once(':') {
                Some((name, _)) => format!("{name}:<redacted>"),
                None => "<redacted>".into(),
            };
        }
        if let Some(uri) = &mut config.track.mlflow_tracking_uri {
            *uri = without_credentials(uri);
        }
        config
    }
}

/// A URL with any user name and password removed (they may be credentials).
pub fn without_credentials(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => uri.to_owned(),
    }
}

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

/// `[ingest]`: read raw labelled text, map columns, split, write `data/raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Training data (or all data, when no test file is given).
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

/// How `train` weighs each class in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeights {
    /// Every example counts the same.
    #[default]
    None,
    /// Weight n / (classes * count): rare classes count as much as common ones in total.
    InverseFrequency,
}

/// The loss `train` minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum TrainLoss {
    #[default]
    CrossEntropy,
    /// `-(1 - p)^focal_gamma ln p`: easy examples (the many `O` words) count
    /// less, hard ones (rare entity types) more.
    Focal,
}

/// `[train]`: fine-tune a pre-trained encoder with a classification head.
///
/// The defaults follow Hugging Face `Trainer` fine-tuning (AdamW, lr 5e-5, decay
/// 0.01, linear warm-up then decay, clip at norm 1.0), sized so the default
/// config trains in minutes on a laptop CPU. On a GPU: `--device cuda`, and more
/// epochs or a larger batch as the data calls for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `tokenize`'s output: train/validation.parquet, labels.json.
    pub input_dir: PathBuf,
    /// The pre-trained Hugging Face model folder (config.json, model.safetensors, tokenizer.json).
    pub model_dir: PathBuf,
    /// Where the fine-tuned model goes: a folder `eval`, `export`, `predict` and `serve` load.
    pub output_dir: PathBuf,
    /// Training run files: metrics.jsonl, the resumable checkpoint, the summary.
    pub run_dir: PathBuf,
    /// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// LibTorch CPU threads; 0 lets LibTorch pick (all cores).
    pub threads: usize,
    /// Seeds the head's initialisation, the batch order and dropout.
    pub seed: u64,
    pub epochs: usize,
    /// Stop after this many optimizer steps (0: run all epochs).
    pub max_steps: usize,
    /// Train on this seeded, stratified share of the training split (the
    /// validation split stays whole); `tune` trials use it for a cheaper search.
    pub data_fraction: f64,
    /// Examples per forward/backward pass.
    pub batch_size: usize,
    /// Batches whose gradients add up to one optimizer step (effective batch = batch_size x this).
    pub gradient_accumulation: usize,
    /// Peak learning rate, reached after warm-up.
    pub learning_rate: f64,
    /// Share of the optimizer steps spent warming up linearly from 0; then linear decay to 0.
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay (not applied to biases and LayerNorm).
    pub weight_decay: f64,
    pub adam_epsilon: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    pub class_weights: ClassWeights,
    pub loss: TrainLoss,
    /// Focal loss' focusing exponent (0 is cross-entropy).
    pub focal_gamma: f64,
    /// Also validate every N optimizer steps (0: only at the end of each epoch).
    pub eval_every_steps: usize,
    /// Also checkpoint every N optimizer steps (0: only at the end of each epoch).
    pub checkpoint_every_steps: usize,
    /// Write a training-loss record to metrics.jsonl every N optimizer steps.
    pub log_every_steps: usize,
    /// Batch size for validation passes (no gradients, so larger fits).
    pub eval_batch_size: usize,
    /// Validation metric that picks the best model and drives early stopping.
    pub metric: Metric,
    /// Stop after this many validations without improvement (0: never stop early).
    pub patience: usize,
    /// Continue from the checkpoint in run_dir instead of starting over.
    pub resume: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            input_dir: "data/processed".into(),
            model_dir: "models/pretrained/all-MiniLM-L6-v2".into(),
            output_dir: "artifacts/model".into(),
            run_dir: "artifacts/train".into(),
            device: "auto".into(),
            threads: 0,
            seed: 42,
            epochs: 3,
            max_steps: 0,
            data_fraction: 1.0,
            batch_size: 32,
            gradient_accumulation: 1,
            learning_rate: 5e-5,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            class_weights: ClassWeights::None,
            loss: TrainLoss::CrossEntropy,
            focal_gamma: 2.0,
            eval_every_steps: 0,
            checkpoint_every_steps: 0,
            log_every_steps: 10,
            eval_batch_size: 64,
            metric: Metric::MacroF1,
            patience: 0,
            resume: false,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("train.epochs", self.epochs),
            ("train.batch_size", self.batch_size),
            ("train.gradient_accumulation", self.gradient_accumulation),
            ("train.log_every_steps", self.log_every_steps),
            ("train.eval_batch_size", self.eval_batch_size),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ConfigError::invalid(
                "train.learning_rate",
                format!("must be positive, got {}", self.learning_rate),
            ));
        }
        if !(self.data_fraction > 0.0 && self.data_fraction <= 1.0) {
            return Err(ConfigError::invalid(
                "train.data_fraction",
                format!("must be in (0, 1], got {}", self.data_fraction),
            ));
        }
        if !(self.focal_gamma.is_finite() && self.focal_gamma >= 0.0) {
            return Err(ConfigError::invalid(
                "train.focal_gamma",
                format!("must be 0 or more, got {}", self.focal_gamma),
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(ConfigError::invalid(
                "train.warmup_ratio",
                format!("must be in [0, 1), got {}", self.warmup_ratio),
            ));
        }
        for (key, value) in [
            ("train.weight_decay", self.weight_decay),
            ("train.max_grad_norm", self.max_grad_norm),
            ("train.adam_epsilon", self.adam_epsilon),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::invalid(key, format!("must be zero or positive, got {value}")));
            }
        }
        Ok(())
    }
}

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
    pub batch_size: usize,
    /// How many classes and mistakes the report lists.
    pub report_top: usize,
    /// The split whose predictions (label mix, confidence, a fitted
    /// temperature) become the model's reference for monitoring.
    pub reference_split: Split,
    /// A top probability below this is a low-confidence prediction.
    pub low_confidence: f64,
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
            batch_size: 64,
            report_top: 10,
            reference_split: Split::Validation,
            low_confidence: 0.5,
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

/// `[track]`: the run record every `train` and `eval` run leaves, which `runs`
/// lists and compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackConfig {
    /// Each run's record goes to `<runs_dir>/<run-id>/`.
    pub runs_dir: PathBuf,
    /// An MLflow tracking server (http or https) that each run is also logged
    /// to. A server that cannot be reached costs a warning, never the run.
    pub mlflow_tracking_uri: Option<String>,
    /// The MLflow experiment the runs go to; created when missing.
    pub mlflow_experiment: String,
    /// Extra tags for the run record (and MLflow): `tune` tags its trials with
    /// the study and trial, and `mlflow.parentRunId` nests them under the study.
    pub tags: BTreeMap<String, String>,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self {
            runs_dir: "artifacts/runs".into(),
            mlflow_tracking_uri: None,
            mlflow_experiment: "kiln".into(),
            tags: BTreeMap::new(),
        }
    }
}

/// `[registry]`: numbered versions of exported models, each a `candidate`,
/// the one `production` model (what `serve` serves) or `archived`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Holds `registry.json`, a `v<N>/` folder per version and the `production` link.
    pub dir: PathBuf,
    /// The export that `registry add` records as a new version.
    pub model_dir: PathBuf,
    /// What `promote` compares with production on the same test data.
    pub metric: Metric,
    /// Make the first version production, so there is a model to serve at once.
    pub promote_first: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            dir: "artifacts/registry".into(),
            model_dir: "artifacts/export".into(),
            metric: Metric::MacroF1,
            promote_first: true,
        }
    }
}

/// `[export]`: a Hugging Face-compatible folder of the trained model, with a model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// `train`'s model folder.
    pub model_dir: PathBuf,
    pub output_dir: PathBuf,
    /// `eval`'s metrics, quoted in the model card (left out when absent).
    pub eval_metrics: PathBuf,
    /// `eval`'s reference predictions, carried as `reference_predictions.json`
    /// (left out when absent): monitoring's baseline for prediction drift.
    pub reference_predictions: PathBuf,
    /// `profile`'s profile of the training data, carried as `data_profile.json`
    /// (left out when absent): the reference monitoring compares traffic with.
    pub data_profile: PathBuf,
    /// Replace an existing export folder (otherwise refused).
    pub force: bool,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            model_dir: "artifacts/model".into(),
            output_dir: "artifacts/export".into(),
            eval_metrics: Path::new("artifacts/eval").join(kiln_core::EvalMetrics::FILE),
            reference_predictions: Path::new("artifacts/eval").join(kiln_core::model_folder::REFERENCE_PREDICTIONS),
            data_profile: Path::new("artifacts/profile").join(kiln_core::profile::DataProfile::FILE),
            force: false,
        }
    }
}

/// `predict`: batch inference over a file of texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictConfig {
    /// Texts to classify: CSV, TSV, JSONL or Parquet, read as `ingest` reads.
    pub input_file: Option<PathBuf>,
    pub format: InputFormat,
    pub has_header: bool,
    pub quoting: bool,
    pub text_column: String,
    /// Column with a stable row id, copied to the output; without one, `<file stem>-<row>`.
    pub id_column: Option<String>,
    /// A model folder: `train`'s output, an export, or a Hugging Face classifier.
    pub model_dir: PathBuf,
    /// Parquet with id, predicted label and probability (and the top-k when asked).
    pub output_file: PathBuf,
    /// Also write the k most likely labels and their probabilities (0: only the best).
    pub top_k: usize,
    /// Token classification: how sub-words group into entities, as transformers'
    /// token-classification pipeline's `aggregation_strategy`.
    pub aggregation: Aggregation,
    /// Texts cleaned, tokenized and predicted per chunk (bounds the working memory).
    pub chunk_rows: usize,
    pub batch_size: usize,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// LibTorch CPU threads; 0 lets LibTorch pick.
    pub threads: usize,
    /// `int8`: dynamic int8 linear layers on the CPU (faster, about the same accuracy).
    pub quantize: Quantize,
    /// Batch prediction over many processes or pods: this one predicts part
    /// `shard_index` of `shard_count` (Parquet row groups, or every
    /// `shard_count`-th chunk of a text file) into
    /// `<output stem>.parts/part-<index>-of-<count>.parquet`; `predict --merge`
    /// joins the parts into `output_file`. 1 predicts the whole file.
    pub shard_count: usize,
    pub shard_index: usize,
}

impl Default for PredictConfig {
    fn default() -> Self {
        Self {
            input_file: None,
            format: InputFormat::Auto,
            has_header: true,
            quoting: true,
            text_column: "text".into(),
            id_column: None,
            model_dir: "artifacts/model".into(),
            output_file: "artifacts/predictions.parquet".into(),
            top_k: 0,
            aggregation: Aggregation::Simple,
            chunk_rows: 4096,
            batch_size: 64,
            device: "auto".into(),
            threads: 0,
            quantize: Quantize::None,
            shard_count: 1,
            shard_index: 0,
        }
    }
}

impl PredictConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.input_file.is_none() {
            return Err(ConfigError::invalid("predict.input_file", "no input file given (pass --input-file)"));
        }
        for (key, value) in [
            ("predict.chunk_rows", self.chunk_rows),
            ("predict.batch_size", self.batch_size),
            ("predict.shard_count", self.shard_count),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        self.shard()?;
        Ok(())
    }

    /// The part of the input this process predicts.
    pub fn shard(&self) -> Result<Shard, ConfigError> {
        Shard::new(self.shard_index, self.shard_count).ok_or_else(|| {
            ConfigError::invalid(
                "predict.shard_index",
                format!(
                    "is {} but must be below predict.shard_count ({}); shards count from 0",
                    self.shard_index, self.shard_count
                ),
            )
        })
    }

    /// Where shard `index` of `count` writes its part: a folder beside the
    /// output file, named after it, that `predict --merge` reads.
    pub fn part_file(&self, shard: Shard) -> PathBuf {
        self.parts_dir().join(format!("part-{}-of-{}.parquet", shard.index, shard.count))
    }

    pub fn parts_dir(&self) -> PathBuf {
        let stem =
            self.output_file.file_stem().map_or_else(|| "predictions".into(), |s| s.to_string_lossy().into_owned());
        self.output_file.with_file_name(format!("{stem}.parts"))
    }
}

/// Part `index` (from 0) of `count` equal shares of an input, for batch
/// prediction spread over processes (a Kubernetes Indexed Job's pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole input.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `None` unless `index < count`.
    pub fn new(index: usize, count: usize) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    /// Whether the `n`-th piece (chunk or row group, from 0) of an input is this shard's.
    pub fn owns(&self, n: usize) -> bool {
        n % self.count == self.index
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What the prediction log keeps of each text: all of it, only its sha256
/// (privacy: no text leaves the request), or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogText {
    Full,
    Hash,
    None,
}

/// `[serve]`: the HTTP service (`serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on; `0.0.0.0` to accept connections from other machines
    /// (which needs API tokens, or `allow_unauthenticated`).
    pub host: String,
    /// 0 picks a free port (the log says which).
    pub port: u16,
    /// Serve `/metrics` on this port instead, without auth (for a scraper on an internal network).
    pub metrics_port: Option<u16>,
    /// A model folder: an export, `train`'s output, or a Hugging Face classifier.
    pub model_dir: PathBuf,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// LibTorch CPU threads; 0 lets LibTorch pick.
    pub threads: usize,
    /// `int8`: dynamic int8 linear layers on the CPU (faster, about the same accuracy).
    pub quantize: Quantize,
    /// Most texts the model runs together.
    pub max_batch_size: usize,
    /// Most tokens (summed over texts) the model runs together.
    pub max_batch_tokens: usize,
    /// How long a batch waits for more requests once one arrived. 0: take what
    /// is queued and go (batches still form under load, while the model is busy).
    pub max_wait_ms: u64,
    /// Most texts in one request (413 above).
    pub max_client_batch: usize,
    /// Most requests waiting for the model (429 above).
    pub max_queue: usize,
    /// Most bytes of text waiting for the model, summed over the queued
    /// requests (429 above): the queue's memory, whatever the requests' sizes.
    pub max_queue_bytes: usize,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Texts are cut to this many characters before tokenizing. `None`: 32 per
    /// token of the model's `max_length` (the model reads no further).
    pub max_text_chars: Option<usize>,
    /// API tokens, each `token` or `name:token[:scopes]` (scopes: `predict`,
    /// `feedback`, `admin`, comma-separated; default `predict,feedback`).
    /// Prefer `api_tokens_file`: a token here or in a flag can be read by others.
    pub api_tokens: Vec<String>,
    /// A file of API tokens, one `name:token[:scopes]` a line (`#` comments);
    /// read at start and again on every reload.
    pub api_tokens_file: Option<PathBuf>,
    /// Listen on a non-loopback address without any token: anyone who reaches
    /// the port may predict, send feedback and reload. Off, `serve` refuses to start so.
    pub allow_unauthenticated: bool,
    /// Requests per second one client (token, or address when open) may send
    /// to `/v1/predict`; 0: no limit. Above it: 429 with `Retry-After`.
    pub predict_rate_limit: f64,
    /// The same for `/v1/feedback`.
    pub feedback_rate_limit: f64,
    /// Requests a client may send at once before its rate limit applies.
    pub rate_limit_burst: u32,
    /// A client must send a request's headers within this time of the
    /// connection's waiting for them (a kept-alive connection waits this long
    /// for its next request), or it is closed.
    pub header_timeout_ms: u64,
    /// The longest a request may take, body included (408 after).
    pub request_timeout_ms: u64,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout_ms: u64,
    /// Most open connections; more wait in the OS's backlog until one closes.
    pub max_connections: usize,
    /// On SIGTERM, the longest to wait for requests in flight before closing the rest.
    pub shutdown_timeout_ms: u64,
    /// The key that signs request ids (feedback must quote one this server
    /// issued) and keys `retrain`'s holdout; created (0600) when missing.
    /// `None`: `<log_dir>/.kiln-signing-key`, shared by replicas sharing the log.
    pub signing_key_file: Option<PathBuf>,
    /// Most entities in one feedback (422 above).
    pub max_feedback_entities: usize,
    /// Append every prediction (and feedback) as JSON lines under `log_dir`.
    pub log_predictions: bool,
    pub log_dir: PathBuf,
    /// What the log keeps of a text: `full`, `hash` (sha256) or `none`.
    pub log_text: LogText,
    /// A log file is closed and a new one started past this size.
    pub log_rotate_bytes: u64,
    /// Most bytes of records waiting for the log's writer; more are dropped and counted.
    pub log_queue_bytes: usize,
    /// Completed log files are deleted, oldest first, while the folder holds
    /// more than this many bytes of them; 0: no limit.
    pub log_retention_bytes: u64,
    /// Completed log files older than this many days are deleted; 0: kept.
    pub log_retention_days: u64,
    /// Token classification: how sub-words group into entities when a request
    /// does not say (`aggregation_strategy`), as transformers' pipeline does.
    pub aggregation: Aggregation,
    /// Reload the model when its folder changes.
    pub watch: bool,
    /// How often the folder is checked when `watch` is on.
    pub watch_interval_ms: u64,
}

/// Characters per token of `max_length` that texts are cut to when
/// `max_text_chars` is not set: WordPiece tokens average about 4 characters
/// of English, so the model's window ends well before the cut.
pub const TEXT_CHARS_PER_TOKEN: usize = 32;

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            metrics_port: None,
            model_dir: "artifacts/registry/production".into(),
            device: "auto".into(),
            threads: 0,
            quantize: Quantize::None,
            max_batch_size: 32,
            max_batch_tokens: 16384,
            max_wait_ms: 0,
            max_client_batch: 64,
            max_queue: 512,
            max_queue_bytes: 64 << 20,
            max_body_bytes: 1 << 20,
            max_text_chars: None,
            api_tokens: Vec::new(),
            api_tokens_file: None,
            allow_unauthenticated: false,
            predict_rate_limit: 0.0,
            feedback_rate_limit: 20.0,
            rate_limit_burst: 50,
            header_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            shutdown_timeout_ms: 30_000,
            signing_key_file: None,
            max_feedback_entities: 256,
            log_predictions: true,
            log_dir: "artifacts/serve/log".into(),
            log_text: LogText::Full,
            log_rotate_bytes: 64 << 20,
            log_queue_bytes: 64 << 20,
            log_retention_bytes: 4 << 30,
            log_retention_days: 30,
            aggregation: Aggregation::Simple,
            watch: false,
            watch_interval_ms: 2000,
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("serve.max_batch_size", self.max_batch_size as u64),
            ("serve.max_batch_tokens", self.max_batch_tokens as u64),
            ("serve.max_client_batch", self.max_client_batch as u64),
            ("serve.max_queue", self.max_queue as u64),
            ("serve.max_queue_bytes", self.max_queue_bytes as u64),
            ("serve.max_body_bytes", self.max_body_bytes as u64),
            ("serve.max_text_chars", self.max_text_chars.unwrap_or(1) as u64),
            ("serve.max_connections", self.max_connections as u64),
            ("serve.log_queue_bytes", self.log_queue_bytes as u64),
            ("serve.header_timeout_ms", self.header_timeout_ms),
            ("serve.request_timeout_ms", self.request_timeout_ms),
            ("serve.idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("serve.predict_rate_limit", self.predict_rate_limit),
            ("serve.feedback_rate_limit", self.feedback_rate_limit),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::invalid(
                    key,
                    "must be 0 (no limit) or a positive number of requests a second",
                ));
            }
        }
        if self.rate_limit_burst == 0 {
            return Err(ConfigError::invalid("serve.rate_limit_burst", "must be at least 1"));
        }
        if self.watch && self.watch_interval_ms == 0 {
            return Err(ConfigError::invalid("serve.watch_interval_ms", "must be at least 1 when watch is on"));
        }
        for (line, entry) in self.api_tokens.iter().enumerate() {
            ApiToken::parse(entry, &format!("token-{}", line + 1)).map_err(|message| {
                ConfigError::invalid("serve.api_tokens", format!("entry {}: {message}", line + 1))
            })?;
        }
        Ok(())
    }

    /// The characters a text is cut to for a model that reads `max_length` tokens.
    pub fn text_chars_for(&self, max_length: usize) -> usize {
        self.max_text_chars.unwrap_or_else(|| max_length.max(1).saturating_mul(TEXT_CHARS_PER_TOKEN))
    }

    /// The request-id signing key's file.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| self.log_dir.join(SIGNING_KEY))
    }

    /// Every API token: `api_tokens` then the lines of `api_tokens_file`. An
    /// error names the file and line (never the token).
    pub fn load_api_tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let mut tokens = Vec::new();
        for (line, entry) in self.api_tokens.iter().enumerate() {
            let token = ApiToken::parse(entry, &format!("token-{}", line + 1)).map_err(|message| {
                ConfigError::invalid("serve.api_tokens", format!("entry {}: {message}", line + 1))
            })?;
            tokens.push(token);
        }
        if let Some(path) = &self.api_tokens_file {
            let text =
                std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if !line.contains(':') {
                    return Err(ConfigError::invalid(
                        "serve.api_tokens_file",
                        format!("{} line {}: expected `name:token[:scopes]`", path.display(), number + 1),
                    ));
                }
                let token = ApiToken::parse(line, "").map_err(|message| {
                    ConfigError::invalid(
                        "serve.api_tokens_file",
                        format!("{} line {}: {message}", path.display(), number + 1),
                    )
                })?;
                tokens.push(token);
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for token in &tokens {
            if !names.insert(token.name.as_str()) {
                return Err(ConfigError::invalid(
                    "serve.api_tokens",
                    format!("the token name '{}' is given twice: names tell clients apart in the log", token.name),
                ));
            }
        }
        Ok(tokens)
    }
}

/// The file name of the request-id signing key in the log folder, by default.
pub const SIGNING_KEY: &str = ".kiln-signing-key";

/// What a token may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `/v1/predict`, `/v1/model`, `/openapi.json` and `/metrics` on the API port.
    Predict,
    /// `/v1/feedback`.
    Feedback,
    /// `/admin/reload`.
    Admin,
}

impl Scope {
    pub const DEFAULT: [Scope; 2] = [Scope::Predict, Scope::Feedback];

    pub fn name(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::Feedback => "feedback",
            Self::Admin => "admin",
        }
    }
}

/// One API token with the name the logs know it by.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken").field("name", &self.name).field("scopes", &self.scopes).finish_non_exhaustive()
    }
}

impl ApiToken {
    /// `token` (named `default_name`, default scopes) or `name:token[:scopes]`.
    /// Errors never quote the token.
    pub fn parse(entry: &str, default_name: &str) -> Result<Self, String> {
        let mut parts = entry.split(':');
        let (name, token, scopes) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(token), None, None, None) => (default_name, token, None),
            (Some(name), Some(token), scopes, None) => (name, token, scopes),
            _ => return Err("expected `token` or `name:token[:scopes]` (a token cannot contain ':')".into()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) || name.len() > 64
        {
            return Err(format!("the name {name:?} must be 1 to 64 letters, digits or -_.@"));
        }
        if token.trim() != token || token.is_empty() {
            return Err(format!(
                "the token of '{name}' is empty or has surrounding spaces ({} characters)",
                token.len()
            ));
        }
        if token.chars().count() < 16 {
            return Err(format!(
                "the token of '{name}' has {} characters; use at least 16 (e.g. `openssl rand -hex 32`)",
                token.chars().count()
            ));
        }
        let scopes = match scopes {
            None => Scope::DEFAULT.to_vec(),
            Some(list) => {
                let mut scopes = Vec::new();
                for scope in list.split(',').map(str::trim) {
                    scopes.push(match scope {
                        "predict" => Scope::Predict,
                        "feedback" => Scope::Feedback,
                        "admin" => Scope::Admin,
                        other => {
                            return Err(format!(
                                "unknown scope {other:?} for '{name}': use predict, feedback or admin, comma-separated"
                            ));
                        }
                    });
                }
                scopes.sort();
                scopes.dedup();
                scopes
            }
        };
        Ok(Self { name: name.to_owned(), token: token.to_owned(), scopes })
    }
}

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
        Ok(())
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

/// The settings a trained model was made with, saved beside its weights as
/// `kiln.toml`: `predict` and `serve` clean and tokenize text exactly as
/// training did, so training and serving cannot drift apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// What the model predicts: a label per text, or a tag per word.
    #[serde(default)]
    pub task: Task,
    /// How texts were cleaned; absent when the data did not go through `clean`.
    pub clean: Option<CleanConfig>,
    pub tokenize: TokenizeConfig,
    pub train: TrainConfig,
}

impl ModelSettings {
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every config value is representable in TOML. This is a bug.")
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), error: Box::new(error) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(PipelineConfig::from_toml("").expect("parses"), PipelineConfig::default());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = PipelineConfig::default();
        assert_eq!(PipelineConfig::from_toml(&config.to_toml()).expect("parses"), config);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let error = PipelineConfig::from_toml("[clean]\nstrip_url = true\n").expect_err("unknown key");
        let message = error.to_string();
        assert!(message.contains("strip_url"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let error = PipelineConfig::from_toml("[ingets]\nseed = 1\n").expect_err("unknown section");
        assert!(error.to_string().contains("ingets"), "{error}");
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let error = PipelineConfig::from_toml("[ingest]\nseed = \"abc\"\n").expect_err("wrong type");
        let message = error.to_string();
        assert!(message.contains("seed"), "{message}");
        assert!(message.contains("integer") || message.contains("u64"), "{message}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[tokenize]\nmax_lenght = 3\n").expect("write");
        let message = PipelineConfig::load(Some(&path)).expect_err("bad").to_string();
        assert!(message.contains("bad.toml") && message.contains("max_lenght"), "{message}");
        let missing = PipelineConfig::load(Some(&dir.path().join("nope.toml"))).expect_err("missing");
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    #[test]
    fn validation_names_keys() {
        let mut ingest = IngestConfig::default();
        assert!(ingest.validate().expect_err("no file").to_string().contains("ingest.train_file"));
        ingest.train_file = Some("x.csv".into());
        ingest.validate().expect("valid");
        ingest.validation_fraction = 1.5;
        assert!(ingest.validate().expect_err("fraction").to_string().contains("validation_fraction"));
        ingest.validation_fraction = 0.5;
        ingest.test_fraction = 0.5;
        assert!(ingest.validate().is_err());
        ingest.test_fraction = 0.1;
        ingest.score_column = Some("score".into());
        assert!(ingest.validate().expect_err("no rules").to_string().contains("score_labels"));
        ingest.score_labels = vec!["positive >> 0".into()];
        assert!(ingest.validate().expect_err("bad rule").to_string().contains("score_labels"));

        let clean = CleanConfig { min_chars: 10, max_chars: 5, ..CleanConfig::default() };
        assert!(clean.validate().is_err());
        let tokenize = TokenizeConfig { max_length: 1, ..TokenizeConfig::default() };
        assert!(tokenize.validate().expect_err("too short").to_string().contains("max_length"));
        let train = TrainConfig { warmup_ratio: 1.0, ..TrainConfig::default() };
        assert!(train.validate().expect_err("warm-up").to_string().contains("train.warmup_ratio"));
        let train = TrainConfig { batch_size: 0, ..TrainConfig::default() };
        assert!(train.validate().expect_err("batch").to_string().contains("train.batch_size"));
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["default.toml", "banking77.toml"] {
            let config = PipelineConfig::load(Some(&root.join(name))).expect(name);
            config.ingest.validate().expect(name);
            config.clean.validate().expect(name);
            config.tokenize.validate().expect(name);
            config.train.validate().expect(name);
            config.eval.validate().expect(name);
            config.serve.validate().expect(name);
            config.monitor.validate().expect(name);
            config.gate.validate().expect(name);
            config.retrain.validate().expect(name);
            config.tune.validate().expect(name);
        }
    }

    #[test]
    fn the_gate_compares_labels_on_a_holdout() {
        GateConfig::default().validate().expect("defaults are valid");
        let loss = GateConfig { metric: Metric::Loss, ..GateConfig::default() };
        assert!(loss.validate().expect_err("loss").to_string().contains("gate.metric"));
        let none = GateConfig { holdout: Vec::new(), ..GateConfig::default() };
        assert!(none.validate().expect_err("no holdout").to_string().contains("gate.holdout"));
        let registry = RegistryConfig::default();
        assert_eq!(GateConfig::default().registry_dir(&registry), registry.dir);
    }

    #[test]
    fn monitor_thresholds_and_durations_are_checked() {
        MonitorConfig::default().validate().expect("defaults are valid");
        let crossed = MonitorConfig { psi_warn: 0.3, psi_alert: 0.2, ..MonitorConfig::default() };
        assert!(crossed.validate().expect_err("warn above alert").to_string().contains("monitor.psi_warn"));
        let duration = MonitorConfig { window_duration: "an hour".into(), ..MonitorConfig::default() };
        assert!(duration.validate().expect_err("not a duration").to_string().contains("monitor.window_duration"));
        let minutes = MonitorConfig { window_duration: "15m".into(), ..MonitorConfig::default() };
        assert_eq!(minutes.window_duration().expect("valid"), std::time::Duration::from_secs(900));
        let resolved = MonitorConfig::default().resolved(&ServeConfig::default(), &RegistryConfig::default());
        assert_eq!(resolved.log_dir.as_deref(), Some(Path::new("artifacts/serve/log")));
        assert_eq!(resolved.model_dir.as_deref(), Some(Path::new("artifacts/registry/production")));
    }

    /// Each stage's default input is the default output of the stage before
    /// it, in the built-in defaults and in every shipped config.
    #[test]
    fn stages_chain_by_default() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let shipped = ["default.toml", "banking77.toml"].map(|name| PipelineConfig::load(Some(&root.join(name))));
        for config in [Ok(PipelineConfig::default())].into_iter().chain(shipped) {
            let c = config.expect("config");
            assert_eq!(c.clean.input_dir, c.ingest.output_dir);
            assert_eq!(c.tokenize.input_dir, c.clean.output_dir);
            assert_eq!(c.train.input_dir, c.tokenize.output_dir);
            assert_eq!((&c.eval.model_dir, &c.eval.input_dir), (&c.train.output_dir, &c.tokenize.output_dir));
            assert_eq!(c.export.model_dir, c.train.output_dir);
            assert_eq!(c.export.eval_metrics, c.eval.output_dir.join("metrics.json"));
            assert_eq!(c.registry.model_dir, c.export.output_dir);
            assert_eq!(c.serve.model_dir, c.registry.dir.join("production"));
        }
    }

    #[test]
    fn done_files_follow_the_output_folders() {
        let mut config = PipelineConfig::default();
        config.eval.output_dir = "out/eval".into();
        let done = config.done_files();
        assert_eq!(done["eval"], Path::new("out/eval/manifest.json"));
        assert_eq!(done["train"], config.train.run_dir.join("train_summary.json"));
        assert_eq!(done["profile"], Path::new("artifacts/profile/manifest.json"));
        assert_eq!(done.len(), 8);
        let table: toml::Table = config.done_files_toml().parse().expect("TOML");
        assert_eq!(table["export"].as_str(), Some("artifacts/export/kiln_export.json"));
    }
}
