//! `[predict]`: batch inference over a file of texts, whole or one shard.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{Aggregation, ConfigError, InputFormat, Precision, Quantize};

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
    /// Matrix products in `fp32`, `bf16` (a bf16 copy of the encoder's linear
    /// layers; embeddings, LayerNorm and softmax stay fp32) or `auto` (bf16
    /// where the device multiplies bf16 fast). Not with `quantize = "int8"`.
    pub precision: Precision,
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
            precision: Precision::Fp32,
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
        crate::check_precision("predict", self.precision, self.quantize)?;
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
    /// Matrix products in fp32, bf16 (the model folder stays fp32) or auto (bf16 where the device has
    /// fast bf16); not with --quantize int8 [default: fp32].
    #[arg(long, value_enum, env = "KILN_PRECISION")]
    pub precision: Option<Precision>,
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
             batch_size, device, threads, quantize, precision, shard_count, shard_index],
            optional [input_file, id_column]);
    }
}
