//! The training loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use kiln_config::TrainConfig;
use kiln_core::metrics::TrainLogRecord as Record;
use kiln_core::{Bug, Manifest, Progress, StagedOutput, Task};
use kiln_model::batch::bucketed_batches;
use kiln_model::bert::{load_safetensors, load_safetensors_encoder};
use kiln_model::optim::{AdamWSettings, clip_global_norm};
use kiln_model::{DeviceSpec, WithHead, device};
use serde::Serialize;

use crate::checkpoint::{Best, Checkpoint, CheckpointState, Fingerprint, Position, check_resumable};
use crate::frozen::FrozenPart;
use crate::metrics_log::MetricsLog;
use crate::schedule::LinearSchedule;
use crate::task::{Encoded, Sequence, Tokens, TrainTask};
use crate::{Control, ValidationMetrics, Verdict, inputs, model_folder};
pub const SUMMARY: &str = kiln_core::stages::TRAIN_DONE;
pub const METRICS: &str = kiln_core::metrics::TrainLogLine::FILE;
/// Held (an exclusive file lock) by the `train` process using a run folder, so
/// two runs never write one folder, and `tune` can wait for a dead worker's trial.
pub const RUN_LOCK: &str = kiln_core::stages::TRAIN_RUN_LOCK;

pub enum Outcome {
    Finished(Box<TrainSummary>),
    /// Stopped by the caller; the checkpoint resumes it.
    Interrupted {
        step: usize,
        checkpoint: PathBuf,
    },
    /// Ended by the [`crate::Referee`] after the validation at `step`; the run
    /// folder keeps its metrics log, and no model is written.
    Pruned {
        step: usize,
        epoch: f64,
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

/// Seeds are mixed with the epoch (batch order) and the step (dropout) so that
/// the position alone determines what comes next: resuming needs no RNG state.
fn derived_seed(seed: u64, salt: u64, index: usize) -> u64 {
    seed ^ salt.wrapping_mul(index as u64 + 1)
}
const EPOCH_SALT: u64 = 0x9E37_79B9_7F4A_7C15;
const STEP_SALT: u64 = 0xD1B5_4A32_D192_ED03;

/// Trains a sequence classifier (a label per text).
pub fn run(config: &TrainConfig, progress: &Progress, control: &Control) -> Result<Outcome> {
    run_for(config, Task::SequenceClassification, progress, control)
}

/// Trains a model for `task`: a label per text, or a tag per word.
pub fn run_for(config: &TrainConfig, task: Task, progress: &Progress, control: &Control) -> Result<Outcome> {
    match task {
        Task::SequenceClassification => run_task::<Sequence>(config, task, progress, control),
        Task::TokenClassification => run_task::<Tokens>(config, task, progress, control),
    }
}

fn run_task<T: TrainTask>(config: &TrainConfig, task: Task, progress: &Progress, control: &Control) -> Result<Outcome> {
    config.validate()?;
    let mut session = Session::<T>::start(config, task)?;
    let bar = progress.steps(session.total_steps as u64, "");
    bar.set_position(session.state.position.step as u64);
    while !session.state.finished && session.state.position.step < session.total_steps {
        let epoch = session.state.position.epoch;
        let batches =
            bucketed_batches(&session.lengths, config.batch_size, derived_seed(config.seed, EPOCH_SALT, epoch));
        let groups: Vec<&[Vec<usize>]> = batches.chunks(config.gradient_accumulation).collect();
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, session.total_steps.div_ceil(session.groups_per_epoch)));
        for group in &groups[session.state.position.step_in_epoch..] {
            let lr = session.step(group).inspect_err(|_| bar.abandon())?;
            let step = session.state.position.step;
            let epoch_done = session.state.position.step_in_epoch == groups.len();
            let epoch_progress = epoch as f64 + session.state.position.step_in_epoch as f64 / groups.len() as f64;
            bar.set_position(step as u64);
            let window = &session.window;
            bar.set_message(format!("loss {:.4} lr {lr:.2e} {:.0} tok/s", window.loss(), window.tokens_per_second()));
            if step.is_multiple_of(config.log_every_steps) {
                session.log_window(step, epoch_progress, lr)?;
            }
            let run_done = step >= session.total_steps;
            let scheduled_eval = config.eval_every_steps > 0 && step.is_multiple_of(config.eval_every_steps);
            let mut verdict = Verdict::Continue;
            if epoch_done || run_done || scheduled_eval {
                let metrics = bar.suspend(|| session.validate(epoch_progress))?;
                if let Some(referee) = &control.referee {
                    verdict = referee.judge(step, epoch_progress, &metrics);
                }
            }
            if verdict == Verdict::Prune && !run_done {
                bar.abandon();
                tracing::info!("pruned after the validation at step {step} (epoch {epoch_progress:.2})");
                return session.finish_pruned(step, epoch_progress);
            }
            if verdict == Verdict::Interrupt {
                control.interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if epoch_done {
                session.end_epoch()?;
            }
            let interrupted = control.should_stop(step) && !run_done && !session.stopped_early;
            let scheduled_checkpoint =
                config.checkpoint_every_steps > 0 && step.is_multiple_of(config.checkpoint_every_steps);
            if epoch_done || run_done || session.stopped_early || interrupted || scheduled_checkpoint {
                bar.suspend(|| session.save_checkpoint(run_done))?;
            }
            if interrupted {
                bar.abandon();
                return Ok(Outcome::Interrupted { step, checkpoint: session.checkpoint.dir().to_owned() });
            }
            if run_done || session.stopped_early {
                break;
            }
        }
        if session.stopped_early {
            break;
        }
    }
    bar.finish();
    session.finish()
}

/// A training run in progress: what [`run`]'s loop drives step by step.
struct Session<'a, T: TrainTask> {
    /// Held while the run lasts; the kernel lets go when the process ends, however it ends.
    _run_lock: std::fs::File,
    config: &'a TrainConfig,
    task: Task,
    inputs: inputs::TrainInputs<T::Example>,
    checkpoint: Checkpoint,
    /// The model folder, staged before training so an unwritable one fails first.
    staged: StagedOutput,
    resolved: DeviceSpec,
    /// Where validation runs (no autodiff).
    plain: Device,
    device: Device,
    /// Always there: the optimizer takes it and gives it back each step.
    model: Option<T::Model>,
    optimizer: ModuleOptimizer,
    best_model: Option<T::Model>,
    /// Whether `best_model` changed since the last checkpoint.
    best_dirty: bool,
    state: CheckpointState,
    log: MetricsLog,
    lengths: Vec<usize>,
    groups_per_epoch: usize,
    total_steps: usize,
    schedule: LinearSchedule,
    class_weights: Option<Vec<f32>>,
    /// With `train.trainable_layers`: the frozen part, and its output where kept.
    frozen: Option<FrozenPart>,
    stopped_early: bool,
    window: Window,
    train_time: Duration,
    samples: usize,
    tokens: usize,
}

impl<'a, T: TrainTask> Session<'a, T> {
    /// Checks the inputs and sets up a fresh run from the pre-trained weights,
    /// or resumes the checkpoint (`resume`), which must belong to these inputs.
    fn start(config: &'a TrainConfig, task: Task) -> Result<Self> {
        let spec = device::configure(&config.device, config.threads).context("config key `train.device`")?;
        // The checkpoint is fp32 whatever the precision, so a run may resume in another.
        let precision = device::precision(config.precision, spec).context("config key `train.precision`")?;
        let inputs = inputs::load::<T>(config)?;
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
        let run_lock = lock_run_dir(&config.run_dir)?;

        let resolved = spec.resolve();
        let plain = resolved.device();
        let device = plain.clone().autodiff();
        device.seed(config.seed);
        let mut model = T::new_model(&inputs.model, labels, &device);
        model.encoder_mut().set_precision(precision);
        let mut optimizer = AdamWSettings {
            weight_decay: config.weight_decay as f32,
            epsilon: config.adam_epsilon as f32,
            ..AdamWSettings::default()
        }
        .init();
        let mut best_model = None;
        let state = match resumed {
            Some(saved) => {
                checkpoint.load_model(&mut model)?;
                optimizer = checkpoint.load_optimizer(optimizer)?;
                let mut best = T::new_model(&inputs.model, labels, &plain);
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
                load_pretrained(&mut model, &inputs)?;
                CheckpointState::new(Position::default(), fingerprint, config.clone())
            }
        };
        let mut frozen = None;
        if config.trainable_layers > 0 {
            model.encoder_mut().freeze_below_top(config.trainable_layers);
            let layers = inputs.model.num_hidden_layers;
            tracing::info!(
                "training the top {} of {layers} encoder layers, the pooler and the head (train.trainable_layers); \
                 the embeddings and the layers below stay as loaded",
                config.trainable_layers.min(layers)
            );
            frozen = FrozenPart::new(
                model.valid().encoder().clone(),
                &plain,
                &inputs.train,
                &inputs.validation,
                config.frozen_cache_mib,
                config.eval_batch_size,
            );
        }
        let log = MetricsLog::open(&config.run_dir, state.metrics_log_bytes)?;

        let lengths: Vec<usize> = inputs.train.iter().map(|e| e.input_ids().len()).collect();
        let groups_per_epoch = inputs.train.len().div_ceil(config.batch_size).div_ceil(config.gradient_accumulation);
        let total_steps = if config.max_steps > 0 { config.max_steps } else { config.epochs * groups_per_epoch };
        let schedule = LinearSchedule::new(config.learning_rate, config.warmup_ratio, total_steps);
        let class_weights = T::class_weights(config.class_weights, &inputs.train, labels);
        tracing::info!(
            "training {} parameters on {} ({} threads, {precision}): {} examples, {total_steps} steps of {} x {} \
             examples, {} warm-up",
            model.num_params(),
            resolved,
            device::threads(),
            inputs.train.len(),
            config.batch_size,
            config.gradient_accumulation,
            schedule.warmup_steps
        );
        let stopped_early = state.finished && state.position.step < total_steps;
        Ok(Self {
            _run_lock: run_lock,
            config,
            task,
            inputs,
            checkpoint,
            staged,
            resolved,
            plain,
            device,
            model: Some(model),
            optimizer,
            best_model,
            best_dirty: false,
            state,
            log,
            lengths,
            groups_per_epoch,
            total_steps,
            schedule,
            class_weights,
            frozen,
            stopped_early,
            window: Window::default(),
            train_time: Duration::ZERO,
            samples: 0,
            tokens: 0,
        })
    }

    /// One optimizer step over a group of batches (gradient accumulation);
    /// returns the learning rate it used. A non-finite loss or gradient stops
    /// the run with nothing of this step saved.
    fn step(&mut self, group: &[Vec<usize>]) -> Result<f64> {
        let config = self.config;
        let started = Instant::now();
        self.device.seed(derived_seed(config.seed, STEP_SALT, self.state.position.step));
        let group_rows: usize = group.iter().map(Vec::len).sum();
        let mut accumulator = GradientsAccumulator::new();
        let mut loss_value = 0.0;
        let model = self.model.as_ref().ok_or_else(|| Bug::new("the model was not given back"))?;
        for batch in group {
            let rows: Vec<&T::Example> = batch.iter().map(|&i| &self.inputs.train[i]).collect();
            let frozen_hidden = self.frozen.as_ref().map(|f| f.train_batch(batch, &rows, &self.device));
            let loss = T::loss(model, &rows, frozen_hidden, &self.device, self.class_weights.as_deref(), config);
            // Each batch's mean loss counts by its share of the group: the
            // accumulated gradient is that of one big batch.
            let loss = loss.mul_scalar(rows.len() as f64 / group_rows as f64);
            loss_value += f64::from(loss.clone().into_scalar::<f32>());
            accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
            self.samples += rows.len();
            self.tokens += rows.iter().map(|e| e.input_ids().len()).sum::<usize>();
        }
        let (grads, grad_norm) = clip_global_norm(model, accumulator.grads(), config.max_grad_norm);
        if !loss_value.is_finite() || !grad_norm.is_finite() {
            bail!(
                "training diverged at step {} (epoch {}): loss {loss_value}, gradient norm {grad_norm}. Nothing \
                 was saved from this step; the last good checkpoint is in {} (resume from it with a lower \
                 --learning-rate by starting over, or check the data)",
                self.state.position.step + 1,
                self.state.position.epoch + 1,
                self.checkpoint.dir().display()
            );
        }
        let lr = self.schedule.lr(self.state.position.step);
        let model = self.model.take().ok_or_else(|| Bug::new("the model was not given back"))?;
        self.model = Some(self.optimizer.step(lr, model, grads));
        let elapsed = started.elapsed();
        self.train_time += elapsed;
        self.state.position.step += 1;
        self.state.position.step_in_epoch += 1;
        self.state.epoch_loss.0 += loss_value;
        self.state.epoch_loss.1 += 1;
        let tokens = group.iter().flatten().map(|&i| self.lengths[i]).sum();
        self.window.add(loss_value, grad_norm, group_rows, tokens, elapsed);
        Ok(lr)
    }

    fn model(&self) -> Result<&T::Model> {
        self.model.as_ref().ok_or_else(|| Bug::new("the model was not given back").into())
    }

    /// Logs the training figures since the last record and starts a new window.
    fn log_window(&mut self, step: usize, epoch: f64, lr: f64) -> Result<()> {
        let window = std::mem::take(&mut self.window);
        self.log.write(Record::Train {
            step,
            epoch,
            loss: window.loss(),
            lr,
            grad_norm: window.grad_norm(),
            samples: window.samples,
            tokens: window.tokens,
            seconds: window.time.as_secs_f64(),
            samples_per_second: window.samples_per_second(),
            tokens_per_second: window.tokens_per_second(),
        })
    }

    /// Scores the model on the validation split, keeps it when it is the best
    /// so far, and decides on early stopping.
    fn validate(&mut self, epoch: f64) -> Result<ValidationMetrics> {
        let config = self.config;
        let step = self.state.position.step;
        let model = self.model()?.valid();
        let metrics = T::validate(
            &model,
            &self.inputs.validation,
            self.frozen.as_ref(),
            config.eval_batch_size,
            &self.plain,
            &self.inputs.labels,
        );
        let value = metrics.get(config.metric);
        let improved = self.state.best.as_ref().is_none_or(|best| config.metric.is_better(value, best.value));
        if improved {
            self.best_model = Some(model);
            self.best_dirty = true;
            self.state.best = Some(Best { value, step, epoch, metrics });
            self.state.evals_since_best = 0;
        } else {
            self.state.evals_since_best += 1;
        }
        self.log.write(Record::Eval {
            step,
            epoch,
            loss: metrics.loss,
            accuracy: metrics.accuracy,
            macro_f1: metrics.macro_f1,
            best: improved,
        })?;
        tracing::info!(
            "step {step} (epoch {epoch:.2}): validation loss {:.4}, accuracy {:.4}, macro-F1 {:.4}{}",
            metrics.loss,
            metrics.accuracy,
            metrics.macro_f1,
            if improved { " (best so far)" } else { "" }
        );
        if config.patience > 0 && self.state.evals_since_best >= config.patience {
            self.stopped_early = true;
            tracing::info!("stopping early: no better validation {} in {} evaluations", config.metric, config.patience);
        }
        Ok(metrics)
    }

    /// Logs the finished epoch's mean loss and moves to the next epoch.
    fn end_epoch(&mut self) -> Result<()> {
        let (sum, count) = self.state.epoch_loss;
        let position = &mut self.state.position;
        self.log.write(Record::Epoch {
            epoch: position.epoch + 1,
            step: position.step,
            train_loss: sum / count.max(1) as f64,
        })?;
        self.state.epoch_loss = (0.0, 0);
        self.state.position.epoch += 1;
        self.state.position.step_in_epoch = 0;
        Ok(())
    }

    /// Saves where training stands (and the best model, when it changed), so an
    /// interrupted run resumes from here.
    fn save_checkpoint(&mut self, run_done: bool) -> Result<()> {
        self.state.metrics_log_bytes = self.log.len()?;
        self.state.finished = run_done || self.stopped_early;
        let best = if self.best_dirty { self.best_model.as_ref() } else { None };
        self.checkpoint.save(&self.state, self.model()?, &self.optimizer, best)?;
        self.best_dirty = false;
        Ok(())
    }

    /// Ends a pruned run: its metrics log is committed as `metrics.jsonl`; the
    /// staged model folder is dropped and the checkpoint removed (nothing resumes it).
    fn finish_pruned(self, step: usize, epoch: f64) -> Result<Outcome> {
        let log = self.log.path();
        let lines = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        kiln_core::output::write_file_atomically(&self.config.run_dir.join(METRICS), &lines)?;
        self.checkpoint.remove()?;
        Ok(Outcome::Pruned { step, epoch })
    }

    /// Writes the best model's folder, then the run's metrics log and summary (last).
    fn finish(self) -> Result<Outcome> {
        let config = self.config;
        let best = self.state.best.clone().context("training ended without a validation. This is a bug.")?;
        let best_model = self.best_model.context("training ended without a best model. This is a bug.")?;
        let seconds = self.train_time.as_secs_f64().max(1e-9);
        let summary = TrainSummary {
            steps: self.state.position.step,
            total_steps: self.total_steps,
            epochs: self.state.position.step as f64 / self.groups_per_epoch as f64,
            stopped_early: self.stopped_early,
            best,
            metric: config.metric.to_string(),
            device: self.resolved.to_string(),
            threads: device::threads(),
            parameters: best_model.num_params(),
            train_examples: self.inputs.train.len(),
            validation_examples: self.inputs.validation.len(),
            train_seconds: seconds,
            samples_per_second: self.samples as f64 / seconds,
            tokens_per_second: self.tokens as f64 / seconds,
            output_dir: config.output_dir.clone(),
        };
        let kind = model_folder::Kind { task: self.task, architecture: T::architecture(&self.inputs.model) };
        model_folder::write(self.staged, config, &self.inputs, &best_model, kind, &summary)?;
        let mut run_outputs = StagedOutput::new(&config.run_dir)?;
        run_outputs.copy(self.log.path(), METRICS)?;
        let mut manifest = Manifest::new("train", config, &summary);
        manifest.inputs = self.inputs.hashes.clone();
        manifest.outputs = run_outputs.hashes()?;
        run_outputs.commit(SUMMARY, &manifest)?;
        Ok(Outcome::Finished(Box::new(summary)))
    }
}

/// Takes the run folder's lock, or says which folder another `train` is using.
fn lock_run_dir(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(RUN_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another train process is using the run folder {} (config key `train.run_dir`); give this run its own",
            run_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// The starting weights: a pre-trained encoder with a new classification head,
/// or a fine-tuned model's (a warm start), whose head is kept when it was
/// trained for the same labels in the same order and is new otherwise.
fn load_pretrained(model: &mut impl WithHead, inputs: &inputs::TrainInputs<impl Encoded>) -> Result<()> {
    let (weights, labels) = (&inputs.weights, &inputs.labels);
    let own_labels = inputs.pretrained.labels().ok();
    let same_labels = own_labels.as_ref().is_some_and(|own| own.labels() == labels.labels());
    let report =
        if same_labels { load_safetensors(model, weights)? } else { load_safetensors_encoder(model, weights)? };
    if let Some(shape) = &report.replaced_head {
        let why = match &own_labels {
            Some(own) if own.len() == labels.len() => {
                format!("was trained for other labels ({})", own.labels().join(", "))
            }
            _ => format!("has a classification head for {} labels; the data has {}", shape[0], labels.len()),
        };
        tracing::warn!("{} {why}: starting a new head", weights.display());
    }
    let unused =
        if report.unused.is_empty() { String::new() } else { format!("; unused: {}", report.unused.join(", ")) };
    let head = if report.initialised.is_empty() {
        format!("kept its classification head for the same {} labels", labels.len())
    } else {
        format!("new classification head for {} labels ({})", labels.len(), report.initialised.join(", "))
    };
    tracing::info!("loaded {} tensors from {}; {head}{unused}", report.applied, weights.display());
    Ok(())
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
