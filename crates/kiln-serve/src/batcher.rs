//! Dynamic batching: requests wait in a bounded queue; one inference thread
//! takes what is queued (up to the batch limits), runs it through the model in
//! one go and answers each request. Throughput grows with concurrency because
//! the model's cost per text falls with batch size.
//!
//! The same queue carries model swaps, so a reload takes effect between two
//! batches: requests queued before it finish on the old model.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_core::entities::Aggregation;
use kiln_core::prediction_log::InputStats;
use kiln_core::{Example, TaggedExample, Task};
use kiln_model::EncodedText;
use kiln_model::device::InferenceThreads;
use kiln_text::aggregate::Entity;
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::model::{ModelInfo, ServedModel};

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_wait: Duration,
}

/// A request's answer: per text, label probabilities or entities, from the
/// model named in `model`.
#[derive(Debug)]
pub struct Answer {
    pub outputs: Outputs,
    /// What the model read of each text, for the prediction log.
    pub inputs: Vec<InputStats>,
    pub model: Arc<ModelInfo>,
}

/// What the model gives per text.
#[derive(Debug)]
pub enum Outputs {
    /// Label probabilities, in label-id order (text classification).
    Classes(Vec<Vec<f32>>),
    /// Entities with character offsets into the text as sent (token classification).
    Entities(Vec<Vec<Entity>>),
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("no model is loaded yet")]
    NotReady,
    #[error("cannot tokenize the text: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("too many requests are waiting for the model")]
    Full,
    #[error("the server is shutting down")]
    Closed,
}

struct Job {
    texts: Vec<String>,
    /// How a token-classification model groups sub-words into entities.
    aggregation: Aggregation,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Answer, BatchError>>,
}

enum Work {
    Predict(Job),
    Swap(Box<ServedModel>, oneshot::Sender<()>),
    Stop,
}

/// A job taken off the queue and tokenized, waiting for its batch to run.
struct Encoded {
    job: Job,
    model_input: ModelInput,
    inputs: Vec<InputStats>,
    tokens: usize,
}

/// A job's texts as its model reads them.
enum ModelInput {
    Texts(Vec<Example>),
    /// Per text: its encoding with character offsets, and the model's row.
    Tagged(Vec<EncodedText>, Vec<TaggedExample>),
}

impl ModelInput {
    fn len(&self) -> usize {
        match self {
            Self::Texts(examples) => examples.len(),
            Self::Tagged(_, rows) => rows.len(),
        }
    }
}

/// The sending side, shared by every request handler.
#[derive(Clone)]
pub struct Queue {
    sender: SyncSender<Work>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Starts the inference thread, with no model until the first [`Queue::swap`].
    pub fn start(
        limits: BatchLimits,
        threads: InferenceThreads,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = sync_channel(capacity);
        let worker = Worker { receiver, limits, threads, metrics: metrics.clone(), model: None };
        let handle = std::thread::Builder::new()
            .name("kiln-inference".into())
            .spawn(move || worker.run())
            .expect("the OS lets the server start a thread");
        (Self { sender, metrics }, handle)
    }

    /// Queues `texts`; the receiver yields the answer once their batch ran.
    pub fn submit(
        &self,
        texts: Vec<String>,
        aggregation: Aggregation,
    ) -> Result<oneshot::Receiver<Result<Answer, BatchError>>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { texts, aggregation, enqueued: Instant::now(), reply };
        // Counted before it is sent, so the worker's decrement never comes first.
        self.metrics.queue_depth.inc();
        match self.sender.try_send(Work::Predict(job)) {
            Ok(()) => Ok(answer),
            Err(error) => {
                self.metrics.queue_depth.dec();
                Err(match error {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Closed,
                })
            }
        }
    }

    /// Serves `model` from the next batch on; returns once it is in place.
    /// Blocks while the queue is full, so call it off the async runtime.
    pub fn swap(&self, model: ServedModel) -> Result<(), SubmitError> {
        let (done, swapped) = oneshot::channel();
        self.sender.send(Work::Swap(Box::new(model), done)).map_err(|_| SubmitError::Closed)?;
        swapped.blocking_recv().map_err(|_| SubmitError::Closed)
    }

    /// Asks the thread to finish what is queued and stop.
    pub fn stop(&self) {
        let _ = self.sender.send(Work::Stop);
    }
}

struct Worker {
    receiver: Receiver<Work>,
    limits: BatchLimits,
    /// The only thread with parallel kernels.
    threads: InferenceThreads,
    metrics: Arc<Metrics>,
    model: Option<Box<ServedModel>>,
}

/// What the worker handles next: fresh work, or a tokenized job that did not
/// fit in the previous batch and starts the next one.
enum Next {
    Work(Work),
    Encoded(Encoded),
}

/// How long [`Worker::receive`] waits.
enum Wait {
    Forever,
    Until(Instant),
    No,
}

impl Worker {
    fn run(mut self) {
        self.threads.take();
        let mut next: Option<Next> = None;
        loop {
            let item = match next.take() {
                Some(item) => item,
                None => match self.receive(Wait::Forever) {
                    Some(work) => Next::Work(work),
                    None => return,
                },
            };
            match item {
                Next::Encoded(first) => next = self.gather_and_run(first),
                Next::Work(Work::Stop) => return,
                Next::Work(Work::Swap(model, done)) => {
                    self.model = Some(model);
                    let _ = done.send(());
                }
                Next::Work(Work::Predict(job)) => {
                    if let Some(first) = self.encode(job) {
                        next = self.gather_and_run(first);
                    }
                }
            }
        }
    }

    /// The next work item, keeping the queue-depth gauge true.
    fn receive(&self, wait: Wait) -> Option<Work> {
        let work = match wait {
            Wait::Forever => self.receiver.recv().ok(),
            Wait::Until(deadline) => {
                self.receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
            }
            Wait::No => self.receiver.try_recv().ok(),
        };
        if matches!(work, Some(Work::Predict(_))) {
            self.metrics.queue_depth.dec();
        }
        work
    }

    /// Cleans and tokenizes a job's texts with the current model; answers it
    /// at once when that is impossible.
    fn encode(&self, job: Job) -> Option<Encoded> {
        let Some(model) = &self.model else {
            let _ = job.reply.send(Err(BatchError::NotReady));
            return None;
        };
        let started = Instant::now();
        let texts: Vec<&str> = job.texts.iter().map(String::as_str).collect();
        let predictor = &model.predictor;
        let encoded = match predictor.task() {
            Task::SequenceClassification => predictor.encode(&texts).map(|examples| {
                let tokens = examples.iter().map(Example::len).sum();
                let inputs = examples.iter().map(|example| predictor.input_stats(example)).collect();
                (ModelInput::Texts(examples), inputs, tokens)
            }),
            Task::TokenClassification => predictor.encode_tagged(&texts).map(|(encoded, rows)| {
                let tokens = rows.iter().map(TaggedExample::len).sum();
                let inputs = rows.iter().map(|row| predictor.tagged_input_stats(row)).collect();
                (ModelInput::Tagged(encoded, rows), inputs, tokens)
            }),
        };
        self.metrics.tokenize_seconds.observe(started.elapsed().as_secs_f64());
        match encoded {
            Ok((model_input, inputs, tokens)) => Some(Encoded { job, model_input, inputs, tokens }),
            Err(error) => {
                let _ = job.reply.send(Err(BatchError::Tokenize(format!("{error:#}"))));
                None
            }
        }
    }

    /// Takes queued jobs after `first` up to the limits, runs them as one batch
    /// and answers each. Returns what ended the gathering and must be handled
    /// next: a swap or stop, or a job that did not fit.
    fn gather_and_run(&mut self, first: Encoded) -> Option<Next> {
        let limits = self.limits;
        let deadline = Instant::now() + limits.max_wait;
        let (mut texts, mut tokens) = (first.model_input.len(), first.tokens);
        let mut batch = vec![first];
        let mut next = None;
        while texts < limits.max_batch_size && tokens < limits.max_batch_tokens {
            let wait = if limits.max_wait.is_zero() { Wait::No } else { Wait::Until(deadline) };
            match self.receive(wait) {
                None => break,
                Some(Work::Predict(job)) => {
                    let Some(encoded) = self.encode(job) else { continue };
                    if texts + encoded.model_input.len() > limits.max_batch_size
                        || tokens + encoded.tokens > limits.max_batch_tokens
                    {
                        next = Some(Next::Encoded(encoded));
                        break;
                    }
                    texts += encoded.model_input.len();
                    tokens += encoded.tokens;
                    batch.push(encoded);
                }
                Some(other) => {
                    next = Some(Next::Work(other));
                    break;
                }
            }
        }
        self.run_batch(batch);
        next
    }

    fn run_batch(&self, batch: Vec<Encoded>) {
        let Some(model) = &self.model else {
            return;
        };
        let started = Instant::now();
        let (mut examples, mut rows, mut jobs) = (Vec::new(), Vec::new(), Vec::with_capacity(batch.len()));
        for encoded in batch {
            let texts = match encoded.model_input {
                ModelInput::Texts(job_examples) => {
                    examples.extend(job_examples);
                    None
                }
                ModelInput::Tagged(texts, job_rows) => {
                    rows.extend(job_rows);
                    Some(texts)
                }
            };
            jobs.push((encoded.job, encoded.inputs, texts));
        }
        self.metrics.batch_size.observe((examples.len() + rows.len()) as f64);
        let batch_size = self.limits.max_batch_size;
        // A LibTorch error surfaces as a panic (or an error); it fails this batch, not the server.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<_> {
            let classes = model.predictor.probabilities_batched(&examples, batch_size)?;
            // A batch holds one model's inputs; the other list is empty and runs nothing.
            let tags = model.predictor.tag_probabilities_batched(&rows, batch_size)?;
            Ok((classes, tags))
        }));
        self.metrics.inference_seconds.observe(started.elapsed().as_secs_f64());
        let result = match outcome {
            Ok(Ok(outputs)) => Ok(outputs),
            Ok(Err(error)) => Err(format!("{error:#}")),
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the model panicked".into())),
        };
        let (classes, tags) = match result {
            Ok(outputs) => outputs,
            Err(message) => {
                tracing::error!("inference failed: {message}");
                for (job, _, _) in jobs {
                    let _ = job.reply.send(Err(BatchError::Inference(message.clone())));
                }
                return;
            }
        };
        let (mut classes, mut tags) = (classes.into_iter(), tags.into_iter());
        for (job, inputs, texts) in jobs {
            self.metrics.queue_seconds.observe(started.duration_since(job.enqueued).as_secs_f64());
            let outputs = match texts {
                None => Outputs::Classes(classes.by_ref().take(job.texts.len()).collect()),
                Some(texts) => Outputs::Entities(
                    texts
                        .iter()
                        .zip(tags.by_ref().take(job.texts.len()))
                        .zip(&job.texts)
                        .map(|((text, probabilities), raw)| {
                            text.entities(&model.predictor, &probabilities, raw, job.aggregation)
                        })
                        .collect(),
                ),
            };
            let _ = job.reply.send(Ok(Answer { outputs, inputs, model: model.info.clone() }));
        }
    }
}
