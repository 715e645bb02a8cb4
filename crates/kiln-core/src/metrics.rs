//! The metric files kiln writes and reads back: `eval`'s `metrics.json`
//! ([`EvalMetrics`]), `train`'s log ([`TrainLogLine`]) and the metric names
//! ([`Metric`]) that configs, run records and the registry use. The scores
//! inside come from [`crate::scores`] and [`crate::entities`].

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::Split;
use crate::entities::EntityScores;
use crate::output::FileHash;
use crate::scores::{ClassScores, Confusion};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::tests::confusion;

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
}
