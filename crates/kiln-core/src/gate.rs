//! The champion/challenger gate's decision: written to the registry record of
//! the challenger and to the `gate` run's record, so every promotion (or
//! refusal) keeps its figures and its reason.

use serde::{Deserialize, Serialize};

use crate::{FileHash, Metric};

/// One class's recall under each model, on the same holdout rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassComparison {
    pub label: String,
    pub support: usize,
    pub champion_recall: f64,
    pub challenger_recall: f64,
}

/// Both taggers' entity micro-F1 on the holdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntityMicroF1 {
    pub champion: Option<f64>,
    pub challenger: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    /// Registry versions; `champion` is `None` when nothing was in production.
    pub champion: Option<u32>,
    pub challenger: u32,
    pub holdout: Vec<FileHash>,
    /// Holdout rows (a tagger's: sentences) both models were scored on.
    pub rows: usize,
    /// Rows left out: a true label one of the models does not know (a new class).
    pub rows_without_shared_label: usize,
    pub metric: Metric,
    pub champion_value: Option<f64>,
    pub challenger_value: f64,
    /// Challenger minus champion, with a paired bootstrap interval.
    pub difference: Option<f64>,
    pub difference_low: Option<f64>,
    pub difference_high: Option<f64>,
    /// How much worse than the champion the challenger may be.
    pub margin: f64,
    /// Rows only the champion got right, and only the challenger.
    pub only_champion_right: usize,
    pub only_challenger_right: usize,
    /// McNemar's exact test on those disagreements (two-sided).
    pub mcnemar_p: Option<f64>,
    /// Classes with at least `min_class_support` holdout rows (a tagger's: entity types with as many true entities).
    pub classes: Vec<ClassComparison>,
    pub class_margin: f64,
    pub min_class_support: usize,
    /// A tagger's entity micro-F1 (seqeval's default mode), beside the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_micro_f1: Option<EntityMicroF1>,
    pub promote: bool,
    /// Why, in words: every check that failed, or that all passed.
    pub reasons: Vec<String>,
    /// Unix milliseconds.
    pub decided_ms: u64,
}
