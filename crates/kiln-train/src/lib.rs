//! `train`: fine-tune a pre-trained encoder on `tokenize`'s output.
//!
//! [`run`] checks every input first ([`inputs`]), then trains with AdamW, a
//! linear warm-up/decay schedule, global-norm clipping and gradient
//! accumulation on length-bucketed batches; validates every epoch (and every N
//! steps), keeps the best model, stops early when asked, and checkpoints so an
//! interrupted run resumes to the same weights ([`checkpoint`]). The best model
//! is written as a Hugging Face-style folder ([`model_folder`]).

pub mod checkpoint;
pub mod frozen;
pub mod inputs;
mod metrics_log;
pub mod model_folder;
pub mod schedule;
pub mod task;
mod trainer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_config::Metric;
use serde::{Deserialize, Serialize};

pub use task::evaluate;
pub use trainer::{METRICS, Outcome, RUN_LOCK, SUMMARY, TrainSummary, run, run_for};

/// Validation figures, taken during training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
}

impl ValidationMetrics {
    pub fn get(&self, metric: Metric) -> f64 {
        metric.pick(self.accuracy, self.macro_f1, self.loss)
    }
}

/// How a caller stops a run: Ctrl-C sets `interrupt`; `interrupt_after_step`
/// stops as if interrupted once that many steps are done (time-boxed runs, tests).
/// Either way the run checkpoints and returns [`Outcome::Interrupted`].
/// A `referee` (`tune`'s pruner) hears every validation and may end the run as
/// [`Outcome::Pruned`].
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub interrupt: Arc<AtomicBool>,
    pub interrupt_after_step: Option<usize>,
    pub referee: Option<Arc<dyn Referee>>,
}

/// What a [`Referee`] says after a validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Not worth finishing: end now, cleanly, without a model.
    Prune,
    /// The referee is gone (its process died): checkpoint and stop, as Ctrl-C does.
    Interrupt,
}

/// Judges a run by its validations as they come (`tune`'s pruning).
pub trait Referee: Send + Sync + std::fmt::Debug {
    /// Called after each validation, at optimizer `step`, `epoch` epochs into training.
    fn judge(&self, step: usize, epoch: f64, metrics: &ValidationMetrics) -> Verdict;
}

impl Control {
    fn should_stop(&self, step: usize) -> bool {
        self.interrupt.load(Ordering::SeqCst) || self.interrupt_after_step.is_some_and(|last| step >= last)
    }
}
