//! The Parzen estimators of the tree-structured Parzen estimator (Bergstra et
//! al. 2011), as Optuna's `TPESampler` builds them by default (univariate,
//! with the prior, the "magic clip" and Optuna's weights): a mixture of
//! truncated normals for numbers, of smoothed one-hot kernels for choices.
//!
//! The `tpe` crate was the alternative; it has no prior weighting, no startup
//! phase, no notion of running or pruned trials and a fixed 10% split, and it
//! would bring in a second `rand`. Following Optuna lets us check our samples
//! against Optuna's on the same benchmark (`make bench-tune`).

use rand::Rng;
use statrs::function::erf::{erf, erf_inv};

/// Optuna's `default_gamma`: how many of the `n` trials count as good.
pub fn good_count(n: usize) -> usize {
    (n as f64 * 0.1).ceil().min(25.0) as usize
}

/// Optuna's `default_weights`: the most recent 25 observations weigh 1, older
/// ones ramp down linearly (in trial order).
pub fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

const PRIOR_WEIGHT: f64 = 1.0;

/// One setting's range as the estimator sees it: an interval of reals, or a
/// number of choices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dim {
    Interval { low: f64, high: f64 },
    Choices(usize),
}

/// One setting's kernels: one per observation, then the prior's.
#[derive(Debug, Clone)]
enum Kernels {
    /// Normals truncated to [low, high].
    Numeric { mus: Vec<f64>, sigmas: Vec<f64>, low: f64, high: f64 },
    /// A distribution over the choices per kernel.
    Categorical { rows: Vec<Vec<f64>> },
}

fn phi(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

impl Kernels {
    /// Optuna's numerical kernels: each observation's as wide as the larger
    /// gap to its neighbours (the range's ends count as neighbours, except
    /// that the outermost kernels look inwards only), clipped to between the
    /// range over the kernel count and the whole range; then the prior, a
    /// normal over the whole range.
    fn numeric(observations: &[f64], low: f64, high: f64) -> Self {
        let width = high - low;
        let mut order: Vec<usize> = (0..observations.len()).collect();
        order.sort_by(|&a, &b| observations[a].total_cmp(&observations[b]));
        let mut points = vec![low];
        points.extend(order.iter().map(|&i| observations[i]));
        points.push(high);
        let mut sorted_sigmas: Vec<f64> =
            (1..points.len() - 1).map(|i| (points[i] - points[i - 1]).max(points[i + 1] - points[i])).collect();
        if points.len() >= 4 {
            let last = sorted_sigmas.len() - 1;
            sorted_sigmas[0] = points[2] - points[1];
            sorted_sigmas[last] = points[points.len() - 2] - points[points.len() - 3];
        }
        let min_sigma = width / (1.0 + (observations.len() + 1) as f64).min(100.0);
        let mut sigmas = vec![0.0; observations.len()];
        for (rank, &i) in order.iter().enumerate() {
            sigmas[i] = sorted_sigmas[rank].clamp(min_sigma, width);
        }
        let mut mus = observations.to_vec();
        mus.push(0.5 * (low + high));
        sigmas.push(width);
        Self::Numeric { mus, sigmas, low, high }
    }

    /// Each observation's kernel puts 1 on its choice and the prior's share
    /// on every choice; the prior's kernel is uniform.
    fn categorical(observations: &[usize], choices: usize) -> Self {
        let kernels = observations.len() + 1;
        let smoothing = PRIOR_WEIGHT / kernels as f64;
        let mut rows: Vec<Vec<f64>> = observations
            .iter()
            .map(|&observed| {
                let total = smoothing * choices as f64 + 1.0;
                (0..choices).map(|c| (smoothing + if c == observed { 1.0 } else { 0.0 }) / total).collect()
            })
            .collect();
        rows.push(vec![1.0 / choices as f64; choices]);
        Self::Categorical { rows }
    }

    fn sample(&self, kernel: usize, rng: &mut impl Rng) -> f64 {
        match self {
            Self::Numeric { mus, sigmas, low, high } => {
                let (mu, sigma) = (mus[kernel], sigmas[kernel]);
                let a = phi((low - mu) / sigma);
                let b = phi((high - mu) / sigma);
                let u = a + (b - a) * rng.random::<f64>();
                let z = std::f64::consts::SQRT_2 * erf_inv((2.0 * u - 1.0).clamp(-1.0 + 1e-16, 1.0 - 1e-16));
                (mu + sigma * z).clamp(*low, *high)
            }
            Self::Categorical { rows } => pick(&rows[kernel], rng) as f64,
        }
    }

    fn log_pdf(&self, kernel: usize, x: f64) -> f64 {
        match self {
            Self::Numeric { mus, sigmas, low, high } => {
                let (mu, sigma) = (mus[kernel], sigmas[kernel]);
                let z = (x - mu) / sigma;
                let mass = (phi((high - mu) / sigma) - phi((low - mu) / sigma)).max(1e-300);
                -0.5 * z * z - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() - mass.ln()
            }
            Self::Categorical { rows } => rows[kernel][(x as usize).min(rows[kernel].len() - 1)].max(1e-300).ln(),
        }
    }
}

/// Optuna's (multivariate, the default since Optuna 4) Parzen estimator: a
/// mixture with one component per observation plus the prior, each component
/// a product of one kernel per setting, so settings that work together are
/// drawn together.
#[derive(Debug, Clone)]
pub struct Mixture {
    /// Normalised component weights (observations in trial order, then the prior).
    weights: Vec<f64>,
    dims: Vec<Kernels>,
}

impl Mixture {
    /// `observations[i][d]`: observation i's value of setting d (choices as indices).
    pub fn new(observations: &[Vec<f64>], dims: &[Dim]) -> Self {
        let mut weights = weights(observations.len());
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let dims = dims
            .iter()
            .enumerate()
            .map(|(d, dim)| match *dim {
                Dim::Interval { low, high } => {
                    Kernels::numeric(&observations.iter().map(|o| o[d]).collect::<Vec<_>>(), low, high)
                }
                Dim::Choices(n) => {
                    Kernels::categorical(&observations.iter().map(|o| o[d] as usize).collect::<Vec<_>>(), n)
                }
            })
            .collect();
        Self { weights, dims }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> Vec<f64> {
        let kernel = pick(&self.weights, rng);
        self.dims.iter().map(|dim| dim.sample(kernel, rng)).collect()
    }

    pub fn log_pdf(&self, x: &[f64]) -> f64 {
        log_sum_exp(
            self.weights.iter().enumerate().map(|(kernel, w)| {
                w.ln() + self.dims.iter().zip(x).map(|(dim, &xd)| dim.log_pdf(kernel, xd)).sum::<f64>()
            }),
        )
    }
}

/// An index drawn with probability proportional to `weights`.
fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

fn log_sum_exp(terms: impl Iterator<Item = f64>) -> f64 {
    let terms: Vec<f64> = terms.collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Optuna's `default_gamma` and `default_weights` at a few sizes.
    #[test]
    fn split_and_weights_are_optunas() {
        assert_eq!([1, 10, 11, 100, 300].map(good_count), [1, 1, 2, 10, 25]);
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12 && (w[4] - 1.0).abs() < 1e-12 && w[29] == 1.0, "{w:?}");
    }

    /// The mixture is a density: it integrates to 1 over the range, and its
    /// samples stay in it and follow it (more mass near the observations).
    #[test]
    fn the_mixture_is_a_density_and_samples_follow_it() {
        let mixture = Mixture::new(&[vec![0.1], vec![0.15], vec![0.9]], &[Dim::Interval { low: 0.0, high: 1.0 }]);
        let n = 20_000;
        let density = |x: f64| mixture.log_pdf(&[x]).exp();
        let integral: f64 = (0..n).map(|i| density((i as f64 + 0.5) / n as f64) / n as f64).sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let samples: Vec<f64> = (0..20_000).map(|_| mixture.sample(&mut rng)[0]).collect();
        assert!(samples.iter().all(|x| (0.0..=1.0).contains(x)));
        let below_half = samples.iter().filter(|&&x| x < 0.5).count() as f64 / samples.len() as f64;
        let expected: f64 = (0..n / 2).map(|i| density((i as f64 + 0.5) / n as f64) / n as f64).sum();
        assert!((below_half - expected).abs() < 0.02, "{below_half} vs {expected}");
    }

    /// Choices: the probabilities sum to 1 and lean to what was observed; a
    /// two-setting mixture draws settings together, from one component.
    #[test]
    fn choices_lean_to_the_observed_and_settings_are_drawn_together() {
        let choices = Mixture::new(&[vec![2.0], vec![2.0], vec![0.0]], &[Dim::Choices(3)]);
        let p: Vec<f64> = (0..3).map(|c| choices.log_pdf(&[c as f64]).exp()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
        assert!(p[2] > p[0] && p[0] > p[1], "{p:?}");
        let dims = [Dim::Interval { low: 0.0, high: 1.0 }, Dim::Interval { low: 0.0, high: 1.0 }];
        let observations: Vec<Vec<f64>> =
            (0..20).map(|i| if i % 2 == 0 { vec![0.05, 0.05] } else { vec![0.95, 0.95] }).collect();
        let joint = Mixture::new(&observations, &dims);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let samples: Vec<Vec<f64>> = (0..2000).map(|_| joint.sample(&mut rng)).collect();
        let same_side = samples.iter().filter(|x| (x[0] < 0.5) == (x[1] < 0.5)).count();
        assert!(same_side > 1700, "{same_side} of 2000 on the diagonal's side, as observed");
        assert!(joint.log_pdf(&[0.05, 0.05]) > joint.log_pdf(&[0.05, 0.95]) + 2.0);
    }
}
