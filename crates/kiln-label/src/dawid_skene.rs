//! Dawid and Skene's label model (Applied Statistics, 1979): each function has
//! its own confusion matrix, P(it votes l, or abstains | the true label is k),
//! learned with EM from the votes alone. A function that is right more often
//! counts for more, one that confuses two labels in one direction is read
//! accordingly, and abstaining is an outcome too: a rule that only ever votes
//! `spam` says something by staying silent. Deterministic: EM starts from the
//! majority vote.

use crate::{LabelMatrix, majority};

/// How EM runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmSettings {
    pub max_iterations: usize,
    /// Stops when no probability of any row moves by more than this.
    pub tolerance: f64,
    /// Added to every count of a confusion matrix (Laplace), so a vote never
    /// seen for a label does not rule that label out.
    pub smoothing: f64,
}

impl Default for EmSettings {
    fn default() -> Self {
        Self { max_iterations: 1000, tolerance: 1e-4, smoothing: 0.01 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DawidSkene {
    /// P(true label = k).
    pub class_balance: Vec<f64>,
    /// `[function][true label][vote]`: P(vote | true label), the last column abstaining.
    pub confusion: Vec<Vec<Vec<f64>>>,
    /// EM iterations run.
    pub iterations: usize,
}

impl DawidSkene {
    pub fn fit(matrix: &LabelMatrix, settings: EmSettings) -> Self {
        let mut posterior = majority(matrix);
        let mut model = Self::maximise(matrix, &posterior, settings.smoothing);
        model.iterations = 0;
        for iteration in 1..=settings.max_iterations {
            let next = model.predict_proba(matrix);
            let moved = posterior
                .iter()
                .zip(&next)
                .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
                .fold(0.0, f64::max);
            posterior = next;
            model = Self::maximise(matrix, &posterior, settings.smoothing);
            model.iterations = iteration;
            if moved < settings.tolerance {
                break;
            }
        }
        model
    }

    /// The M step: class balance and confusion matrices from soft labels.
    fn maximise(matrix: &LabelMatrix, posterior: &[Vec<f64>], smoothing: f64) -> Self {
        let classes = matrix.classes();
        let mut class_balance = vec![0.0; classes];
        let mut confusion = vec![vec![vec![smoothing; classes + 1]; classes]; matrix.functions()];
        for (row, labels) in posterior.iter().enumerate() {
            if !matrix.covered(row) {
                continue;
            }
            for (k, &p) in labels.iter().enumerate() {
                class_balance[k] += p;
            }
            for (function, counts) in confusion.iter_mut().enumerate() {
                let outcome = matrix.vote(row, function).unwrap_or(classes);
                for (k, &p) in labels.iter().enumerate() {
                    counts[k][outcome] += p;
                }
            }
        }
        normalise(&mut class_balance);
        for counts in &mut confusion {
            for row in counts.iter_mut() {
                normalise(row);
            }
        }
        Self { class_balance, confusion, iterations: 0 }
    }

    /// The E step: each row's distribution over labels given its votes and abstentions.
    pub fn predict_proba(&self, matrix: &LabelMatrix) -> Vec<Vec<f64>> {
        let abstain = matrix.classes();
        (0..matrix.rows())
            .map(|row| {
                // In logs: a row with many votes would underflow a product.
                let mut log: Vec<f64> = self.class_balance.iter().map(|p| p.max(f64::MIN_POSITIVE).ln()).collect();
                for (function, counts) in self.confusion.iter().enumerate() {
                    let outcome = matrix.vote(row, function).unwrap_or(abstain);
                    for (k, value) in log.iter_mut().enumerate() {
                        *value += counts[k][outcome].max(f64::MIN_POSITIVE).ln();
                    }
                }
                let top = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut probabilities: Vec<f64> = log.iter().map(|v| (v - top).exp()).collect();
                normalise(&mut probabilities);
                probabilities
            })
            .collect()
    }

    /// Each function's learned accuracy: P(its vote is right | it votes).
    pub fn accuracies(&self) -> Vec<f64> {
        let abstain = self.class_balance.len();
        self.confusion
            .iter()
            .map(|counts| {
                let right: f64 = self.class_balance.iter().enumerate().map(|(k, p)| p * counts[k][k]).sum();
                let votes: f64 =
                    self.class_balance.iter().enumerate().map(|(k, p)| p * (1.0 - counts[k][abstain])).sum();
                if votes > 0.0 { right / votes } else { 0.0 }
            })
            .collect()
    }
}

fn normalise(values: &mut [f64]) {
    let sum: f64 = values.iter().sum();
    if sum > 0.0 {
        for value in values.iter_mut() {
            *value /= sum;
        }
    } else {
        let uniform = 1.0 / values.len() as f64;
        values.fill(uniform);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use kiln_core::scores::argmax;

    use crate::ABSTAIN;

    /// Rows with a true label (balance 0.3/0.7) and functions of known accuracy
    /// and coverage, each wrong vote the other label.
    fn synthetic(rows: usize, functions: &[(f64, f64)], seed: u64) -> (LabelMatrix, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut votes = Vec::with_capacity(rows * functions.len());
        let mut gold = Vec::with_capacity(rows);
        for _ in 0..rows {
            let truth = usize::from(rng.random::<f64>() < 0.7);
            gold.push(truth);
            for &(accuracy, coverage) in functions {
                votes.push(if rng.random::<f64>() >= coverage {
                    ABSTAIN
                } else if rng.random::<f64>() < accuracy {
                    truth as i32
                } else {
                    1 - truth as i32
                });
            }
        }
        (LabelMatrix::new(functions.len(), 2, votes).expect("valid"), gold)
    }

    fn accuracy(probabilities: &[Vec<f64>], gold: &[usize], matrix: &LabelMatrix) -> f64 {
        let covered: Vec<usize> = (0..gold.len()).filter(|&row| matrix.covered(row)).collect();
        let right = covered.iter().filter(|&&row| argmax(&probabilities[row]) == gold[row]).count();
        right as f64 / covered.len() as f64
    }

    /// One good function and three poor ones: the majority follows the poor
    /// ones, Dawid-Skene learns whom to trust, and its learned accuracies are
    /// the ones the data was drawn with.
    #[test]
    fn learns_each_functions_accuracy_and_beats_the_majority_without_gold() {
        let functions = [(0.95, 0.9), (0.65, 0.8), (0.6, 0.8), (0.6, 0.7)];
        let (matrix, gold) = synthetic(20_000, &functions, 7);
        let model = DawidSkene::fit(&matrix, EmSettings::default());
        for (learned, (drawn, _)) in model.accuracies().iter().zip(functions) {
            assert!((learned - drawn).abs() < 0.02, "learned {learned:.3}, drawn {drawn}");
        }
        let ones = gold.iter().filter(|&&label| label == 1).count() as f64 / gold.len() as f64;
        assert!((model.class_balance[1] - ones).abs() < 0.03, "{:?} vs {ones}", model.class_balance);
        let learned = accuracy(&model.predict_proba(&matrix), &gold, &matrix);
        let voted = accuracy(&majority(&matrix), &gold, &matrix);
        assert!(learned > voted + 0.05, "Dawid-Skene {learned:.3} vs majority {voted:.3}");
        assert!(model.iterations < EmSettings::default().max_iterations, "converged in {}", model.iterations);
        assert_eq!(DawidSkene::fit(&matrix, EmSettings::default()), model, "deterministic");
    }

    #[test]
    fn probabilities_are_distributions() {
        let (matrix, _) = synthetic(500, &[(0.9, 0.5), (0.8, 0.5)], 3);
        let model = DawidSkene::fit(&matrix, EmSettings::default());
        let probabilities = model.predict_proba(&matrix);
        for (row, p) in probabilities.iter().enumerate() {
            assert!(
                (p.iter().sum::<f64>() - 1.0).abs() < 1e-9 && p.iter().all(|v| (0.0..=1.0).contains(v)),
                "row {row}: {p:?}"
            );
        }
    }
}
