//! Weak supervision's core, the part of the `label` stage that needs no text:
//! labelling functions vote a label or abstain on each row ([`LabelMatrix`]),
//! [`analysis`] says how much of the data each one covers and where they
//! disagree (Snorkel's `LFAnalysis`), and a label model turns the votes into a
//! distribution over labels per row: [`majority`] vote, [`DawidSkene`] (EM
//! over each function's confusion matrix) or [`MatrixCompletion`] (Snorkel's
//! `LabelModel`), which learn from the votes alone how far to trust each function.

pub mod analysis;
mod dawid_skene;
pub mod external;
pub mod functions;
mod matrix;
mod matrix_completion;

pub use analysis::{FunctionSummary, analyse, uncovered_share};
pub use dawid_skene::{DawidSkene, EmSettings};
pub use external::{LoadModel, ModelVoter, NoModels};
pub use functions::{Function, FunctionError, FunctionSpec, Rule, apply, apply_with_progress};
pub use matrix::{ABSTAIN, LabelMatrix, MatrixError};
pub use matrix_completion::{MatrixCompletion, MatrixCompletionError, MatrixCompletionSettings};

/// Each row's distribution over labels by plain vote counting: the labels
/// with the most votes share the probability (a tie splits it, as Snorkel's
/// `MajorityLabelVoter` does); a row no function votes on gets the uniform
/// distribution (check [`LabelMatrix::covered`] to drop it).
pub fn majority(matrix: &LabelMatrix) -> Vec<Vec<f64>> {
    let classes = matrix.classes();
    (0..matrix.rows())
        .map(|row| {
            let mut counts = vec![0usize; classes];
            for label in matrix.votes_of(row) {
                counts[label] += 1;
            }
            let most = counts.iter().copied().max().unwrap_or(0);
            if most == 0 {
                return vec![1.0 / classes as f64; classes];
            }
            let tied = counts.iter().filter(|&&c| c == most).count() as f64;
            counts.iter().map(|&c| if c == most { 1.0 / tied } else { 0.0 }).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_counts_votes_splits_ties_and_is_uniform_where_nobody_votes() {
        let matrix = LabelMatrix::new(3, 2, vec![0, 0, 1, 1, ABSTAIN, 0, ABSTAIN, ABSTAIN, ABSTAIN]).expect("valid");
        let probabilities = majority(&matrix);
        assert_eq!(probabilities[0], [1.0, 0.0]);
        assert_eq!(probabilities[1], [0.5, 0.5], "one vote each: a tie");
        assert_eq!(probabilities[2], [0.5, 0.5], "no vote: uniform");
    }
}
