//! The training loop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use kiln_config::{ClassWeights, TrainConfig};
use kiln_data::processed::Example;
use kiln_data::{Progress, StagedOutput};
use kiln_model::batch::{bucketed_batches, collate, length_sorted_batches};
use kiln_model::bert::load_safetensors;
use kiln_model::metrics::Confusion;
use kiln_model::optim::{AdamWSettings, clip_global_norm};
use kiln_model::{BertClassifier, device};
use serde::Serialize;

use crate::checkpoint::{Best, Checkpoint, CheckpointState, Fingerprint, Position, check_resumable};
use crate::metrics_log::MetricsLog;
use crate::schedule::LinearSchedule;
use crate::{Control, EvalMetrics, inputs, model_folder};

/// Padding id in batches; its value is irrelevant (masked), BERT's [PAD] is 0.
const PAD_ID: u32 = 0;
pub const SUMMARY: &str = "train_summary.json";
pub const METRICS: &str = "metrics.jsonl";

pub enum Outcome {
    Finished(Box<TrainSummary>),
    /// Stopped by the caller; the checkpoint resumes it.
    Interrupted {
        step: usize,
        checkpoint: PathBuf,
    },
}

/// What a finished run reports (also `train_summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub total_steps: usize,
    pub epochs: f64,
    pub stopped_early: bool,
    pub best: Best,
    pub metric: String,
    pub device: String,
    pub threads: usize,
    pub parameters: usize,
    pub train_examples: usize,
    pub validation_examples: usize,
    /// Time in forward/backward/update steps of this invocation (not validation).
    pub train_seconds: f64,
    pub samples_per_second: f64,
    pub tokens_per_second: f64,
    pub output_dir: PathBuf,
}

/// One line of the metrics log.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Train {
        step: usize,
        epoch: f64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        /// Examples, real tokens and step time (validation excluded) since the last record.
        samples: usize,
        tokens: usize,
        seconds: f64,
        samples_per_second: f64,
        tokens_per_second: f64,
    },
    Eval {
        step: usize,
        epoch: f64,
        loss: f64,
        accuracy: f64,
        macro_f1: f64,
        best: bool,
    },
    Epoch {
        epoch: usize,
        step: usize,
        train_loss: f64,
    },
}

/// Seeds are mixed with the epoch (batch order) and the step (dropout) so that
/// the position alone determines what comes next: resuming needs no RNG state.
fn derived_seed(seed: u64, salt: u64, index: usize) -> u64 {
    seed ^ salt.wrapping_mul(index as u64 + 1)
}
const EPOCH_SALT: u64 = 0x9E37_79B9_7F4A_7C15;
const STEP_SALT: u64 = 0xD1B5_4A32_D192_ED03;

pub fn run(config: &TrainConfig, progress: &Progress, control: &Control) -> Result<Outcome> {
    config.validate()?;
    let spec = device::configure(&config.device, config.threads).context("config key `train.device`")?;
    let inputs = inputs::load(config)?;
    let labels = inputs.labels.len();
    let fingerprint = Fingerprint {
        model: inputs.model.clone(),
        labels: inputs.labels.labels().to_vec(),
        inputs: inputs.hashes.clone(),
    };

    let checkpoint = Checkpoint::in_run_dir(&config.run_dir);
    let resumed = if config.resume {
        if !checkpoint.exists() {
            bail!("--resume: there is no checkpoint in {} to resume from", checkpoint.dir().display());
        }
        let state = checkpoint.read_state()?;
        check_resumable(&state, &fingerprint, config, checkpoint.dir())?;
        Some(state)
    } else {
        if checkpoint.exists() {
            tracing::info!("starting over: the checkpoint in {} will be replaced", checkpoint.dir().display());
        }
        None
    };
    // Fails now, not after hours of training, if the output folder is not writable.
    let staged = StagedOutput::new(&config.output_dir)?;
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("cannot create run folder {}", config.run_dir.display()))?;

    let resolved = spec.resolve();
    let plain = resolved.device();
    let device = plain.clone().autodiff();
    device.seed(config.seed);
    let mut model = BertClassifier::new(&inputs.model, labels, &device);
    let mut optimizer = AdamWSettings {
        weight_decay: config.weight_decay as f32,
        epsilon: config.adam_epsilon as f32,
        ..AdamWSettings::default()
    }
    .init();
    let mut best_model: Option<BertClassifier> = None;
    let mut state = match resumed {
        Some(saved) => {
            checkpoint.load_model(&mut model)?;
            optimizer = checkpoint.load_optimizer(optimizer)?;
            let mut best = BertClassifier::new(&inputs.model, labels, &plain);
            if checkpoint.load_best(&mut best)? {
                best_model = Some(best);
            }
            tracing::info!(
                "resuming from {} at step {} (epoch {})",
                checkpoint.dir().display(),
                saved.position.step,
                saved.position.epoch + 1
            );
            CheckpointState { config: config.clone(), ..saved }
        }
        None => {
            let report = load_safetensors(&mut model, &inputs.weights)?;
            if let Some(shape) = &report.replaced_head {
                tracing::warn!(
                    "{} has a classification head for {} labels; the data has {labels}: starting a new head",
                    inputs.weights.display(),
                    shape[0]
                );
            }
            tracing::info!(
                "loaded {} tensors from {}; new classification head for {labels} labels ({}){}",
                report.applied,
                inputs.weights.display(),
                report.initialised.join(", "),
                if report.unused.is_empty() {
                    String::new()
                } else {
                    format!("; unused: {}", report.unused.join(", "))
                }
            );
            CheckpointState::new(Position::default(), fingerprint, config.clone())
        }
    };
    let mut log = MetricsLog::open(&config.run_dir, state.metrics_log_bytes)?;

    let lengths: Vec<usize> = inputs.train.iter().map(Example::len).collect();
    let groups_per_epoch = inputs.train.len().div_ceil(config.batch_size).div_ceil(config.gradient_accumulation);
    let total_steps = if config.max_steps > 0 { config.max_steps } else { config.epochs * groups_per_epoch };
    let epochs_needed = total_steps.div_ceil(groups_per_epoch);
    let schedule = LinearSchedule::new(config.learning_rate, config.warmup_ratio, total_steps);
    let class_weights = class_weights(config.class_weights, &inputs.train, labels);
    tracing::info!(
        "training {} parameters on {} ({} threads): {} examples, {total_steps} steps of {} x {} examples, {} warm-up",
        parameter_count(&model),
        resolved,
        device::threads(),
        inputs.train.len(),
        config.batch_size,
        config.gradient_accumulation,
        schedule.warmup_steps
    );

    let bar = progress.steps(total_steps as u64, "");
    bar.set_position(state.position.step as u64);
    let mut train_time = Duration::ZERO;
    let (mut samples, mut tokens) = (0usize, 0usize);
    let mut window = Window::default();
    let mut best_dirty = false;
    let mut stopped_early = state.finished && state.position.step < total_steps;

    'epochs: while !state.finished && state.position.step < total_steps {
        let epoch = state.position.epoch;
        let batches = bucketed_batches(&lengths, config.batch_size, derived_seed(config.seed, EPOCH_SALT, epoch));
        let groups: Vec<&[Vec<usize>]> = batches.chunks(config.gradient_accumulation).collect();
        bar.set_prefix(format!("epoch {}/{epochs_needed}", epoch + 1));
        for group in &groups[state.position.step_in_epoch..] {
            let started = Instant::now();
            device.seed(derived_seed(config.seed, STEP_SALT, state.position.step));
            let group_rows: usize = group.iter().map(Vec::len).sum();
            let mut accumulator = GradientsAccumulator::new();
            let mut loss_value = 0.0;
            for batch in *group {
                let rows: Vec<&Example> = batch.iter().map(|&i| &inputs.train[i]).collect();
                let (input, targets) = collate(&rows, PAD_ID, &device);
                let (loss, _) = model.weighted_loss(input, targets, class_weights.as_deref());
                // Each batch's mean loss counts by its share of the group: the
                // accumulated gradient is that of one big batch.
                let loss = loss.mul_scalar(rows.len() as f64 / group_rows as f64);
                loss_value += f64::from(loss.clone().into_scalar::<f32>());
                accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
                samples += rows.len();
                tokens += rows.iter().map(|e| e.len()).sum::<usize>();
            }
            let (grads, grad_norm) = clip_global_norm(&model, accumulator.grads(), config.max_grad_norm);
            if !loss_value.is_finite() || !grad_norm.is_finite() {
                bar.abandon();
                bail!(
                    "training diverged at step {} (epoch {}): loss {loss_value}, gradient norm {grad_norm}. Nothing \
                     was saved from this step; the last good checkpoint is in {} (resume from it with a lower \
                     --learning-rate by starting over, or check the data)",
                    state.position.step + 1,
                    epoch + 1,
                    checkpoint.dir().display()
                );
            }
            let lr = schedule.lr(state.position.step);
            model = optimizer.step(lr, model, grads);
            let elapsed = started.elapsed();
            train_time += elapsed;
            state.position.step += 1;
            state.position.step_in_epoch += 1;
            state.epoch_loss.0 += loss_value;
            state.epoch_loss.1 += 1;
            window.add(loss_value, grad_norm, group_rows, group.iter().flatten().map(|&i| lengths[i]).sum(), elapsed);

            let step = state.position.step;
            let epoch_progress = epoch as f64 + state.position.step_in_epoch as f64 / groups.len() as f64;
            bar.set_position(step as u64);
            bar.set_message(format!("loss {:.4} lr {lr:.2e} {:.0} tok/s", window.loss(), window.tokens_per_second()));
            if step.is_multiple_of(config.log_every_steps) {
                log.write(&Record::Train {
                    step,
                    epoch: epoch_progress,
                    loss: window.loss(),
                    lr,
                    grad_norm: window.grad_norm(),
                    samples: window.samples,
                    tokens: window.tokens,
                    seconds: window.time.as_secs_f64(),
                    samples_per_second: window.samples_per_second(),
                    tokens_per_second: window.tokens_per_second(),
                })?;
                window = Window::default();
            }

            let epoch_done = state.position.step_in_epoch == groups.len();
            let run_done = step >= total_steps;
            let scheduled_eval = config.eval_every_steps > 0 && step.is_multiple_of(config.eval_every_steps);
            if epoch_done || run_done || scheduled_eval {
                let metrics = evaluate(&model.valid(), &inputs.validation, config.eval_batch_size, &plain, labels);
                let value = metrics.get(config.metric);
                let improved = state.best.as_ref().is_none_or(|best| {
                    if config.metric.higher_is_better() { value > best.value } else { value < best.value }
                });
                if improved {
                    best_model = Some(model.valid());
                    best_dirty = true;
                    state.best = Some(Best { value, step, epoch: epoch_progress, metrics });
                    state.evals_since_best = 0;
                } else {
                    state.evals_since_best += 1;
                }
                log.write(&Record::Eval {
                    step,
                    epoch: epoch_progress,
                    loss: metrics.loss,
                    accuracy: metrics.accuracy,
                    macro_f1: metrics.macro_f1,
                    best: improved,
                })?;
                bar.suspend(|| {
                    tracing::info!(
                        "step {step} (epoch {epoch_progress:.2}): validation loss {:.4}, accuracy {:.4}, macro-F1 {:.4}{}",
                        metrics.loss,
                        metrics.accuracy,
                        metrics.macro_f1,
                        if improved { " (best so far)" } else { "" }
                    );
                });
                if config.patience > 0 && state.evals_since_best >= config.patience {
                    stopped_early = true;
                    bar.suspend(|| {
                        tracing::info!(
                            "stopping early: no better validation {} in {} evaluations",
                            config.metric,
                            config.patience
                        );
                    });
                }
            }
            if epoch_done {
                let (sum, count) = state.epoch_loss;
                log.write(&Record::Epoch { epoch: epoch + 1, step, train_loss: sum / count.max(1) as f64 })?;
                state.epoch_loss = (0.0, 0);
                state.position.epoch += 1;
                state.position.step_in_epoch = 0;
            }

            let interrupted = control.should_stop(step) && !run_done && !stopped_early;
            let scheduled_checkpoint =
                config.checkpoint_every_steps > 0 && step.is_multiple_of(config.checkpoint_every_steps);
            if epoch_done || run_done || stopped_early || interrupted || scheduled_checkpoint {
                state.metrics_log_bytes = log.len()?;
                state.finished = run_done || stopped_early;
                let best = if best_dirty { best_model.as_ref() } else { None };
                bar.suspend(|| checkpoint.save(&state, &model, &optimizer, best))?;
                best_dirty = false;
            }
            if interrupted {
                bar.abandon();
                return Ok(Outcome::Interrupted { step, checkpoint: checkpoint.dir().to_owned() });
            }
            if run_done || stopped_early {
                break 'epochs;
            }
        }
    }
    bar.finish();

    let best = state.best.clone().context("training ended without a validation. This is a bug.")?;
    let best_model = best_model.context("training ended without a best model. This is a bug.")?;
    let seconds = train_time.as_secs_f64().max(1e-9);
    let summary = TrainSummary {
        steps: state.position.step,
        total_steps,
        epochs: state.position.step as f64 / groups_per_epoch as f64,
        stopped_early,
        best,
        metric: config.metric.to_string(),
        device: resolved.to_string(),
        threads: device::threads(),
        parameters: parameter_count(&model),
        train_examples: inputs.train.len(),
        validation_examples: inputs.validation.len(),
        train_seconds: seconds,
        samples_per_second: samples as f64 / seconds,
        tokens_per_second: tokens as f64 / seconds,
        output_dir: config.output_dir.clone(),
    };
    model_folder::write(staged, config, &inputs, &best_model, &summary)?;
    let mut run_outputs = StagedOutput::new(&config.run_dir)?;
    run_outputs.copy(log.path(), METRICS)?;
    let mut manifest = kiln_data::Manifest::new("train", config, &summary);
    manifest.inputs = inputs.hashes.clone();
    manifest.outputs = run_outputs.hashes()?;
    run_outputs.commit(SUMMARY, &manifest)?;
    Ok(Outcome::Finished(Box::new(summary)))
}

/// Loss, accuracy and macro-F1 of `model` (in validation mode) on `examples`.
pub fn evaluate(
    model: &BertClassifier,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
    classes: usize,
) -> EvalMetrics {
    let lengths: Vec<usize> = examples.iter().map(Example::len).collect();
    let mut confusion = Confusion::new(classes);
    let mut loss_sum = 0.0;
    for chunk in length_sorted_batches(&lengths, batch_size) {
        let rows: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
        let (input, targets) = collate(&rows, PAD_ID, device);
        let (loss, logits) = model.loss(input, targets);
        loss_sum += f64::from(loss.into_scalar::<f32>()) * rows.len() as f64;
        let predicted = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
        for (row, predicted) in rows.iter().zip(predicted) {
            confusion.add(row.label_id as usize, usize::try_from(predicted).unwrap_or(0));
        }
    }
    EvalMetrics {
        loss: loss_sum / examples.len().max(1) as f64,
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
    }
}

/// Inverse-frequency weights, n / (classes * count), as scikit-learn's "balanced".
fn class_weights(mode: ClassWeights, train: &[Example], classes: usize) -> Option<Vec<f32>> {
    match mode {
        ClassWeights::None => None,
        ClassWeights::InverseFrequency => {
            let mut counts = vec![0usize; classes];
            for example in train {
                counts[example.label_id as usize] += 1;
            }
            let n = train.len() as f64;
            Some(
                counts
                    .iter()
                    .map(|&count| if count == 0 { 0.0 } else { (n / (classes as f64 * count as f64)) as f32 })
                    .collect(),
            )
        }
    }
}

fn parameter_count(model: &BertClassifier) -> usize {
    model.num_params()
}

/// Training figures since the last log record.
#[derive(Default)]
struct Window {
    loss: f64,
    grad_norm: f64,
    steps: usize,
    samples: usize,
    tokens: usize,
    time: Duration,
}

impl Window {
    fn add(&mut self, loss: f64, grad_norm: f64, samples: usize, tokens: usize, time: Duration) {
        self.loss += loss;
        self.grad_norm += grad_norm;
        self.steps += 1;
        self.samples += samples;
        self.tokens += tokens;
        self.time += time;
    }

    fn loss(&self) -> f64 {
        self.loss / self.steps.max(1) as f64
    }

    fn grad_norm(&self) -> f64 {
        self.grad_norm / self.steps.max(1) as f64
    }

    fn samples_per_second(&self) -> f64 {
        self.samples as f64 / self.time.as_secs_f64().max(1e-9)
    }

    fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.time.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(label_id: u32) -> Example {
        Example { id: String::new(), input_ids: vec![101, 102], token_type_ids: None, label_id }
    }

    /// scikit-learn's compute_class_weight("balanced", classes=[0, 1, 2], y=[0, 0, 0, 1]):
    /// [0.444.., 1.333.., 0] (no examples of class 2: weight 0, never used).
    #[test]
    fn inverse_frequency_weights_are_sklearn_balanced() {
        let train: Vec<Example> = [0, 0, 0, 1].into_iter().map(example).collect();
        let weights = class_weights(ClassWeights::InverseFrequency, &train, 3).expect("weights");
        let expected = [4.0 / 9.0, 4.0 / 3.0, 0.0];
        assert!(weights.iter().zip(expected).all(|(w, e)| (f64::from(*w) - e).abs() < 1e-6), "{weights:?}");
        assert_eq!(class_weights(ClassWeights::None, &train, 3), None);
    }
}
