//! How sure a model is, and how far to trust that: confidence figures, the
//! temperature that calibrates a model's probabilities, and its predictions'
//! profile on held-out data (`reference_predictions.json`), the reference for
//! prediction and confidence drift and for accuracy estimated without labels.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::profile::nearest_rank;

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
    with_temperature(probabilities, t)[crate::scores::argmax(probabilities)]
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
        let predicted = crate::scores::argmax(p);
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
    /// A tagger's entities on the same split (the rest is per word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<EntityProfile>,
}

/// A tagger's entities on the reference split, what monitoring compares live
/// entities with: how many of each type, per text, how long, how sure, and
/// how right. `eval` reads each sentence as `serve` reads a text (its words
/// joined by spaces, entities grouped by `eval.aggregation`, in characters),
/// so live and reference figures mean the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityProfile {
    pub sentences: usize,
    /// Predicted entities per type.
    pub predicted: BTreeMap<String, usize>,
    pub mean_span_words: f64,
    pub mean_score: f64,
    /// The entity score's nearest-rank percentiles 0, 1, ..., 100.
    pub score_percentiles: Vec<f64>,
    /// Entity F1 against the true entities (type and both offsets), micro and macro over types.
    pub micro_f1: f64,
    pub macro_f1: f64,
}

/// One text of the reference split: its true entities and the model's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfiledText {
    /// (type, start, end) in characters.
    pub truth: Vec<(String, usize, usize)>,
    pub predicted: Vec<ProfiledEntity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProfiledEntity {
    pub kind: String,
    pub start: usize,
    pub end: usize,
    pub score: f64,
    pub words: usize,
}

impl EntityProfile {
    pub fn of(texts: &[ProfiledText]) -> Self {
        use crate::entities::EntityCounts;
        let mut predicted = BTreeMap::new();
        let (mut words, mut scores) = (0usize, Vec::new());
        let mut counts = EntityCounts::default();
        for text in texts {
            let found = text.predicted.iter().map(|e| (e.kind.as_str(), e.start, e.end));
            counts.add(&EntityCounts::of_spans(text.truth.iter().map(|(k, s, e)| (k.as_str(), *s, *e)), found));
            for entity in &text.predicted {
                *predicted.entry(entity.kind.clone()).or_insert(0) += 1;
                words += entity.words;
                scores.push(entity.score);
            }
        }
        scores.sort_by(f64::total_cmp);
        let n = scores.len().max(1) as f64;
        Self {
            sentences: texts.len(),
            predicted,
            mean_span_words: words as f64 / n,
            mean_score: scores.iter().sum::<f64>() / n,
            score_percentiles: if scores.is_empty() {
                Vec::new()
            } else {
                (0..=100).map(|p| nearest_rank(&scores, f64::from(p) / 100.0)).collect()
            },
            micro_f1: counts.micro().f1,
            macro_f1: counts.macro_avg().f1,
        }
    }
}

impl PredictionProfile {
    /// `rows[i]` are the probabilities of example i, whose true label is `labels[i]`.
    pub fn of(split: &str, names: &[String], rows: &[Vec<f32>], labels: &[usize], low_confidence: f64) -> Self {
        let mut predicted: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
        let mut actual: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 0)).collect();
        let mut correct = 0;
        for (p, &y) in rows.iter().zip(labels) {
            let guess = crate::scores::argmax(p);
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
            entities: None,
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
    fn log_odds_z_matches_the_paper() {
        let z = log_odds_z(30.0, 1000.0, 10.0, 3000.0, 40.0, 4000.0);
        let expected = ((70.0f64 / 4930.0).ln() - (50.0f64 / 6950.0).ln()) / (1.0f64 / 70.0 + 1.0 / 50.0).sqrt();
        assert!((z - expected).abs() < 1e-12);
        assert!((z - 3.671_744).abs() < 1e-6, "{z}");
        assert!(log_odds_z(10.0, 1000.0, 30.0, 3000.0, 40.0, 4000.0).abs() < 1e-9, "same rate: no evidence");
    }
}
