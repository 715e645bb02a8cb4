//! `profile.json`: what a data set looks like. `profile` writes it; a model
//! folder carries its training data's profile, the reference that monitoring
//! compares live traffic with.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Nearest-rank summary of a list of lengths (characters or tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    pub mean: f64,
    pub p50: u32,
    pub p90: u32,
    pub p95: u32,
    pub p99: u32,
    pub max: u32,
}

impl LengthStats {
    pub fn of(lengths: &[u32]) -> Self {
        if lengths.is_empty() {
            return Self::default();
        }
        let mut sorted = lengths.to_vec();
        sorted.sort_unstable();
        Self {
            mean: sorted.iter().map(|&n| f64::from(n)).sum::<f64>() / sorted.len() as f64,
            p50: nearest_rank(&sorted, 0.50),
            p90: nearest_rank(&sorted, 0.90),
            p95: nearest_rank(&sorted, 0.95),
            p99: nearest_rank(&sorted, 0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// The nearest-rank `p` quantile of sorted, non-empty `values`.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Counts in equal-width bins from 0; values at or past the last edge go to
/// `overflow`. Every split of a profile shares one set of edges, so their
/// histograms compare bin by bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub width: f64,
    pub counts: Vec<u64>,
    pub overflow: u64,
}

impl Histogram {
    /// `bins` bins of `width` (at least 1) over `values`.
    pub fn of(values: &[u32], bins: usize, width: f64) -> Self {
        let width = width.max(1.0);
        let mut counts = vec![0; bins];
        let mut overflow = 0;
        for &value in values {
            match counts.get_mut((f64::from(value) / width) as usize) {
                Some(count) => *count += 1,
                None => overflow += 1,
            }
        }
        Self { width, counts, overflow }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.overflow
    }

    /// The bins' left edges (what a plot's x axis shows).
    pub fn edges(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.counts.len()).map(|index| index as f64 * self.width)
    }
}

/// A text flagged as odd, shown so a person can judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OddText {
    pub id: String,
    /// The first characters, control characters made visible.
    pub text: String,
}

/// How many texts look wrong in one way, with the first few.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OddTexts {
    pub count: usize,
    pub share: f64,
    pub examples: Vec<OddText>,
}

/// A token of a label: how often it occurs, its lift (share of this label's
/// tokens over its share of all tokens), and the z-score of its weighted
/// log-odds against the other labels (Monroe, Colaresi and Quinn 2008, with the
/// whole data's counts as the prior): above 1.96, over-represented at 95%.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCount {
    pub token: String,
    pub count: u64,
    pub lift: f64,
    pub z: f64,
}

/// One split's (or one file's) profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitProfile {
    pub rows: usize,
    /// Rows per label, by label; empty for unlabelled text.
    pub labels: BTreeMap<String, usize>,
    /// Rows of the most common label over rows of the rarest.
    pub imbalance_ratio: Option<f64>,
    /// `None` for processed (tokenized) tables, which keep no text.
    pub chars: Option<LengthStats>,
    pub chars_histogram: Option<Histogram>,
    /// Tokens per text before truncation, special tokens included.
    pub tokens: LengthStats,
    pub tokens_histogram: Histogram,
    /// Texts longer than `max_length` tokens (cut by `tokenize`).
    pub truncated: usize,
    pub truncation_rate: f64,
    /// Share of all tokens that are the unknown token, and of texts with one.
    pub unk_token_rate: f64,
    pub unk_text_rate: f64,
    /// Rows whose text appeared earlier in the split.
    pub duplicates: usize,
    pub duplicate_rate: f64,
    pub near_empty: OddTexts,
    pub non_printing: OddTexts,
    pub very_long: OddTexts,
    pub mostly_punctuation: OddTexts,
    /// Mean tokens per text, by label.
    pub mean_tokens_by_label: BTreeMap<String, f64>,
    /// The most frequent tokens of each label (special tokens and punctuation left out).
    pub top_tokens: BTreeMap<String, Vec<TokenCount>>,
    /// Tokens most over-represented in each label (highest log-odds z-score, z > 1.96).
    pub distinctive_tokens: BTreeMap<String, Vec<TokenCount>>,
    /// Token classification: entities per type (sentences carry no label of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<BTreeMap<String, usize>>,
}

/// `profile.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataProfile {
    /// The folder or file profiled.
    pub source: String,
    /// What was read: `text` (raw or cleaned) or `processed` (token ids).
    pub kind: String,
    pub tokenizer: String,
    pub max_length: usize,
    /// By split name (`train`, `validation`, `test`), or the file's name.
    pub splits: BTreeMap<String, SplitProfile>,
}

impl DataProfile {
    /// Its name in `[profile] output_dir`.
    pub const FILE: &str = "profile.json";

    pub fn load(path: &Path) -> Result<Self> {
        crate::output::read_json(path, "a kiln profile")
    }
}

/// Bins of the confidence histogram and of the calibration error.
pub const CONFIDENCE_BINS: usize = 15;

/// How sure a model is of one prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    /// The highest probability.
    pub top: f64,
    /// Highest minus second highest.
    pub margin: f64,
    /// -sum p ln p, in nats.
    pub entropy: f64,
}

impl Confidence {
    pub fn of(probabilities: &[f32]) -> Self {
        let (mut top, mut second) = (0.0f64, 0.0f64);
        let mut entropy = 0.0;
        for &p in probabilities {
            let p = f64::from(p);
            if p > top {
                second = top;
                top = p;
            } else if p > second {
                second = p;
            }
            if p > 0.0 {
                entropy -= p * p.ln();
            }
        }
        Self { top, margin: top - second, entropy }
    }
}

/// Means of the confidence measures over many predictions, and the share below
/// a threshold: what monitoring compares a window of live traffic with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceSummary {
    pub mean_top: f64,
    pub mean_margin: f64,
    pub mean_entropy: f64,
    pub low_confidence_threshold: f64,
    pub low_confidence_share: f64,
    /// Counts of the top probability in [`CONFIDENCE_BINS`] equal bins of [0, 1].
    pub top_histogram: Vec<u64>,
    /// The top probability's nearest-rank percentiles 0, 1, ..., 100 (for
    /// Kolmogorov-Smirnov and Wasserstein distances without the raw values).
    pub top_percentiles: Vec<f64>,
}

impl ConfidenceSummary {
    pub fn of(rows: &[Vec<f32>], low_confidence_threshold: f64) -> Self {
        let measures: Vec<Confidence> = rows.iter().map(|p| Confidence::of(p)).collect();
        let n = measures.len().max(1) as f64;
        let mean = |pick: fn(&Confidence) -> f64| measures.iter().map(pick).sum::<f64>() / n;
        let mut tops: Vec<f64> = measures.iter().map(|c| c.top).collect();
        tops.sort_by(f64::total_cmp);
        let mut top_histogram = vec![0; CONFIDENCE_BINS];
        for &top in &tops {
            top_histogram[confidence_bin(top)] += 1;
        }
        let top_percentiles = if tops.is_empty() {
            vec![]
        } else {
            (0..=100).map(|p| nearest_rank(&tops, f64::from(p) / 100.0)).collect()
        };
        Self {
            mean_top: mean(|c| c.top),
            mean_margin: mean(|c| c.margin),
            mean_entropy: mean(|c| c.entropy),
            low_confidence_threshold,
            low_confidence_share: tops.iter().filter(|&&t| t < low_confidence_threshold).count() as f64 / n,
            top_histogram,
            top_percentiles,
        }
    }
}

fn confidence_bin(top: f64) -> usize {
    ((top * CONFIDENCE_BINS as f64) as usize).min(CONFIDENCE_BINS - 1)
}

/// The probabilities' own logits, ln p (an exact zero floored at 1e-38):
/// softmax of them gives the probabilities back.
fn logits(probabilities: &[f32]) -> Vec<f64> {
    probabilities.iter().map(|&p| f64::from(p).max(1e-38).ln()).collect()
}

/// log softmax(logits / t), computed stably.
fn log_softmax(logits: &[f64], t: f64) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max) / t;
    let log_sum = max + logits.iter().map(|&v| (v / t - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&v| v / t - log_sum).collect()
}

/// Probabilities rescaled by a temperature: softmax(ln p / t), the
/// probabilities' own logits divided by `t`.
pub fn with_temperature(probabilities: &[f32], t: f64) -> Vec<f64> {
    log_softmax(&logits(probabilities), t).into_iter().map(f64::exp).collect()
}

/// The top probability after temperature scaling, the model's prediction
/// unchanged (a temperature keeps the order of the probabilities): the
/// calibrated confidence that accuracy estimates average.
pub fn calibrated_top(probabilities: &[f32], t: f64) -> f64 {
    with_temperature(probabilities, t)[crate::metrics::argmax(probabilities)]
}

/// Mean negative log-likelihood of the true labels at temperature `t`.
pub fn negative_log_likelihood(rows: &[Vec<f32>], labels: &[usize], t: f64) -> f64 {
    let rows: Vec<Vec<f64>> = rows.iter().map(|p| logits(p)).collect();
    mean_nll(&rows, labels, t)
}

fn mean_nll(logits: &[Vec<f64>], labels: &[usize], t: f64) -> f64 {
    let total: f64 = logits.iter().zip(labels).map(|(row, &y)| -log_softmax(row, t)[y]).sum();
    total / logits.len().max(1) as f64
}

/// Expected calibration error at temperature `t`: [`CONFIDENCE_BINS`] equal
/// bins of the top probability, |accuracy - mean confidence| weighted by each
/// bin's share of rows.
pub fn expected_calibration_error(rows: &[Vec<f32>], labels: &[usize], t: f64) -> f64 {
    let mut bins = vec![(0usize, 0usize, 0.0f64); CONFIDENCE_BINS];
    for (p, &y) in rows.iter().zip(labels) {
        let predicted = crate::metrics::argmax(p);
        let top = calibrated_top(p, t);
        let bin = &mut bins[confidence_bin(top)];
        bin.0 += 1;
        bin.1 += usize::from(predicted == y);
        bin.2 += top;
    }
    let n = rows.len().max(1) as f64;
    bins.iter()
        .filter(|(count, _, _)| *count > 0)
        .map(|&(count, correct, confidence)| {
            let count_f = count as f64;
            count_f / n * (correct as f64 / count_f - confidence / count_f).abs()
        })
        .sum()
}

/// The temperature that minimises the negative log-likelihood (Guo et al.
/// 2017), by golden-section search over ln t in [ln 0.05, ln 20] (the
/// likelihood is convex in 1/t).
pub fn fit_temperature(rows: &[Vec<f32>], labels: &[usize]) -> f64 {
    // The logits are taken once; the search evaluates the likelihood ~50 times.
    let rows: Vec<Vec<f64>> = rows.iter().map(|p| logits(p)).collect();
    let loss = |log_t: f64| mean_nll(&rows, labels, log_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut low, mut high) = (0.05f64.ln(), 20f64.ln());
    let mut left = high - ratio * (high - low);
    let mut right = low + ratio * (high - low);
    let (mut left_loss, mut right_loss) = (loss(left), loss(right));
    while high - low > 1e-9 {
        if left_loss < right_loss {
            high = right;
            right = left;
            right_loss = left_loss;
            left = high - ratio * (high - low);
            left_loss = loss(left);
        } else {
            low = left;
            left = right;
            left_loss = right_loss;
            right = low + ratio * (high - low);
            right_loss = loss(right);
        }
    }
    ((low + high) / 2.0).exp()
}

/// What a model's predictions look like on held-out data (`eval` on the
/// validation split): the reference for prediction and confidence drift, and
/// the calibration that turns confidence into estimated accuracy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictionProfile {
    pub split: String,
    pub rows: usize,
    pub accuracy: f64,
    /// Rows per predicted label, every label listed.
    pub predicted: BTreeMap<String, usize>,
    /// Rows per true label.
    pub actual: BTreeMap<String, usize>,
    pub confidence: ConfidenceSummary,
    /// Temperature scaling fitted on these rows; probabilities ^ (1/t), renormalised.
    pub temperature: f64,
    pub nll_before: f64,
    pub nll_after: f64,
    pub ece_before: f64,
    pub ece_after: f64,
}

impl PredictionProfile {
    /// `rows[i]` are the probabilities of example i, whose true label is `labels[i]`.
    pub fn of(split: &str, names: &[String], rows: &[Vec<f32>], labels: &[usize], low_confidence: f64) -> Self {
        let mut predicted: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
        let mut actual: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
        let mut correct = 0;
        for (p, &y) in rows.iter().zip(labels) {
            let guess = crate::metrics::argmax(p);
            correct += usize::from(guess == y);
            if let Some(count) = names.get(guess).and_then(|n| predicted.get_mut(n)) {
                *count += 1;
            }
            if let Some(count) = names.get(y).and_then(|n| actual.get_mut(n)) {
                *count += 1;
            }
        }
        let temperature = fit_temperature(rows, labels);
        Self {
            split: split.to_owned(),
            rows: rows.len(),
            accuracy: correct as f64 / rows.len().max(1) as f64,
            predicted,
            actual,
            confidence: ConfidenceSummary::of(rows, low_confidence),
            temperature,
            nll_before: negative_log_likelihood(rows, labels, 1.0),
            nll_after: negative_log_likelihood(rows, labels, temperature),
            ece_before: expected_calibration_error(rows, labels, 1.0),
            ece_after: expected_calibration_error(rows, labels, temperature),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        crate::output::read_json(path, "a kiln prediction profile")
    }
}

/// The z-score of the weighted log-odds of a token in one group against the
/// rest, with an informative Dirichlet prior `prior` (the token's count in all
/// the data) out of `prior_total` (all tokens): "Fightin' Words", Monroe,
/// Colaresi and Quinn (2008), eq. 16, 18-19.
pub fn log_odds_z(count: f64, total: f64, rest_count: f64, rest_total: f64, prior: f64, prior_total: f64) -> f64 {
    let log_odds = |y: f64, n: f64| ((y + prior) / (n + prior_total - y - prior)).ln();
    let delta = log_odds(count, total) - log_odds(rest_count, rest_total);
    let variance = 1.0 / (count + prior) + 1.0 / (rest_count + prior);
    delta / variance.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_percentiles_are_nearest_rank() {
        let lengths: Vec<u32> = (1..=100).collect();
        let stats = LengthStats::of(&lengths);
        assert_eq!((stats.p50, stats.p90, stats.p95, stats.p99, stats.max), (50, 90, 95, 99, 100));
        assert!((stats.mean - 50.5).abs() < 1e-9);
        assert_eq!(LengthStats::of(&[7]).p99, 7);
        assert_eq!(LengthStats::of(&[]), LengthStats::default());
    }

    /// Checked against a direct evaluation of Monroe et al.'s formulas in Python:
    /// y_i=30, n_i=1000, y_j=10, n_j=3000, alpha_w=40, alpha_0=4000.
    #[test]
    fn log_odds_z_matches_the_paper() {
        let z = log_odds_z(30.0, 1000.0, 10.0, 3000.0, 40.0, 4000.0);
        let expected = ((70.0f64 / 4930.0).ln() - (50.0f64 / 6950.0).ln()) / (1.0f64 / 70.0 + 1.0 / 50.0).sqrt();
        assert!((z - expected).abs() < 1e-12);
        assert!((z - 3.671_744).abs() < 1e-6, "{z}");
        assert!(log_odds_z(10.0, 1000.0, 30.0, 3000.0, 40.0, 4000.0).abs() < 1e-9, "same rate: no evidence");
    }

    #[test]
    fn histogram_bins_from_zero_with_an_overflow() {
        let histogram = Histogram::of(&[0, 1, 9, 10, 19, 20, 500], 2, 10.0);
        assert_eq!((histogram.counts.as_slice(), histogram.overflow), (&[3, 2][..], 2));
        assert_eq!(histogram.total(), 7);
        assert_eq!(histogram.edges().collect::<Vec<_>>(), [0.0, 10.0]);
    }
}
