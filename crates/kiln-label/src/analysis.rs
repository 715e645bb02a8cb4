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

/// One summary per function, in the matrix's order; `gold` (a label per row) adds accuracy.
pub fn analyse(matrix: &LabelMatrix, gold: Option<&[usize]>) -> Vec<FunctionSummary> {
    let rows = matrix.rows().max(1) as f64;
    (0..matrix.functions())
        .map(|function| {
            let (mut voted, mut overlaps, mut conflicts) = (0usize, 0usize, 0usize);
            let mut polarity = vec![false; matrix.classes()];
            let (mut correct, mut incorrect) = (0usize, 0usize);
            for row in 0..matrix.rows() {
                let Some(label) = matrix.vote(row, function) else { continue };
                voted += 1;
                polarity[label] = true;
                let others = (0..matrix.functions()).filter(|&f| f != function).filter_map(|f| matrix.vote(row, f));
                let (mut any, mut different) = (false, false);
                for other in others {
                    any = true;
                    different |= other != label;
                }
                overlaps += usize::from(any);
                conflicts += usize::from(different);
                if let Some(gold) = gold {
                    if gold[row] == label {
                        correct += 1;
                    } else {
                        incorrect += 1;
                    }
                }
            }
            let scored = correct + incorrect;
            FunctionSummary {
                coverage: voted as f64 / rows,
                overlaps: overlaps as f64 / rows,
                conflicts: conflicts as f64 / rows,
                polarity: polarity.iter().enumerate().filter(|(_, on)| **on).map(|(label, _)| label).collect(),
                correct: gold.map(|_| correct),
                incorrect: gold.map(|_| incorrect),
                empirical_accuracy: (gold.is_some() && scored > 0).then(|| correct as f64 / scored as f64),
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
