//! What each labelling function does on the data, as Snorkel's `LFAnalysis`
//! reports it: the share of rows it votes on (coverage), on which another
//! function votes too (overlaps) or votes another label (conflicts), the
//! labels it ever votes (polarity) and, against gold labels, how often it is right.

use serde::Serialize;

use crate::LabelMatrix;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSummary {
    pub coverage: f64,
    pub overlaps: f64,
    pub conflicts: f64,
    /// The labels it votes, in label-id order.
    pub polarity: Vec<usize>,
    /// Against gold labels, on the rows it votes on (`None` without gold).
    pub correct: Option<usize>,
    pub incorrect: Option<usize>,
    /// `correct / (correct + incorrect)`; `None` without gold or when it votes on no gold row.
    pub empirical_accuracy: Option<f64>,
}

/// Per function, what [`analyse`] counts, before dividing by the rows.
#[derive(Clone, Default)]
struct Counts {
    voted: usize,
    overlaps: usize,
    conflicts: usize,
    correct: usize,
    incorrect: usize,
}

/// One summary per function, in the matrix's order; `gold` (a label per row) adds accuracy.
/// One pass over the rows: each row's votes per label are counted once, and
/// every function voting on it reads overlap and conflict from those counts.
pub fn analyse(matrix: &LabelMatrix, gold: Option<&[usize]>) -> Vec<FunctionSummary> {
    let mut counts = vec![Counts::default(); matrix.functions()];
    let mut polarity = vec![vec![false; matrix.classes()]; matrix.functions()];
    let mut per_label = vec![0usize; matrix.classes()];
    for row in 0..matrix.rows() {
        per_label.fill(0);
        let mut voters = 0;
        for label in matrix.votes_of(row) {
            per_label[label] += 1;
            voters += 1;
        }
        for (function, counts) in counts.iter_mut().enumerate() {
            let Some(label) = matrix.vote(row, function) else { continue };
            counts.voted += 1;
            polarity[function][label] = true;
            counts.overlaps += usize::from(voters > 1);
            counts.conflicts += usize::from(voters > per_label[label]);
            match gold {
                Some(gold) if gold[row] == label => counts.correct += 1,
                Some(_) => counts.incorrect += 1,
                None => {}
            }
        }
    }
    let rows = matrix.rows().max(1) as f64;
    counts
        .into_iter()
        .zip(polarity)
        .map(|(counts, polarity)| {
            let scored = counts.correct + counts.incorrect;
            FunctionSummary {
                coverage: counts.voted as f64 / rows,
                overlaps: counts.overlaps as f64 / rows,
                conflicts: counts.conflicts as f64 / rows,
                polarity: polarity.iter().enumerate().filter(|(_, on)| **on).map(|(label, _)| label).collect(),
                correct: gold.map(|_| counts.correct),
                incorrect: gold.map(|_| counts.incorrect),
                empirical_accuracy: (gold.is_some() && scored > 0).then(|| counts.correct as f64 / scored as f64),
            }
        })
        .collect()
}

/// The share of rows no function votes on.
pub fn uncovered_share(matrix: &LabelMatrix) -> f64 {
    let uncovered = (0..matrix.rows()).filter(|&row| !matrix.covered(row)).count();
    uncovered as f64 / matrix.rows().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ABSTAIN;

    /// Worked by hand, as `LFAnalysis(L).lf_summary(Y)` reports it:
    /// rows (f0, f1, f2) = (0, 0, -), (1, 0, -), (-, 1, 1), (-, -, -); gold 0, 1, 1, 0.
    #[test]
    fn coverage_overlaps_conflicts_polarity_and_accuracy_match_hand_counts() {
        let n = ABSTAIN;
        let matrix = LabelMatrix::new(3, 2, vec![0, 0, n, 1, 0, n, n, 1, 1, n, n, n]).expect("valid");
        let summary = analyse(&matrix, Some(&[0, 1, 1, 0]));
        let f0 = &summary[0];
        assert_eq!((f0.coverage, f0.overlaps, f0.conflicts), (0.5, 0.5, 0.25));
        assert_eq!(
            (f0.polarity.clone(), f0.correct, f0.incorrect, f0.empirical_accuracy),
            (vec![0, 1], Some(2), Some(0), Some(1.0))
        );
        let f1 = &summary[1];
        assert_eq!((f1.coverage, f1.overlaps, f1.conflicts), (0.75, 0.75, 0.25));
        assert_eq!((f1.correct, f1.incorrect), (Some(2), Some(1)));
        assert!((f1.empirical_accuracy.expect("scored") - 2.0 / 3.0).abs() < 1e-12);
        let f2 = &summary[2];
        assert_eq!((f2.coverage, f2.overlaps, f2.conflicts, f2.polarity.clone()), (0.25, 0.25, 0.0, vec![1]));
        assert_eq!(uncovered_share(&matrix), 0.25);
        let without_gold = analyse(&matrix, None);
        assert_eq!((without_gold[0].correct, without_gold[0].empirical_accuracy), (None, None));
    }
}
