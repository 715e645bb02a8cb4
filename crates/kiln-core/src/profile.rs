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
    fn histogram_bins_from_zero_with_an_overflow() {
        let histogram = Histogram::of(&[0, 1, 9, 10, 19, 20, 500], 2, 10.0);
        assert_eq!((histogram.counts.as_slice(), histogram.overflow), (&[3, 2][..], 2));
        assert_eq!(histogram.total(), 7);
        assert_eq!(histogram.edges().collect::<Vec<_>>(), [0.0, 10.0]);
    }
}
