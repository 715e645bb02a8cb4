//! Classification metrics, from one confusion matrix: what `train` validates
//! with and `eval` reports. Definitions follow scikit-learn's
//! `precision_recall_fscore_support` (a class never predicted has precision 0,
//! a class absent from the data has recall 0; averages are over the classes
//! that occur as actual or predicted labels, as sklearn does by default).

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::Split;
use crate::entities::EntityScores;
use crate::output::FileHash;

/// Counts of (actual, predicted) label-id pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    classes: usize,
    /// Row-major `[actual][predicted]`.
    counts: Vec<u64>,
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Self { classes, counts: vec![0; classes * classes] }
    }

    /// Counts one prediction. Ids must be below the class count (kiln checks
    /// labels against the model before predicting).
    pub fn add(&mut self, actual: usize, predicted: usize) {
        assert!(actual < self.classes && predicted < self.classes, "label id out of range. This is a bug.");
        self.counts[actual * self.classes + predicted] += 1;
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn count(&self, actual: usize, predicted: usize) -> u64 {
        self.counts[actual * self.classes + predicted]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        ratio(correct, self.total())
    }

    pub fn class_scores(&self, class: usize) -> ClassScores {
        let hits = self.count(class, class);
        let support: u64 = (0..self.classes).map(|p| self.count(class, p)).sum();
        let predicted: u64 = (0..self.classes).map(|a| self.count(a, class)).sum();
        ClassScores::from_counts(hits, predicted, support)
    }

    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.classes).map(|c| self.class_scores(c)).collect()
    }

    /// Unweighted mean over classes: small classes count as much as large ones.
    pub fn macro_avg(&self) -> ClassScores {
        self.average(|_| 1.0)
    }

    /// Mean over classes weighted by support.
    pub fn weighted_avg(&self) -> ClassScores {
        self.average(|s| s.support as f64)
    }

    pub fn macro_f1(&self) -> f64 {
        self.macro_avg().f1
    }

    fn average(&self, weight: impl Fn(&ClassScores) -> f64) -> ClassScores {
        let scores: Vec<ClassScores> = (0..self.classes)
            .filter(|&c| (0..self.classes).any(|o| self.count(c, o) + self.count(o, c) > 0))
            .map(|c| self.class_scores(c))
            .collect();
        ClassScores::mean(&scores, weight)
    }
}

impl ClassScores {
    /// From counts; a ratio with nothing under it is 0 (scikit-learn's and
    /// seqeval's `zero_division=0`).
    pub fn from_counts(hits: u64, predicted: u64, support: u64) -> Self {
        let (precision, recall) = (ratio(hits, predicted), ratio(hits, support));
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        Self { precision, recall, f1, support }
    }

    /// The mean of `scores` under `weight` (1 for macro, support for weighted);
    /// 0 when there is nothing to weigh. Support is summed.
    pub fn mean(scores: &[ClassScores], weight: impl Fn(&ClassScores) -> f64) -> Self {
        let total_weight: f64 = scores.iter().map(&weight).sum();
        let mean = |field: fn(&ClassScores) -> f64| {
            if total_weight == 0.0 {
                0.0
            } else {
                scores.iter().map(|s| weight(s) * field(s)).sum::<f64>() / total_weight
            }
        };
        Self {
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
            support: scores.iter().map(|s| s.support).sum(),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// The figure that picks the best checkpoint in training and decides a
/// promotion in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Metric {
    /// Macro-averaged F1: every class counts the same, whatever its size.
    #[default]
    MacroF1,
    Accuracy,
    /// Cross-entropy (lower is better).
    Loss,
}

impl Metric {
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Self::Loss)
    }

    /// Whether `value` beats `other` on this metric.
    pub fn is_better(self, value: f64, other: f64) -> bool {
        if self.higher_is_better() { value > other } else { value < other }
    }

    /// The key it has in `metrics.json`, run records and the registry.
    pub fn key(self) -> &'static str {
        match self {
            Self::MacroF1 => "macro_f1",
            Self::Accuracy => "accuracy",
            Self::Loss => "loss",
        }
    }

    /// This metric among a set of headline figures.
    pub fn pick(self, accuracy: f64, macro_f1: f64, loss: f64) -> f64 {
        match self {
            Self::MacroF1 => macro_f1,
            Self::Accuracy => accuracy,
            Self::Loss => loss,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `eval`'s `metrics.json` (and `eval_metrics.json` in an export or a registry
/// version): headline figures first, flat, as `dvc metrics show` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub accuracy: f64,
    /// Mean cross-entropy of the true labels.
    pub loss: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    pub examples: usize,
    pub split: Split,
    /// By label, in the model's label-id order.
    #[serde(with = "ordered_map")]
    pub per_class: Vec<(String, ClassScores)>,
    /// The model files scored (weights first, then config).
    pub model: Vec<FileHash>,
    /// The split scored.
    pub data: FileHash,
    /// Token classification: entity-level scores in both of seqeval's modes.
    /// The flat figures above are then word accuracy and the conlleval mode's
    /// averages over entity types, and `examples` counts sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<EntityMetrics>,
}

/// Entity-level scores of a token-classification model, as seqeval scores
/// them by default (conlleval: an `I-` after `O` starts an entity) and in
/// strict IOB2 mode (only `B-` starts one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMetrics {
    pub conlleval: EntityScores,
    pub strict: EntityScores,
}

impl EvalMetrics {
    /// Its name in `[eval] output_dir`.
    pub const FILE: &str = "metrics.json";

    /// The figures of a finished confusion matrix; `labels` in label-id order.
    pub fn new(
        confusion: &Confusion,
        loss: f64,
        labels: &[String],
        split: Split,
        model: Vec<FileHash>,
        data: FileHash,
    ) -> Self {
        let (macro_avg, weighted) = (confusion.macro_avg(), confusion.weighted_avg());
        Self {
            accuracy: confusion.accuracy(),
            loss,
            macro_precision: macro_avg.precision,
            macro_recall: macro_avg.recall,
            macro_f1: macro_avg.f1,
            weighted_precision: weighted.precision,
            weighted_recall: weighted.recall,
            weighted_f1: weighted.f1,
            examples: confusion.total() as usize,
            split,
            per_class: labels.iter().cloned().zip(confusion.per_class()).collect(),
            model,
            data,
            entities: None,
        }
    }

    /// The figures of a token-classification model over `sentences`:
    /// `loss` is the mean cross-entropy over labelled sub-words.
    pub fn for_entities(
        entities: EntityMetrics,
        loss: f64,
        sentences: usize,
        split: Split,
        model: Vec<FileHash>,
        data: FileHash,
    ) -> Self {
        let main = &entities.conlleval;
        Self {
            accuracy: main.token_accuracy,
            loss,
            macro_precision: main.macro_avg.precision,
            macro_recall: main.macro_avg.recall,
            macro_f1: main.macro_avg.f1,
            weighted_precision: main.weighted.precision,
            weighted_recall: main.weighted.recall,
            weighted_f1: main.weighted.f1,
            examples: sentences,
            split,
            per_class: main.per_type.iter().map(|(kind, s)| (kind.clone(), s.scores())).collect(),
            model,
            data,
            entities: Some(entities),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        crate::output::read_json(path, "an eval metrics.json")
    }

    /// `load`, or `None` when the file does not exist.
    pub fn load_if_present(path: &Path) -> Result<Option<Self>> {
        crate::output::read_json_if_present(path, "an eval metrics.json")
    }

    pub fn get(&self, metric: Metric) -> f64 {
        metric.pick(self.accuracy, self.macro_f1, self.loss)
    }

    /// The headline figures by key, for run records, the registry and MLflow.
    pub fn headline(&self) -> [(&'static str, f64); 6] {
        [
            ("accuracy", self.accuracy),
            ("macro_f1", self.macro_f1),
            ("macro_precision", self.macro_precision),
            ("macro_recall", self.macro_recall),
            ("weighted_f1", self.weighted_f1),
            ("loss", self.loss),
        ]
    }
}

/// A list of `(label, scores)` as a JSON object whose keys keep the list's order.
mod ordered_map {
    use std::fmt;

    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    use super::ClassScores;

    pub fn serialize<S: Serializer>(entries: &[(String, ClassScores)], serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (label, scores) in entries {
            map.serialize_entry(label, scores)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, ClassScores)>, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Vec<(String, ClassScores)>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label: {precision, recall, f1, support}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(entries)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// One line of `train`'s metrics log (`metrics.jsonl`): what training writes
/// and what the curves, run records and MLflow read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrainLogRecord {
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
    /// A kind this kiln does not know (written by a newer one): skipped.
    #[serde(other)]
    Other,
}

/// A log record with the time it was written (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainLogLine {
    #[serde(flatten)]
    pub record: TrainLogRecord,
    #[serde(default)]
    pub time_ms: Option<u64>,
}

impl TrainLogLine {
    /// The log's name in `[train] run_dir`.
    pub const FILE: &str = "metrics.jsonl";

    /// Every line of a metrics log, in order; a line that is not a record is an
    /// error naming the file and line.
    pub fn read_all(path: &Path) -> Result<Vec<Self>> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line)
                    .with_context(|| format!("{}: line {}: not a metrics log record", path.display(), number + 1))
            })
            .collect()
    }
}

/// Class ids by descending probability, the `k` most likely (at least one).
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order.truncate(k.max(1));
    order
}

/// The most likely class id (the first on a tie), in one pass: it runs per
/// text in `serve` and per sub-word in entity aggregation. Orders as
/// [`top_k`] does.
pub fn argmax(probabilities: &[f32]) -> usize {
    let mut best = 0;
    for (i, p) in probabilities.iter().enumerate().skip(1) {
        if p.total_cmp(&probabilities[best]).is_gt() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusion(pairs: &[(usize, usize)], classes: usize) -> Confusion {
        let mut confusion = Confusion::new(classes);
        for &(actual, predicted) in pairs {
            confusion.add(actual, predicted);
        }
        confusion
    }

    /// Worked by hand (and by sklearn.metrics.classification_report):
    /// y_true = [0, 0, 0, 1, 1, 2], y_pred = [0, 0, 1, 1, 2, 2].
    #[test]
    fn matches_hand_computed_scores() {
        let c = confusion(&[(0, 0), (0, 0), (0, 1), (1, 1), (1, 2), (2, 2)], 3);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let zero = c.class_scores(0);
        assert_eq!((zero.precision, zero.support), (1.0, 3));
        assert!((zero.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((zero.f1 - 0.8).abs() < 1e-12);
        let one = c.class_scores(1);
        assert!((one.precision - 0.5).abs() < 1e-12 && (one.recall - 0.5).abs() < 1e-12);
        let two = c.class_scores(2);
        assert!((two.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.macro_f1() - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        let weighted = c.weighted_avg();
        assert!((weighted.f1 - (3.0 * 0.8 + 2.0 * 0.5 + 2.0 / 3.0) / 6.0).abs() < 1e-12);
        assert_eq!(weighted.support, 6);
    }

    #[test]
    fn never_predicted_and_absent_classes_score_zero() {
        let c = confusion(&[(0, 0), (1, 0)], 3);
        assert_eq!(c.class_scores(1).precision, 0.0, "class 1 is never predicted");
        assert_eq!(c.class_scores(2), ClassScores { precision: 0.0, recall: 0.0, f1: 0.0, support: 0 });
        assert!((c.macro_f1() - (2.0 / 3.0) / 2.0).abs() < 1e-12, "a class in neither column is left out");
        assert_eq!(Confusion::new(2).accuracy(), 0.0, "no predictions, no division by zero");
    }

    #[test]
    fn eval_metrics_round_trip_with_per_class_in_label_order() {
        let confusion = confusion(&[(0, 0), (1, 1), (1, 0), (2, 2)], 3);
        let hash = |p: &str| FileHash { path: p.into(), sha256: "ab".into() };
        let labels = ["zeta".to_owned(), "alpha".to_owned(), "mid".to_owned()];
        let metrics = EvalMetrics::new(&confusion, 0.5, &labels, Split::Test, vec![hash("m")], hash("d"));
        let json = serde_json::to_string(&metrics).expect("serialises");
        assert!(json.find("\"zeta\"") < json.find("\"alpha\""), "label order kept: {json}");
        let back: EvalMetrics = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, metrics);
        assert_eq!(back.get(Metric::Accuracy), 0.75);
        assert_eq!(back.get(Metric::Loss), 0.5);
        assert!(Metric::Loss.is_better(0.1, 0.2) && Metric::MacroF1.is_better(0.2, 0.1));
    }

    #[test]
    fn train_log_lines_parse_and_unknown_kinds_are_kept_as_other() {
        let line =
            r#"{"kind":"eval","step":4,"epoch":1.0,"loss":0.5,"accuracy":0.8,"macro_f1":0.7,"best":true,"time_ms":9}"#;
        let parsed: TrainLogLine = serde_json::from_str(line).expect("parses");
        assert_eq!(parsed.time_ms, Some(9));
        assert!(matches!(parsed.record, TrainLogRecord::Eval { step: 4, best: true, .. }));
        let parsed: TrainLogLine = serde_json::from_str(r#"{"kind":"future","x":1}"#).expect("parses");
        assert_eq!(parsed.record, TrainLogRecord::Other);
    }

    #[test]
    fn top_k_ranks_by_probability_and_breaks_ties_by_id() {
        assert_eq!(top_k(&[0.1, 0.6, 0.3], 2), [1, 2]);
        assert_eq!(top_k(&[0.5, 0.5], 5), [0, 1]);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0, "the first on a tie, as top_k");
        assert_eq!(top_k(&[0.2, 0.8], 0), [1], "at least one");
    }
}
