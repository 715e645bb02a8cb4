//! `[train]`: fine-tuning, its schedule, checkpoints and device.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Metric, Precision};

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

/// What a weakly labelled row (one with `label_probs`, from `label`) trains towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum WeakTargets {
    /// The cross-entropy against the row's whole distribution (noise-aware):
    /// a row the label model is unsure of pulls the model towards unsure.
    #[default]
    Distribution,
    /// The cross-entropy against the row's most probable label (its `label`),
    /// as Snorkel's tutorial trains its end model: the label model's doubt
    /// is not learned (nor a tie's: the first label in sorted order wins).
    MostProbable,
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
    /// Matrix products in `fp32`, `bf16` (mixed precision, as `torch.autocast`:
    /// weights, optimizer state, LayerNorm, softmax and the loss stay fp32, and
    /// so do checkpoints) or `auto` (bf16 where the CPU or GPU multiplies bf16
    /// fast). bf16 on a device without fast bf16 is an error.
    pub precision: Precision,
    /// Seeds the head's initialisation, the batch order and dropout.
    pub seed: u64,
    pub epochs: usize,
    /// Stop after this many optimizer steps (0: run all epochs).
    pub max_steps: usize,
    /// Train only the top N encoder layers (with the pooler and the head); the
    /// embeddings and the layers below keep the weights they were loaded with.
    /// Faster steps, for a start from a model that knows the domain (a warm
    /// `retrain`). 0: every layer trains.
    pub trainable_layers: usize,
    /// With `trainable_layers`, the frozen part's output for every training
    /// and validation text is computed once and kept in memory up to this many
    /// MiB, so each step runs only the layers that train; beyond it, the
    /// frozen part runs at every step. 0: never kept. Either way the frozen
    /// part runs without dropout, as a fixed feature extractor.
    pub frozen_cache_mib: usize,
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
    /// Weak labels: train towards each row's label distribution or its most
    /// probable label. Validation and test rows are gold either way.
    pub weak_targets: WeakTargets,
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
            precision: Precision::Fp32,
            seed: 42,
            epochs: 3,
            max_steps: 0,
            trainable_layers: 0,
            frozen_cache_mib: 2048,
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
            weak_targets: WeakTargets::Distribution,
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
    /// Matrix products in fp32, bf16 (mixed precision; weights and checkpoints stay fp32) or auto
    /// (bf16 where the device has fast bf16) [default: fp32].
    #[arg(long, value_enum, env = "KILN_PRECISION")]
    pub precision: Option<Precision>,
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
    /// Weak labels (label_probs): train towards each row's distribution or its most probable label
    /// [default: distribution].
    #[arg(long, value_enum)]
    pub weak_targets: Option<WeakTargets>,
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
    /// Train only the top N encoder layers, the embeddings and lower layers frozen; 0 = all [default: 0].
    #[arg(long, value_name = "N")]
    pub trainable_layers: Option<usize>,
    /// With --trainable-layers, keep the frozen layers' outputs in memory up to this many MiB; 0 = never [default: 2048].
    #[arg(long, value_name = "MIB")]
    pub frozen_cache_mib: Option<usize>,
}

impl TrainArgs {
    pub fn apply(self, config: &mut TrainConfig) {
        apply_overrides!(self, config,
            [input_dir, model_dir, output_dir, run_dir, device, threads, precision, seed, epochs, max_steps, data_fraction, batch_size,
             gradient_accumulation, learning_rate, warmup_ratio, weight_decay, adam_epsilon, max_grad_norm,
             class_weights, loss, focal_gamma, weak_targets, eval_every_steps, checkpoint_every_steps, log_every_steps,
             eval_batch_size, metric, patience, resume, trainable_layers, frozen_cache_mib],
            optional []);
    }
}
