//! Command-line overrides: one flag per config key of the stage that reads it.
//!
//! A stage resolves its settings as built-in defaults < `--config FILE` < flags.
//! `tests::flags_and_keys_match` keeps flags and keys one to one.

use std::path::PathBuf;

use clap::Args;

use crate::{
    Aggregation, ClassWeights, CleanConfig, ConflictPolicy, EvalConfig, ExportConfig, FailOn, GateConfig, HashtagMode,
    IngestConfig, InputFormat, InvalidTags, LogText, LongSentences, Metric, MonitorConfig, NewLabelPolicy, ParamSpec,
    PredictConfig, ProfileConfig, PrunerKind, Quantize, RegistryConfig, RetrainConfig, SamplerKind, ServeConfig, Split,
    TagScheme, TokenTypeIds, TokenizeConfig, TrackConfig, TrainConfig, TrainLoss, TuneConfig, UnicodeNormalization,
    UnknownLabelPolicy, WindowKind,
};

/// Sets each `config` field whose flag was given.
macro_rules! apply_overrides {
    ($args:expr, $config:expr, [$($field:ident),* $(,)?], optional [$($opt:ident),* $(,)?]
     $(, by_hand [$($manual:ident),* $(,)?])?) => {
        // Every flag is named here, or the pattern does not compile: a flag that
        // parses but is never applied (tune's --data-fraction once) cannot recur.
        // `by_hand` flags are bound for the caller to apply.
        let Self { $($field,)* $($opt,)* $($($manual,)*)? } = $args;
        $( if let Some(value) = $field { $config.$field = value; } )*
        $( if let Some(value) = $opt { $config.$opt = Some(value); } )*
    };
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Ingest settings (config section [ingest])")]
pub struct IngestArgs {
    /// Training data file (CSV, TSV, JSONL or Parquet); all data when there is no test file.
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
            [format, has_header, quoting, text_column, label_column, validation_fraction, test_fraction, seed, output_dir,
             tokens_column, tags_column, tag_scheme, invalid_tags],
            optional [train_file, validation_file, test_file, id_column, score_column, conll_tag_column],
            by_hand [score_labels]);
        if !score_labels.is_empty() {
            config.score_labels = score_labels;
        }
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

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Train settings (config section [train])")]
pub struct TrainArgs {
    /// Folder with tokenize's output [default: data/processed].
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// Pre-trained Hugging Face model folder [default: models/pretrained/all-MiniLM-L6-v2].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Where the fine-tuned model folder goes [default: artifacts/model].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Where metrics.jsonl, the checkpoint and the summary go [default: artifacts/train].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N [default: auto = CUDA when LibTorch sees a GPU].
    #[arg(long, value_name = "DEVICE", env = "KILN_DEVICE")]
    pub device: Option<String>,
    /// LibTorch CPU threads, 0 = all cores [default: 0].
    #[arg(long, value_name = "N", env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Seed of the head's initialisation, batch order and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Passes over the training data [default: 3].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Stop after N optimizer steps, 0 = run all epochs [default: 0].
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Train on this seeded, stratified share of the training split [default: 1].
    #[arg(long, value_name = "FRACTION")]
    pub data_fraction: Option<f64>,
    /// Examples per batch [default: 32].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Batches per optimizer step [default: 1].
    #[arg(long, value_name = "N")]
    pub gradient_accumulation: Option<usize>,
    /// Peak learning rate [default: 5e-5].
    #[arg(long, value_name = "LR")]
    pub learning_rate: Option<f64>,
    /// Share of steps for linear warm-up, then linear decay [default: 0.1].
    #[arg(long, value_name = "FRACTION")]
    pub warmup_ratio: Option<f64>,
    /// AdamW weight decay, not on biases and LayerNorm [default: 0.01].
    #[arg(long, value_name = "DECAY")]
    pub weight_decay: Option<f64>,
    /// AdamW epsilon [default: 1e-8].
    #[arg(long, value_name = "EPS")]
    pub adam_epsilon: Option<f64>,
    /// Clip the global gradient norm, 0 = off [default: 1.0].
    #[arg(long, value_name = "NORM")]
    pub max_grad_norm: Option<f64>,
    /// Class weights in the loss [default: none].
    #[arg(long, value_enum)]
    pub class_weights: Option<ClassWeights>,
    /// The loss: cross_entropy, or focal for rare classes [default: cross_entropy].
    #[arg(long, value_enum)]
    pub loss: Option<TrainLoss>,
    /// Focal loss' focusing exponent [default: 2.0].
    #[arg(long, value_name = "GAMMA")]
    pub focal_gamma: Option<f64>,
    /// Also validate every N steps, 0 = once per epoch [default: 0].
    #[arg(long, value_name = "N")]
    pub eval_every_steps: Option<usize>,
    /// Also checkpoint every N steps, 0 = once per epoch [default: 0].
    #[arg(long, value_name = "N")]
    pub checkpoint_every_steps: Option<usize>,
    /// Log the training loss every N steps [default: 10].
    #[arg(long, value_name = "N")]
    pub log_every_steps: Option<usize>,
    /// Batch size for validation [default: 64].
    #[arg(long, value_name = "N")]
    pub eval_batch_size: Option<usize>,
    /// Validation metric that picks the best model [default: macro_f1].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Stop after N validations without improvement, 0 = never [default: 0].
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Continue from the checkpoint in --run-dir [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub resume: Option<bool>,
}

impl TrainArgs {
    pub fn apply(self, config: &mut TrainConfig) {
        apply_overrides!(self, config,
            [input_dir, model_dir, output_dir, run_dir, device, threads, seed, epochs, max_steps, data_fraction, batch_size,
             gradient_accumulation, learning_rate, warmup_ratio, weight_decay, adam_epsilon, max_grad_norm,
             class_weights, loss, focal_gamma, eval_every_steps, checkpoint_every_steps, log_every_steps,
             eval_batch_size, metric, patience, resume],
            optional []);
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
}

impl EvalArgs {
    pub fn apply(self, config: &mut EvalConfig) {
        apply_overrides!(self, config,
            [model_dir, input_dir, split, output_dir, train_metrics, device, threads, batch_size, report_top,
             reference_split, low_confidence],
            optional []);
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Export settings (config section [export])")]
pub struct ExportArgs {
    /// train's model folder [default: artifacts/model].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Where the Hugging Face folder goes [default: artifacts/export].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// eval's metrics.json, quoted in the model card [default: artifacts/eval/metrics.json].
    #[arg(long, value_name = "FILE")]
    pub eval_metrics: Option<PathBuf>,
    /// eval's reference_predictions.json, carried for monitoring [default: artifacts/eval/reference_predictions.json].
    #[arg(long, value_name = "FILE")]
    pub reference_predictions: Option<PathBuf>,
    /// profile's profile.json of the training data, carried as data_profile.json [default: artifacts/profile/profile.json].
    #[arg(long, value_name = "FILE")]
    pub data_profile: Option<PathBuf>,
    /// Replace an existing export folder [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub force: Option<bool>,
}

impl ExportArgs {
    pub fn apply(self, config: &mut ExportConfig) {
        apply_overrides!(self, config, [model_dir, output_dir, eval_metrics, reference_predictions, data_profile, force], optional []);
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Tracking settings (config section [track])")]
pub struct TrackArgs {
    /// Where each train/eval run's record goes, as <runs-dir>/<run-id>/ [default: artifacts/runs].
    #[arg(long, value_name = "DIR", env = "KILN_RUNS_DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Also log each run to this MLflow tracking server (http or https) [default: none].
    #[arg(long, value_name = "URI", env = "MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
    /// MLflow experiment the runs go to, created when missing [default: kiln].
    #[arg(long, value_name = "NAME", env = "MLFLOW_EXPERIMENT_NAME")]
    pub mlflow_experiment: Option<String>,
    /// Extra tag for the run record and MLflow, KEY=VALUE (repeat for several).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

impl TrackArgs {
    pub fn apply(self, config: &mut TrackConfig) {
        apply_overrides!(self, config, [runs_dir, mlflow_experiment], optional[mlflow_tracking_uri], by_hand[tags]);
        config.tags.extend(tags);
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Registry settings (config section [registry])")]
pub struct RegistryArgs {
    /// The registry: registry.json, v<N>/ folders, the production link [default: artifacts/registry].
    #[arg(long = "registry-dir", value_name = "DIR", env = "KILN_REGISTRY_DIR")]
    pub dir: Option<PathBuf>,
    /// The export that `add` records as a new version [default: artifacts/export].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Metric `promote` compares with production's on the same test data [default: macro_f1].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Make the first version production at once [default: true].
    #[arg(long, value_name = "BOOL")]
    pub promote_first: Option<bool>,
}

impl RegistryArgs {
    pub fn apply(self, config: &mut RegistryConfig) {
        apply_overrides!(self, config, [dir, model_dir, metric, promote_first], optional []);
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Predict settings (config section [predict])")]
pub struct PredictArgs {
    /// Texts to classify (CSV, TSV, JSONL or Parquet).
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
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
    /// Column with a row id copied to the output [default: none, ids are <file stem>-<row>].
    #[arg(long, value_name = "NAME")]
    pub id_column: Option<String>,
    /// Model folder: train's output, an export or a Hugging Face classifier [default: artifacts/model].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Output Parquet file [default: artifacts/predictions.parquet].
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Also write the k most likely labels, 0 = only the best [default: 0].
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Token classification: how sub-words group into entities, as transformers'
    /// pipeline does [default: simple].
    #[arg(long, value_enum)]
    pub aggregation: Option<Aggregation>,
    /// Texts per chunk (bounds working memory) [default: 4096].
    #[arg(long, value_name = "N")]
    pub chunk_rows: Option<usize>,
    /// Examples per model batch [default: 64].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long, value_name = "DEVICE", env = "KILN_DEVICE")]
    pub device: Option<String>,
    /// LibTorch CPU threads, 0 = all cores [default: 0].
    #[arg(long, value_name = "N", env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Run the encoder's linear layers in dynamic int8 on the CPU (the model folder stays fp32) [default: none].
    #[arg(long, value_enum, env = "KILN_QUANTIZE")]
    pub quantize: Option<Quantize>,
    /// Split the input into this many shards, one per process or pod; each
    /// writes <output stem>.parts/part-I-of-N.parquet [default: 1].
    #[arg(long, value_name = "N", env = "KILN_SHARD_COUNT")]
    pub shard_count: Option<usize>,
    /// The shard this process predicts, from 0 (a Kubernetes Indexed Job sets
    /// JOB_COMPLETION_INDEX) [default: 0].
    #[arg(long, value_name = "I", env = "JOB_COMPLETION_INDEX")]
    pub shard_index: Option<usize>,
}

impl PredictArgs {
    pub fn apply(self, config: &mut PredictConfig) {
        apply_overrides!(self, config,
            [format, has_header, quoting, text_column, model_dir, output_file, top_k, aggregation, chunk_rows,
             batch_size, device, threads, quantize, shard_count, shard_index],
            optional [input_file, id_column]);
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Serve settings (config section [serve])")]
pub struct ServeArgs {
    /// Address to listen on; 0.0.0.0 for other machines [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR", env = "KILN_HOST")]
    pub host: Option<String>,
    /// Port; 0 picks a free one [default: 8080].
    #[arg(long, value_name = "PORT", env = "KILN_PORT")]
    pub port: Option<u16>,
    /// Serve /metrics on this port instead, without auth [default: none, on --port].
    #[arg(long, value_name = "PORT", env = "KILN_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Model folder: an export, train's output or a Hugging Face classifier [default: artifacts/registry/production].
    #[arg(long, value_name = "DIR", env = "KILN_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N [default: auto].
    #[arg(long, value_name = "DEVICE", env = "KILN_DEVICE")]
    pub device: Option<String>,
    /// LibTorch CPU threads of the inference thread (start-up and model loading use one), 0 = all cores [default: 0].
    #[arg(long, value_name = "N", env = "KILN_THREADS")]
    pub threads: Option<usize>,
    /// Run the encoder's linear layers in dynamic int8 on the CPU (the model folder stays fp32) [default: none].
    #[arg(long, value_enum, env = "KILN_QUANTIZE")]
    pub quantize: Option<Quantize>,
    /// Most texts the model runs together [default: 32].
    #[arg(long, value_name = "N", env = "KILN_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Most tokens the model runs together [default: 16384].
    #[arg(long, value_name = "N", env = "KILN_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// Milliseconds a batch waits for more requests; 0 = take what is queued [default: 0].
    #[arg(long, value_name = "MS", env = "KILN_MAX_WAIT_MS")]
    pub max_wait_ms: Option<u64>,
    /// Most texts in one request, 413 above [default: 64].
    #[arg(long, value_name = "N", env = "KILN_MAX_CLIENT_BATCH")]
    pub max_client_batch: Option<usize>,
    /// Most requests waiting for the model, 429 above [default: 512].
    #[arg(long, value_name = "N", env = "KILN_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Most bytes of text waiting for the model, 429 above [default: 67108864].
    #[arg(long, value_name = "BYTES", env = "KILN_MAX_QUEUE_BYTES")]
    pub max_queue_bytes: Option<usize>,
    /// Largest request body in bytes, 413 above [default: 1048576].
    #[arg(long, value_name = "BYTES", env = "KILN_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Texts are cut to this many characters before tokenizing [default: 32 per token of the model's max_length].
    #[arg(long, value_name = "N", env = "KILN_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    /// API tokens, comma-separated, each `token` or `name:token[:scopes]`; prefer --api-tokens-file [default: none].
    #[arg(long, value_name = "TOKEN", env = "KILN_API_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub api_tokens: Vec<String>,
    /// File of API tokens, a `name:token[:scopes]` a line (scopes: predict,feedback,admin); re-read on reload [default: none].
    #[arg(long, value_name = "FILE", env = "KILN_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Listen on a non-loopback address with no token: anyone who reaches it may predict, give feedback and reload [default: false].
    #[arg(long, value_name = "BOOL", env = "KILN_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: Option<bool>,
    /// Requests a second one client may send to /v1/predict, 429 above; 0 = no limit [default: 0].
    #[arg(long, value_name = "PER_SECOND", env = "KILN_PREDICT_RATE_LIMIT")]
    pub predict_rate_limit: Option<f64>,
    /// Requests a second one client may send to /v1/feedback, 429 above; 0 = no limit [default: 20].
    #[arg(long, value_name = "PER_SECOND", env = "KILN_FEEDBACK_RATE_LIMIT")]
    pub feedback_rate_limit: Option<f64>,
    /// Requests a client may send at once before its rate limit applies [default: 50].
    #[arg(long, value_name = "N", env = "KILN_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Milliseconds a client has to send a request's headers (and a kept-alive connection waits for the next) [default: 5000].
    #[arg(long, value_name = "MS", env = "KILN_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Milliseconds a request may take, body included, 408 after [default: 30000].
    #[arg(long, value_name = "MS", env = "KILN_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Milliseconds without a byte either way before a connection is closed [default: 60000].
    #[arg(long, value_name = "MS", env = "KILN_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Most open connections; more wait in the OS's backlog [default: 1024].
    #[arg(long, value_name = "N", env = "KILN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// On SIGTERM, milliseconds to wait for requests in flight before closing the rest [default: 30000].
    #[arg(long, value_name = "MS", env = "KILN_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Key that signs request ids and keys retrain's holdout, created when missing [default: <log-dir>/.kiln-signing-key].
    #[arg(long, value_name = "FILE", env = "KILN_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Most entities in one feedback, 422 above [default: 256].
    #[arg(long, value_name = "N", env = "KILN_MAX_FEEDBACK_ENTITIES")]
    pub max_feedback_entities: Option<usize>,
    /// Append each prediction and feedback to JSON lines under --log-dir [default: true].
    #[arg(long, value_name = "BOOL", env = "KILN_LOG_PREDICTIONS")]
    pub log_predictions: Option<bool>,
    /// Folder of the prediction log [default: artifacts/serve/log].
    #[arg(long, value_name = "DIR", env = "KILN_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// What the log keeps of a text: full, hash (sha256) or none [default: full].
    #[arg(long, value_enum, env = "KILN_LOG_TEXT")]
    pub log_text: Option<LogText>,
    /// Start a new log file past this many bytes [default: 67108864].
    #[arg(long, value_name = "BYTES", env = "KILN_LOG_ROTATE_BYTES")]
    pub log_rotate_bytes: Option<u64>,
    /// Most bytes of records waiting for the log writer; more are dropped and counted [default: 67108864].
    #[arg(long, value_name = "BYTES", env = "KILN_LOG_QUEUE_BYTES")]
    pub log_queue_bytes: Option<usize>,
    /// Delete the oldest completed log files while they hold more than this; 0 = no limit [default: 4294967296].
    #[arg(long, value_name = "BYTES", env = "KILN_LOG_RETENTION_BYTES")]
    pub log_retention_bytes: Option<u64>,
    /// Delete completed log files older than this many days; 0 = keep [default: 30].
    #[arg(long, value_name = "DAYS", env = "KILN_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<u64>,
    /// Token classification: how sub-words group into entities when a request does not say [default: simple].
    #[arg(long, value_enum, env = "KILN_AGGREGATION")]
    pub aggregation: Option<Aggregation>,
    /// Reload the model when its folder changes [default: false].
    #[arg(long, value_name = "BOOL", env = "KILN_WATCH")]
    pub watch: Option<bool>,
    /// How often --watch checks the folder, in milliseconds [default: 2000].
    #[arg(long, value_name = "MS", env = "KILN_WATCH_INTERVAL_MS")]
    pub watch_interval_ms: Option<u64>,
}

impl ServeArgs {
    pub fn apply(self, config: &mut ServeConfig) {
        apply_overrides!(
            self,
            config,
            [
                host,
                port,
                model_dir,
                device,
                threads,
                quantize,
                max_batch_size,
                max_batch_tokens,
                max_wait_ms,
                max_client_batch,
                max_queue,
                max_queue_bytes,
                max_body_bytes,
                allow_unauthenticated,
                predict_rate_limit,
                feedback_rate_limit,
                rate_limit_burst,
                header_timeout_ms,
                request_timeout_ms,
                idle_timeout_ms,
                max_connections,
                shutdown_timeout_ms,
                max_feedback_entities,
                log_predictions,
                log_dir,
                log_text,
                log_rotate_bytes,
                log_queue_bytes,
                log_retention_bytes,
                log_retention_days,
                aggregation,
                watch,
                watch_interval_ms
            ],
            optional[metrics_port, max_text_chars, api_tokens_file, signing_key_file],
            by_hand[api_tokens]
        );
        if !api_tokens.is_empty() {
            config.api_tokens = api_tokens;
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

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Retrain settings (config section [retrain])")]
pub struct RetrainArgs {
    /// serve's prediction log, with the feedback [default: [serve] log_dir].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The current raw splits the feedback is added to [default: [ingest] output_dir].
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Where the new data version and the run's outputs go [default: artifacts/retrain].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Share of the feedback held back for the gate's holdout [default: 0.2].
    #[arg(long, value_name = "FRACTION")]
    pub holdout_share: Option<f64>,
    /// Fewest usable feedback rows worth a retraining [default: 50].
    #[arg(long, value_name = "N")]
    pub min_feedback: Option<usize>,
    /// A feedback label training never had: error, drop or add [default: error].
    #[arg(long, value_enum)]
    pub new_labels: Option<NewLabelPolicy>,
}

impl RetrainArgs {
    pub fn apply(self, config: &mut RetrainConfig) {
        apply_overrides!(self, config, [output_dir, holdout_share, min_feedback, new_labels], optional [log_dir, base_dir]);
    }
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
            optional[timeout],
            by_hand[space]
        );
        if !space.is_empty() {
            config.space = space.into_iter().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::{Args, Command};
    use serde::Serialize;

    use super::*;

    fn flag_ids<A: Args>() -> BTreeSet<String> {
        A::augment_args(Command::new("stage")).get_arguments().map(|arg| arg.get_id().to_string()).collect()
    }

    fn config_keys<C: Serialize + Default>() -> BTreeSet<String> {
        match serde_json::to_value(C::default()).expect("serialises") {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("a config section should be a table, got {other}"),
        }
    }

    /// The `[default: X]` a flag's help states, beside its config key's value in `Default`.
    fn stated_defaults<A: Args, C: Serialize + Default>() -> Vec<(String, String, serde_json::Value)> {
        let defaults = serde_json::to_value(C::default()).expect("serialises");
        A::augment_args(Command::new("stage"))
            .get_arguments()
            .filter_map(|arg| {
                let help = arg.get_help()?.to_string();
                let stated = help.rsplit_once("[default: ")?.1.trim_end_matches(['.', ']']).to_owned();
                let id = arg.get_id().to_string();
                Some((id.clone(), stated, defaults[id.as_str()].clone()))
            })
            .collect()
    }

    /// Whether help's `stated` default says `value`: its first word (before any
    /// explanation, as in `auto, from the file extension`) is the number, bool,
    /// word or list `Default` holds; an unset option's help may describe what
    /// stands in for it. The command line spells enum values with `-` where TOML has `_`.
    fn agrees(stated: &str, value: &serde_json::Value) -> bool {
        let first = stated.split([' ', ',', ';']).next().unwrap_or("");
        match value {
            serde_json::Value::Null | serde_json::Value::Object(_) => true,
            serde_json::Value::Bool(b) => first == b.to_string(),
            serde_json::Value::Number(n) => {
                // f32 settings print their nearest f64.
                first
                    .parse::<f64>()
                    .ok()
                    .zip(n.as_f64())
                    .is_some_and(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(a.abs()))
            }
            serde_json::Value::String(text) => stated == text || first.replace('-', "_") == text.replace('-', "_"),
            serde_json::Value::Array(items) if items.is_empty() => {
                stated.starts_with("none") || stated.starts_with("the ")
            }
            serde_json::Value::Array(items) => {
                let items: Vec<&str> = items.iter().filter_map(serde_json::Value::as_str).collect();
                stated == items.join(", ") || stated == items.join(",")
            }
        }
    }

    /// Every `[default: ...]` typed in a flag's help says what `Default` holds.
    #[test]
    fn stated_defaults_match_the_configs_defaults() {
        let mut all = Vec::new();
        all.extend(stated_defaults::<IngestArgs, IngestConfig>());
        all.extend(stated_defaults::<CleanArgs, CleanConfig>());
        all.extend(stated_defaults::<TokenizeArgs, TokenizeConfig>());
        all.extend(stated_defaults::<ProfileArgs, ProfileConfig>());
        all.extend(stated_defaults::<TrainArgs, TrainConfig>());
        all.extend(stated_defaults::<EvalArgs, EvalConfig>());
        all.extend(stated_defaults::<ExportArgs, ExportConfig>());
        all.extend(stated_defaults::<PredictArgs, PredictConfig>());
        all.extend(stated_defaults::<ServeArgs, ServeConfig>());
        all.extend(stated_defaults::<TrackArgs, TrackConfig>());
        all.extend(stated_defaults::<RegistryArgs, RegistryConfig>());
        all.extend(stated_defaults::<MonitorArgs, MonitorConfig>());
        all.extend(stated_defaults::<GateArgs, GateConfig>());
        all.extend(stated_defaults::<RetrainArgs, RetrainConfig>());
        all.extend(stated_defaults::<TuneArgs, TuneConfig>());
        assert!(all.len() > 200, "{} stated defaults", all.len());
        let wrong: Vec<String> = all
            .iter()
            .filter(|(_, stated, value)| !agrees(stated, value))
            .map(|(id, stated, value)| format!("--{id}: help says {stated:?}, Default holds {value}"))
            .collect();
        assert!(wrong.is_empty(), "{} of {} stated defaults disagree:\n{}", wrong.len(), all.len(), wrong.join("\n"));
    }

    #[test]
    fn flags_and_keys_match() {
        assert_eq!(flag_ids::<IngestArgs>(), config_keys::<IngestConfig>());
        assert_eq!(flag_ids::<CleanArgs>(), config_keys::<CleanConfig>());
        assert_eq!(flag_ids::<TokenizeArgs>(), config_keys::<TokenizeConfig>());
        assert_eq!(flag_ids::<ProfileArgs>(), config_keys::<ProfileConfig>());
        assert_eq!(flag_ids::<TrainArgs>(), config_keys::<TrainConfig>());
        assert_eq!(flag_ids::<EvalArgs>(), config_keys::<EvalConfig>());
        assert_eq!(flag_ids::<ExportArgs>(), config_keys::<ExportConfig>());
        assert_eq!(flag_ids::<PredictArgs>(), config_keys::<PredictConfig>());
        assert_eq!(flag_ids::<ServeArgs>(), config_keys::<ServeConfig>());
        assert_eq!(flag_ids::<TrackArgs>(), config_keys::<TrackConfig>());
        assert_eq!(flag_ids::<RegistryArgs>(), config_keys::<RegistryConfig>());
        assert_eq!(flag_ids::<MonitorArgs>(), config_keys::<MonitorConfig>());
        assert_eq!(flag_ids::<GateArgs>(), config_keys::<GateConfig>());
        assert_eq!(flag_ids::<RetrainArgs>(), config_keys::<RetrainConfig>());
        assert_eq!(flag_ids::<TuneArgs>(), config_keys::<TuneConfig>());
        // The one top-level key is every stage's global flag.
        let top_level: BTreeSet<String> = match serde_json::to_value(crate::PipelineConfig::default()) {
            Ok(serde_json::Value::Object(map)) => {
                map.into_iter().filter(|(_, v)| !v.is_object()).map(|(k, _)| k).collect()
            }
            other => panic!("the pipeline config is a table: {other:?}"),
        };
        // `kiln_stage::CommonArgs` has its flag (a test there).
        assert_eq!(top_level, BTreeSet::from(["task".to_owned()]));
    }

    #[test]
    fn the_task_key_reads_from_toml_and_unknown_tasks_are_refused() {
        let config =
            crate::PipelineConfig::from_toml("task = \"token_classification\"\n[ingest]\ntag_scheme = \"bioes\"\n")
                .expect("parses");
        assert_eq!((config.task, config.ingest.tag_scheme), (crate::Task::TokenClassification, TagScheme::Bioes));
        let error = crate::PipelineConfig::from_toml("task = \"ner\"\n").expect_err("unknown task");
        assert!(error.to_string().contains("token_classification"), "{error}");
        assert!(config.to_toml().starts_with("task = \"token_classification\""), "{}", config.to_toml());
    }

    #[derive(clap::Parser)]
    struct Harness {
        #[command(flatten)]
        ingest: IngestArgs,
    }

    #[derive(clap::Parser)]
    struct TuneHarness {
        #[command(flatten)]
        tune: TuneArgs,
        #[command(flatten)]
        predict: PredictArgs,
    }

    /// `tune --data-fraction` once parsed and went nowhere; apply_overrides now
    /// names every flag, and this checks the two that slipped or are new.
    #[test]
    fn tune_data_fraction_and_predict_quantize_reach_their_configs() {
        use clap::Parser;
        let args =
            TuneHarness::try_parse_from(["tune", "--data-fraction", "0.05", "--quantize", "int8"]).expect("parses");
        let mut tune = TuneConfig::default();
        args.tune.apply(&mut tune);
        assert_eq!(tune.data_fraction, 0.05);
        let mut predict = PredictConfig::default();
        args.predict.apply(&mut predict);
        assert_eq!(predict.quantize, Quantize::Int8);
    }

    #[test]
    fn flags_override_only_what_they_name() {
        use clap::Parser;
        let args = Harness::try_parse_from([
            "ingest",
            "--seed",
            "7",
            "--id-column",
            "uid",
            "--score-labels",
            "pos > 0",
            "--score-labels",
            "neg < 0",
            "--has-header",
            "false",
            "--format",
            "tsv",
        ])
        .expect("parses");
        let mut config = IngestConfig { text_column: "body".into(), ..IngestConfig::default() };
        args.ingest.apply(&mut config);
        assert_eq!(config.seed, 7);
        assert_eq!(config.id_column.as_deref(), Some("uid"));
        assert_eq!(config.score_labels, vec!["pos > 0", "neg < 0"]);
        assert!(!config.has_header);
        assert_eq!(config.format, InputFormat::Tsv);
        assert_eq!(config.text_column, "body", "a key without a flag keeps its config value");
    }
}
