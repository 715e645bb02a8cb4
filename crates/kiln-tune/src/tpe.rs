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

/// A mixture of normals truncated to [low, high].
#[derive(Debug, Clone)]
pub struct Numeric {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Normalised component weights.
    weights: Vec<f64>,
    low: f64,
    high: f64,
}

fn phi(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

impl Numeric {
    /// One kernel per observation (in trial order), each as wide as the gap to
    /// its neighbours, plus the prior: a normal over the whole range.
    pub fn new(observations: &[f64], low: f64, high: f64) -> Self {
        let width = high - low;
        let prior_mu = 0.5 * (low + high);
        let mut sigmas = if observations.is_empty() {
            Vec::new()
        } else {
            let mut with_prior: Vec<(f64, usize)> =
                observations.iter().copied().chain([prior_mu]).enumerate().map(|(i, x)| (x, i)).collect();
            with_prior.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut points = vec![low];
            points.extend(with_prior.iter().map(|p| p.0));
            points.push(high);
            let mut sorted_sigmas: Vec<f64> =
                (1..points.len() - 1).map(|i| (points[i] - points[i - 1]).max(points[i + 1] - points[i])).collect();
            // consider_endpoints = False: the outermost kernels look inwards only.
            if points.len() >= 4 {
                let last = sorted_sigmas.len() - 1;
                sorted_sigmas[0] = points[2] - points[1];
                sorted_sigmas[last] = points[points.len() - 2] - points[points.len() - 3];
            }
            let mut sigmas = vec![0.0; with_prior.len()];
            for (sorted, &(_, original)) in with_prior.iter().enumerate() {
                sigmas[original] = sorted_sigmas[sorted];
            }
            sigmas.truncate(observations.len());
            sigmas
        };
        // The magic clip: no kernel narrower than the range over the kernel count.
        let kernels = observations.len() + 1;
        let min_sigma = width / (1.0 + kernels as f64).min(100.0);
        for sigma in &mut sigmas {
            *sigma = sigma.clamp(min_sigma, width);
        }
        let mut mus = observations.to_vec();
        mus.push(prior_mu);
        sigmas.push(width);
        let mut weights = weights(observations.len());
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        Self { mus, sigmas, weights, low, high }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        let k = pick(&self.weights, rng);
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        let a = phi((self.low - mu) / sigma);
        let b = phi((self.high - mu) / sigma);
        let u = a + (b - a) * rng.random::<f64>();
        let z = std::f64::consts::SQRT_2 * erf_inv((2.0 * u - 1.0).clamp(-1.0 + 1e-16, 1.0 - 1e-16));
        (mu + sigma * z).clamp(self.low, self.high)
    }

    pub fn log_pdf(&self, x: f64) -> f64 {
        let terms = self.mus.iter().zip(&self.sigmas).zip(&self.weights).map(|((&mu, &sigma), &w)| {
            let z = (x - mu) / sigma;
            let mass = (phi((self.high - mu) / sigma) - phi((self.low - mu) / sigma)).max(1e-300);
            w.ln() - 0.5 * z * z - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() - mass.ln()
        });
        log_sum_exp(terms)
    }
}

/// Choices: each observation a kernel that puts weight 1 on its choice and
/// the prior's share on every choice, plus the uniform prior.
#[derive(Debug, Clone)]
pub struct Categorical {
    probabilities: Vec<f64>,
}

impl Categorical {
    pub fn new(observations: &[usize], choices: usize) -> Self {
        let kernels = observations.len() + 1;
        let mut component_weights = weights(observations.len());
        component_weights.push(PRIOR_WEIGHT);
        let total: f64 = component_weights.iter().sum();
        let mut probabilities = vec![0.0; choices];
        let smoothing = PRIOR_WEIGHT / kernels as f64;
        for (i, &observed) in observations.iter().enumerate() {
            let row_total = smoothing * choices as f64 + 1.0;
            for (c, p) in probabilities.iter_mut().enumerate() {
                let kernel = (smoothing + if c == observed { 1.0 } else { 0.0 }) / row_total;
                *p += component_weights[i] / total * kernel;
            }
        }
        for p in &mut probabilities {
            *p += component_weights[observations.len()] / total / choices as f64;
        }
        Self { probabilities }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        pick(&self.probabilities, rng)
    }

    pub fn log_pdf(&self, choice: usize) -> f64 {
        self.probabilities[choice].max(1e-300).ln()
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
    fn the_numeric_mixture_is_a_density_and_samples_follow_it() {
        let mixture = Numeric::new(&[0.1, 0.15, 0.9], 0.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n).map(|i| mixture.log_pdf((i as f64 + 0.5) / n as f64).exp() / n as f64).sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let samples: Vec<f64> = (0..20_000).map(|_| mixture.sample(&mut rng)).collect();
        assert!(samples.iter().all(|x| (0.0..=1.0).contains(x)));
        let below_half = samples.iter().filter(|&&x| x < 0.5).count() as f64 / samples.len() as f64;
        let expected: f64 = (0..n / 2).map(|i| mixture.log_pdf((i as f64 + 0.5) / n as f64).exp() / n as f64).sum();
        assert!((below_half - expected).abs() < 0.02, "{below_half} vs {expected}");
    }

    #[test]
    fn the_categorical_kernel_is_smoothed_towards_the_observed() {
        let kernel = Categorical::new(&[2, 2, 0], 3);
        let p: Vec<f64> = (0..3).map(|c| kernel.log_pdf(c).exp()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
        assert!(p[2] > p[0] && p[0] > p[1], "{p:?}");
        assert!(Categorical::new(&[], 4).log_pdf(3).exp() - 0.25 < 1e-12);
    }
}
