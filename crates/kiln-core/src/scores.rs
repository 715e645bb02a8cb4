//! Classification scores from one confusion matrix: what `train` validates
//! with and `eval` reports. Definitions follow scikit-learn's
//! `precision_recall_fscore_support` (a class never predicted has precision 0,
//! a class absent from the data has recall 0; averages are over the classes
//! that occur as actual or predicted labels, as sklearn does by default).

use serde::{Deserialize, Serialize};

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

/// Class ids by descending probability, the `k` most likely (at least one).
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    order.truncate(k.max(1));
    order
}

/// The most likely class id (the first on a tie), in one pass: it runs per
/// text in `serve` and per sub-word in entity aggregation. Orders as
/// [`top_k`] does. Model scores (`f32`) or label distributions (`f64`).
pub fn argmax<P: Copy + Into<f64>>(probabilities: &[P]) -> usize {
    let mut best = 0;
    for (i, p) in probabilities.iter().enumerate().skip(1) {
        if (*p).into().total_cmp(&probabilities[best].into()).is_gt() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn confusion(pairs: &[(usize, usize)], classes: usize) -> Confusion {
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
    fn top_k_ranks_by_probability_and_breaks_ties_by_id() {
        assert_eq!(top_k(&[0.1, 0.6, 0.3], 2), [1, 2]);
        assert_eq!(top_k(&[0.5, 0.5], 5), [0, 1]);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0, "the first on a tie, as top_k");
        assert_eq!(top_k(&[0.2, 0.8], 0), [1], "at least one");
    }
}
