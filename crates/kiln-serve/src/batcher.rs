//! Dynamic batching: requests wait in a bounded queue; one inference thread
//! takes what is queued (up to the batch limits), runs it through the model in
//! one go and answers each request. Throughput grows with concurrency because
//! the model's cost per text falls with batch size.
//!
//! The same queue carries model swaps, so a reload takes effect between two
//! batches: requests queued before it finish on the old model.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_core::entities::Aggregation;
use kiln_core::prediction_log::InputStats;
use kiln_core::{Example, TaggedExample, Task};
use kiln_model::EncodedText;
use kiln_model::Entity;
use kiln_model::device::InferenceThreads;
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
    /// The request's texts, handed back for the log (never copied).
    pub texts: Vec<String>,
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
    #[error("the inference worker failed on this request: {0}")]
    Panicked(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("too many requests are waiting for the model")]
    Full,
    #[error("too much text is waiting for the model (serve.max_queue_bytes)")]
    FullBytes,
    #[error("the server is shutting down")]
    Closed,
    #[error("the inference worker has stopped; this server cannot predict until it restarts")]
    WorkerStopped,
}

struct Job {
    texts: Vec<String>,
    /// What the texts count against `max_queue_bytes` while queued.
    bytes: usize,
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

/// Bytes a queued text is counted for beyond its own (the `String`, the job).
const TEXT_OVERHEAD_BYTES: usize = 64;

/// The sending side, shared by every request handler.
#[derive(Clone)]
pub struct Queue {
    sender: SyncSender<Work>,
    metrics: Arc<Metrics>,
    /// Bytes of text queued, against `max_bytes`.
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    /// False once the inference thread has ended, whatever ended it.
    alive: Arc<AtomicBool>,
}

/// Marks the worker gone when its thread ends, by return or by panic.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Queue {
    /// Starts the inference thread, with no model until the first [`Queue::swap`].
    pub fn start(
        limits: BatchLimits,
        threads: InferenceThreads,
        capacity: usize,
        max_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (sender, receiver) = sync_channel(capacity);
        let (bytes, alive) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(true)));
        let worker = Worker { receiver, limits, threads, metrics: metrics.clone(), model: None, bytes: bytes.clone() };
        let guard = AliveGuard(alive.clone());
        let handle = std::thread::Builder::new().name("kiln-inference".into()).spawn(move || {
            let _alive = guard;
            worker.run();
        })?;
        Ok((Self { sender, metrics, bytes, max_bytes, alive }, handle))
    }

    /// Whether the inference thread is still there to answer.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues `texts`; the receiver yields the answer once their batch ran.
    pub fn submit(
        &self,
        texts: Vec<String>,
        aggregation: Aggregation,
    ) -> Result<oneshot::Receiver<Result<Answer, BatchError>>, SubmitError> {
        if !self.alive() {
            return Err(SubmitError::WorkerStopped);
        }
        let bytes = texts.iter().map(|text| text.len() + TEXT_OVERHEAD_BYTES).sum::<usize>();
        // Reserved before it is sent, so the worker's release never comes first.
        let queued = self.bytes.fetch_add(bytes, Ordering::SeqCst);
        if queued > 0 && queued + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::SeqCst);
            return Err(SubmitError::FullBytes);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job { texts, bytes, aggregation, enqueued: Instant::now(), reply };
        self.metrics.queue_depth.inc();
        self.metrics.queue_bytes.add(bytes as i64);
        match self.sender.try_send(Work::Predict(job)) {
            Ok(()) => Ok(answer),
            Err(error) => {
                self.metrics.queue_depth.dec();
                self.metrics.queue_bytes.sub(bytes as i64);
                self.bytes.fetch_sub(bytes, Ordering::SeqCst);
                Err(match error {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) if !self.alive() => SubmitError::WorkerStopped,
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
    /// Shared with [`Queue`]: released as jobs leave the queue.
    bytes: Arc<AtomicUsize>,
}

/// A panic's message, for the error a failed request gets.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic with no message".into())
}

/// What the worker handles next: fresh work, or a tokenized job that did not
/// fit in the previous batch and starts the next one.
enum Next {
    Work(Work),
    Encoded(Encoded),
}

/// What the worker does after one item.
enum Step {
    Continue(Option<Next>),
    Stop,
}

/// How long [`Worker::receive`] waits.
enum Wait {
    Forever,
    Until(Instant),
    No,
}

impl Worker {
    /// Handles work until told to stop. Each request's tokenization,
    /// inference and entity grouping catch their own panics and fail only
    /// that request (500); anything else that panics fails the requests it
    /// held (their replies are dropped, which answers 500 too) and the loop goes on.
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
            if let Next::Work(Work::Predict(job)) = &item
                && job.texts.iter().any(|t| kiln_core::test_hooks::is_planted(t, "KILN_TEST_STOP_WORKER"))
            {
                tracing::error!("the inference worker stops (test hook)");
                return;
            }
            let handled = std::panic::catch_unwind(AssertUnwindSafe(|| match item {
                Next::Encoded(first) => Step::Continue(self.gather_and_run(first)),
                Next::Work(Work::Stop) => Step::Stop,
                Next::Work(Work::Swap(model, done)) => {
                    self.model = Some(model);
                    let _ = done.send(());
                    Step::Continue(None)
                }
                Next::Work(Work::Predict(job)) => {
                    Step::Continue(self.encode(job).and_then(|first| self.gather_and_run(first)))
                }
            }));
            match handled {
                Ok(Step::Continue(after)) => next = after,
                Ok(Step::Stop) => return,
                Err(panic) => tracing::error!("the inference worker caught a panic: {}", panic_message(&*panic)),
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
        if let Some(Work::Predict(job)) = &work {
            self.metrics.queue_depth.dec();
            self.metrics.queue_bytes.sub(job.bytes as i64);
            self.bytes.fetch_sub(job.bytes, Ordering::SeqCst);
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
        let encoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if texts.iter().any(|t| kiln_core::test_hooks::is_planted(t, "KILN_TEST_PANIC_IN_TOKENIZER")) {
                panic!("a panic planted in tokenization (test hook)");
            }
            match predictor.task() {
                Task::SequenceClassification => predictor.encode(&texts).map(|examples| {
                    let tokens = examples.iter().map(Example::len).sum();
                    let inputs = examples.iter().map(|example| predictor.input_stats(example)).collect();
                    (ModelInput::Texts(examples), inputs, tokens)
                }),
                Task::TokenClassification => predictor.encode_tagged(&texts).map(|(encoded, rows)| {
                    let tokens = rows.iter().map(TaggedExample::len).sum();
                    let inputs = encoded.iter().map(|text| predictor.tagged_input_stats(text)).collect();
                    (ModelInput::Tagged(encoded, rows), inputs, tokens)
                }),
            }
        }));
        self.metrics.tokenize_seconds.observe(started.elapsed().as_secs_f64());
        match encoded {
            Ok(Ok((model_input, inputs, tokens))) => Some(Encoded { job, model_input, inputs, tokens }),
            Ok(Err(error)) => {
                let _ = job.reply.send(Err(BatchError::Tokenize(format!("{error:#}"))));
                None
            }
            Err(panic) => {
                let message = panic_message(&*panic);
                tracing::error!("tokenization panicked: {message}");
                let _ = job.reply.send(Err(BatchError::Panicked(message)));
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
            Err(panic) => Err(panic_message(&*panic)),
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
            let Job { texts: raw_texts, aggregation, reply, .. } = job;
            let outputs = match texts {
                None => Ok(Outputs::Classes(classes.by_ref().take(raw_texts.len()).collect())),
                Some(texts) => {
                    // A row of tags per window, each text's windows in a row.
                    let windows: Vec<usize> = texts.iter().map(EncodedText::window_count).collect();
                    let mut tags = tags.by_ref().take(windows.iter().sum());
                    let tags: Vec<Vec<_>> = windows.iter().map(|&n| tags.by_ref().take(n).collect()).collect();
                    // Grouping sub-words into entities runs per request: a panic fails this one only.
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        Outputs::Entities(
                            texts
                                .iter()
                                .zip(tags)
                                .zip(&raw_texts)
                                .map(|((text, probabilities), raw)| {
                                    text.entities(&model.predictor, &probabilities, raw, aggregation)
                                })
                                .collect(),
                        )
                    }))
                    .map_err(|panic| panic_message(&*panic))
                }
            };
            let answer = match outputs {
                Ok(outputs) => Ok(Answer { texts: raw_texts, outputs, inputs, model: model.info.clone() }),
                Err(message) => {
                    tracing::error!("grouping entities panicked: {message}");
                    Err(BatchError::Panicked(message))
                }
            };
            let _ = reply.send(answer);
        }
    }
}
