//! The statistics monitoring and model comparison use, each checked against
//! numpy/scipy on committed fixtures (`tests/fixtures/drift_scipy.json`, made
//! by `scripts/fixtures/make_drift_fixture.py`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF, Normal};

/// The share an empty bin is given in [`psi`], so one
/// category that never occurs on one side does not make them infinite.
pub const EMPTY_BIN_SHARE: f64 = 1e-4;

/// `counts` as shares of their total, empty bins raised to [`EMPTY_BIN_SHARE`].
fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts.iter().map(|&c| if total > 0.0 { (c / total).max(EMPTY_BIN_SHARE) } else { EMPTY_BIN_SHARE }).collect()
}

/// Population stability index: sum over bins of (a - r) ln(a / r), the shares
/// of `actual` and `reference` counts over the same bins. Under 0.1: no real
/// change; 0.1-0.25: a moderate one; above 0.25: a major one.
pub fn psi(reference: &[f64], actual: &[f64]) -> f64 {
    let (r, a) = (shares(reference), shares(actual));
    r.iter().zip(&a).map(|(&r, &a)| (a - r) * (a / r).ln()).sum()
}

/// Pearson's chi-square test that two count vectors come from one
/// distribution (homogeneity, a 2 x bins contingency table without Yates'
/// correction; `scipy.stats.chi2_contingency`). It counts the reference's own
/// sampling noise, unlike a goodness-of-fit test against the reference's
/// shares: a reference of 60 rows cannot make a window of 200 look different. Bins empty on both sides are left out.
pub fn chi_square_homogeneity(reference: &[f64], observed: &[f64]) -> (f64, f64) {
    let bins: Vec<(f64, f64)> =
        reference.iter().zip(observed).map(|(&r, &o)| (r, o)).filter(|(r, o)| r + o > 0.0).collect();
    let (r_total, o_total) = bins.iter().fold((0.0, 0.0), |(r, o), &(br, bo)| (r + br, o + bo));
    let total = r_total + o_total;
    if bins.len() < 2 || r_total == 0.0 || o_total == 0.0 {
        return (0.0, 1.0);
    }
    let statistic: f64 = bins
        .iter()
        .map(|&(r, o)| {
            let column = r + o;
            let (er, eo) = (column * r_total / total, column * o_total / total);
            (r - er).powi(2) / er + (o - eo).powi(2) / eo
        })
        .sum();
    let p = ChiSquared::new((bins.len() - 1) as f64).map_or(1.0, |distribution| distribution.sf(statistic));
    (statistic, p)
}

/// Jensen-Shannon distance (the square root of the divergence, base 2, so in
/// [0, 1]) between two count vectors' shares (`scipy.spatial.distance.jensenshannon`).
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let normalise = |v: &[f64]| {
        let total: f64 = v.iter().sum();
        v.iter().map(|&x| if total > 0.0 { x / total } else { 0.0 }).collect::<Vec<_>>()
    };
    let (p, q) = (normalise(p), normalise(q));
    let kl_to_mid = |a: &[f64]| -> f64 {
        a.iter()
            .zip(p.iter().zip(&q))
            .filter(|(x, _)| **x > 0.0)
            .map(|(&x, (&pi, &qi))| x * (x / ((pi + qi) / 2.0)).log2())
            .sum()
    };
    ((kl_to_mid(&p) + kl_to_mid(&q)) / 2.0).max(0.0).sqrt()
}

/// The two-sample Kolmogorov-Smirnov statistic: the largest gap between the
/// samples' empirical distribution functions (`scipy.stats.ks_2samp`).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut gap) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        gap = gap.max((i as f64 / n - j as f64 / m).abs());
    }
    gap
}

/// The asymptotic p-value of a two-sample KS statistic `d` between samples of
/// `n` and `m` values: the Kolmogorov distribution's survival function at
/// sqrt(nm / (n + m)) d (`scipy.stats.kstwobign.sf`).
pub fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let (n, m) = (n as f64, m as f64);
    kolmogorov_sf((n * m / (n + m)).sqrt() * d)
}

/// P(K > x) for the Kolmogorov distribution: the alternating series for
/// large x, the Jacobi theta form for small x (both converge fast there).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        let pi2 = std::f64::consts::PI.powi(2);
        let cdf: f64 = (2.0 * std::f64::consts::PI).sqrt() / x
            * (1..=20).map(|k| (-(f64::from(2 * k - 1)).powi(2) * pi2 / (8.0 * x * x)).exp()).sum::<f64>();
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let sf: f64 = 2.0
        * (1..=100)
            .map(|k| (if k % 2 == 1 { 1.0 } else { -1.0 }) * (-2.0 * f64::from(k * k) * x * x).exp())
            .sum::<f64>();
    sf.clamp(0.0, 1.0)
}

/// The first Wasserstein (earth mover's) distance between two samples: the
/// area between their empirical distribution functions (`scipy.stats.wasserstein_distance`).
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut points: Vec<f64> = a.iter().chain(&b).copied().collect();
    points.sort_by(f64::total_cmp);
    let cdf = |sorted: &[f64], x: f64| sorted.partition_point(|&v| v <= x) as f64 / sorted.len() as f64;
    points.windows(2).map(|w| (cdf(&a, w[0]) - cdf(&b, w[0])).abs() * (w[1] - w[0])).sum()
}

/// A figure with a confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The standard normal quantile of a two-sided `confidence` level (1.96 at 0.95).
fn normal_quantile(confidence: f64) -> f64 {
    Normal::new(0.0, 1.0).map_or(1.96, |normal| normal.inverse_cdf(1.0 - (1.0 - confidence) / 2.0))
}

/// The Wilson score interval of `successes` out of `n` (without continuity
/// correction; `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`).
/// Sound for small n and for shares near 0 or 1, unlike the normal interval.
pub fn wilson(successes: usize, n: usize, confidence: f64) -> Interval {
    if n == 0 {
        return Interval { value: 0.0, low: 0.0, high: 1.0 };
    }
    let (k, n) = (successes as f64, n as f64);
    let z = normal_quantile(confidence);
    let p = k / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    Interval { value: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) }
}

/// A percentile bootstrap interval of `statistic` over `n` items: `resamples`
/// draws of n indices with replacement, from a seeded generator (the same
/// inputs give the same interval). `statistic` gets the drawn indices.
pub fn bootstrap(
    n: usize,
    resamples: usize,
    confidence: f64,
    seed: u64,
    statistic: impl Fn(&[usize]) -> f64,
) -> Interval {
    let all: Vec<usize> = (0..n).collect();
    let value = statistic(&all);
    if n == 0 || resamples == 0 {
        return Interval { value, low: value, high: value };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut drawn = vec![0; n];
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            for slot in &mut drawn {
                *slot = rng.random_range(0..n);
            }
            statistic(&drawn)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Interval { value, low: quantile(&values, tail), high: quantile(&values, 1.0 - tail) }
}

/// The `p` quantile of sorted `values`, linearly interpolated (numpy's default).
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        len => {
            let position = p.clamp(0.0, 1.0) * (len - 1) as f64;
            let below = position.floor() as usize;
            let above = (below + 1).min(len - 1);
            sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
        }
    }
}

/// McNemar's exact test on paired predictions: `only_first` items one model
/// got right and the other wrong, `only_second` the reverse. The two-sided
/// binomial p-value of the split under "equally good" (p = 0.5), what
/// `scipy.stats.binomtest(only_first, only_first + only_second).pvalue` gives.
pub fn mcnemar_exact(only_first: usize, only_second: usize) -> f64 {
    let n = (only_first + only_second) as u64;
    if n == 0 {
        return 1.0;
    }
    let smaller = only_first.min(only_second) as u64;
    Binomial::new(0.5, n).map_or(1.0, |binomial| (2.0 * binomial.cdf(smaller)).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_show_no_drift() {
        let counts = [10.0, 20.0, 30.0];
        assert!(psi(&counts, &counts).abs() < 1e-12);
        assert!(jensen_shannon(&counts, &counts) < 1e-7);
        assert!((chi_square_homogeneity(&counts, &counts).1 - 1.0).abs() < 1e-12);
        let sample = [0.1, 0.5, 0.9];
        assert_eq!(ks_statistic(&sample, &sample), 0.0);
        assert_eq!(wasserstein(&sample, &sample), 0.0);
    }

    #[test]
    fn disjoint_distributions_are_far_apart() {
        assert!((jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!(psi(&[100.0, 0.0], &[0.0, 100.0]) > 10.0);
        assert_eq!(ks_statistic(&[0.0, 0.1], &[0.5, 0.6]), 1.0);
        assert!((wasserstein(&[0.0], &[0.5]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_kolmogorov_tail_is_continuous_where_its_two_forms_meet() {
        let below = kolmogorov_sf(1.0 - 1e-9);
        let above = kolmogorov_sf(1.0);
        assert!((below - above).abs() < 1e-8, "{below} vs {above}");
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(kolmogorov_sf(3.0) < 1e-6);
    }

    #[test]
    fn the_bootstrap_is_seeded_and_brackets_its_value() {
        let values: Vec<f64> = (0..200).map(|i| f64::from(i % 7)).collect();
        let mean = |drawn: &[usize]| drawn.iter().map(|&i| values[i]).sum::<f64>() / drawn.len() as f64;
        let first = bootstrap(values.len(), 500, 0.95, 7, mean);
        assert_eq!(first, bootstrap(values.len(), 500, 0.95, 7, mean));
        assert!(first.low < first.value && first.value < first.high, "{first:?}");
        // The interval of a mean is about 2 standard errors wide each side.
        let sd = (values.iter().map(|v| (v - first.value).powi(2)).sum::<f64>() / 199.0).sqrt();
        let half = (first.high - first.low) / 2.0;
        let expected = 1.96 * sd / 200f64.sqrt();
        assert!((half - expected).abs() < 0.25 * expected, "half width {half}, normal theory {expected}");
    }

    #[test]
    fn quantiles_interpolate_as_numpy_does() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.0), 1.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 1.0), 4.0);
    }
}
