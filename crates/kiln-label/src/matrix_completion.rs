//! Snorkel's `LabelModel`: the matrix-completion estimator of Ratner et al.
//! (AAAI 2019). Functions that are independent given the true label agree
//! with each other only through it, so the overlap matrix `O` of their one-hot
//! votes is, off each function's own block, `mu P muᵀ`, with `mu[(f, v), y] =
//! P(f votes v | Y = y)` and `P` the class balance. Fitting `mu` to `O` learns
//! every function's confusion matrix from the votes alone. Written to follow
//! snorkel 0.10 step for step (initialisation, SGD with momentum, clamping,
//! the column-permutation tie-break), so that the same seed gives the same
//! model; tests/snorkel.rs checks it against snorkel's own fit.

use crate::LabelMatrix;

/// How the model is fitted; the defaults are snorkel's.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCompletionSettings {
    /// Optimizer steps, each over the whole overlap matrix.
    pub epochs: usize,
    pub learning_rate: f64,
    /// Pull towards the initial `mu` (snorkel's `l2`, also its weight decay).
    pub l2: f64,
    /// Each function's assumed precision at the start.
    pub precision_init: f64,
    /// The share of each label; `None`: uniform.
    pub class_balance: Option<Vec<f64>>,
    /// Seeds the random scale of the initial `mu` (numpy's legacy generator, as snorkel).
    pub seed: u64,
}

impl Default for MatrixCompletionSettings {
    fn default() -> Self {
        Self { epochs: 100, learning_rate: 0.01, l2: 0.0, precision_init: 0.7, class_balance: None, seed: 0 }
    }
}

const MOMENTUM: f64 = 0.9;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatrixCompletionError {
    #[error("the class balance has {got} shares for {classes} labels")]
    BalanceLength { got: usize, classes: usize },
    #[error("the class balance must be positive shares that sum to 1, got {0:?}")]
    Balance(Vec<f64>),
    #[error("the loss became NaN: lower the learning rate")]
    Diverged,
}

/// A fitted model: `mu` and the class balance.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCompletion {
    functions: usize,
    classes: usize,
    /// `(functions * classes) x classes`, row-major.
    mu: Vec<f64>,
    balance: Vec<f64>,
    coverage: Vec<f64>,
}

impl MatrixCompletion {
    pub fn fit(matrix: &LabelMatrix, settings: &MatrixCompletionSettings) -> Result<Self, MatrixCompletionError> {
        let (m, k, n) = (matrix.functions(), matrix.classes(), matrix.rows().max(1));
        let d = m * k;
        let balance = match &settings.class_balance {
            None => vec![1.0 / k as f64; k],
            Some(shares) if shares.len() != k => {
                return Err(MatrixCompletionError::BalanceLength { got: shares.len(), classes: k });
            }
            Some(shares) => {
                let sum: f64 = shares.iter().sum();
                if shares.iter().any(|&s| s <= 0.0 || !s.is_finite()) || (sum - 1.0).abs() > 1e-6 {
                    return Err(MatrixCompletionError::Balance(shares.clone()));
                }
                shares.clone()
            }
        };
        let overlaps = overlap_matrix(matrix);
        // A function votes one label a row: its coverage is its block's diagonal of O.
        let coverage: Vec<f64> = (0..m).map(|f| (f * k..(f + 1) * k).map(|a| overlaps[a * d + a]).sum()).collect();

        // mu_init[(f, y), y] = P(f votes y) * precision / P(Y = y), clamped to [0, 1].
        let mut init = vec![0.0; d * k];
        for f in 0..m {
            for y in 0..k {
                let a = f * k + y;
                init[a * k + y] = (overlaps[a * d + a] * settings.precision_init / balance[y]).clamp(0.0, 1.0);
            }
        }
        let scale = NumpyLegacy::new(settings.seed).next_f64();
        let mut mu: Vec<f64> = init.iter().map(|v| v * scale).collect();
        let mut velocity = vec![0.0; d * k];
        for step in 0..settings.epochs {
            let mut gradient = loss_gradient(&mu, &init, &overlaps, &balance, m, k, settings.l2)?;
            for (g, v) in gradient.iter_mut().zip(&mu) {
                *g += settings.l2 * v; // weight decay
            }
            for ((v, g), p) in velocity.iter_mut().zip(&gradient).zip(mu.iter_mut()) {
                *v = if step == 0 { *g } else { MOMENTUM * *v + g };
                *p -= settings.learning_rate * *v;
            }
        }
        let eps = (1.0 / 10f64.powf((n as f64).log10().ceil())).min(0.01);
        mu.iter_mut().for_each(|v| *v = v.clamp(eps, 1.0 - eps));
        let mut model = Self { functions: m, classes: k, mu, balance, coverage };
        model.break_permutation_symmetry();
        Ok(model)
    }

    /// `P(Y | votes)` per row: the class balance times each voting function's
    /// `mu` for its vote (abstains carry no evidence, as in snorkel).
    pub fn predict_proba(&self, matrix: &LabelMatrix) -> Vec<Vec<f64>> {
        let k = self.classes;
        let log_balance: Vec<f64> = self.balance.iter().map(|p| p.ln()).collect();
        (0..matrix.rows())
            .map(|row| {
                let mut log_p = log_balance.clone();
                for f in 0..self.functions.min(matrix.functions()) {
                    if let Some(vote) = matrix.vote(row, f) {
                        let a = f * k + vote;
                        for (y, lp) in log_p.iter_mut().enumerate() {
                            *lp += self.mu[a * k + y].ln();
                        }
                    }
                }
                let top = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = log_p.iter().map(|lp| (lp - top).exp()).collect();
                let total: f64 = exp.iter().sum();
                exp.into_iter().map(|e| e / total).collect()
            })
            .collect()
    }

    /// Each function's learned accuracy where it votes (snorkel's `get_weights`).
    pub fn accuracies(&self) -> Vec<f64> {
        let k = self.classes;
        (0..self.functions)
            .map(|f| {
                let right: f64 = (0..k).map(|y| self.mu[(f * k + y) * k + y] * self.balance[y]).sum();
                (right / self.coverage[f].max(f64::MIN_POSITIVE)).clamp(1e-6, 1.0)
            })
            .collect()
    }

    /// `P(function votes v | Y = y)`, indexed `[function][v][y]`.
    pub fn conditional_probabilities(&self) -> Vec<Vec<Vec<f64>>> {
        let k = self.classes;
        (0..self.functions)
            .map(|f| (0..k).map(|v| self.mu[(f * k + v) * k..(f * k + v + 1) * k].to_vec()).collect())
            .collect()
    }

    /// Labels with the same prior are interchangeable in the loss: of the
    /// equally good `mu`s, keep the one under which the functions are most
    /// often right (snorkel's Munkres step).
    fn break_permutation_symmetry(&mut self) {
        let k = self.classes;
        // probs_sum[v][y] = sum over functions of mu[(f, v), y] * p[y].
        let mut probs_sum = vec![vec![0.0; k]; k];
        for f in 0..self.functions {
            for (v, row) in probs_sum.iter_mut().enumerate() {
                for (y, cell) in row.iter_mut().enumerate() {
                    *cell += self.mu[(f * k + v) * k + y] * self.balance[y];
                }
            }
        }
        let mut groups: Vec<(i64, Vec<usize>)> = Vec::new();
        for (y, p) in self.balance.iter().enumerate() {
            let key = (p * 1000.0).round() as i64;
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(y),
                None => groups.push((key, vec![y])),
            }
        }
        // target[y] = the column that column y of mu moves to.
        let mut target: Vec<usize> = (0..k).collect();
        for (_, group) in groups.iter().filter(|(_, g)| g.len() > 1) {
            // cost[i][j] = -probs_sum[group[j]][group[i]]: moving column group[i] to group[j].
            let cost: Vec<Vec<f64>> =
                group.iter().map(|&gi| group.iter().map(|&gj| -probs_sum[gj][gi]).collect()).collect();
            for (i, j) in hungarian(&cost).into_iter().enumerate() {
                target[group[i]] = group[j];
            }
        }
        let old = self.mu.clone();
        for row in 0..self.functions * k {
            for (y, &to) in target.iter().enumerate() {
                self.mu[row * k + to] = old[row * k + y];
            }
        }
    }
}

/// `O = L_indᵀ L_ind / n`, with `L_ind` the one-hot votes (`functions * classes` columns).
fn overlap_matrix(matrix: &LabelMatrix) -> Vec<f64> {
    let (m, k) = (matrix.functions(), matrix.classes());
    let d = m * k;
    let mut overlaps = vec![0.0; d * d];
    let mut active = Vec::with_capacity(m);
    for row in 0..matrix.rows() {
        active.clear();
        active.extend((0..m).filter_map(|f| matrix.vote(row, f).map(|v| f * k + v)));
        for &a in &active {
            for &b in &active {
                overlaps[a * d + b] += 1.0;
            }
        }
    }
    let n = matrix.rows().max(1) as f64;
    overlaps.iter_mut().for_each(|o| *o /= n);
    overlaps
}

/// The gradient of snorkel's loss: `‖(O − mu P muᵀ)[off own blocks]‖² +
/// ‖rowsum(mu P) − diag(O)‖² + ‖l2 (mu − mu_init)‖²`.
fn loss_gradient(
    mu: &[f64],
    init: &[f64],
    overlaps: &[f64],
    balance: &[f64],
    m: usize,
    k: usize,
    l2: f64,
) -> Result<Vec<f64>, MatrixCompletionError> {
    let d = m * k;
    // mp = mu P (d x k).
    let mp: Vec<f64> = mu.iter().enumerate().map(|(at, v)| v * balance[at % k]).collect();
    // residual r = (O - mp muᵀ) masked: zero on each function's own k x k block.
    let mut residual = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            if a / k == b / k {
                continue;
            }
            let modelled: f64 = (0..k).map(|y| mp[a * k + y] * mu[b * k + y]).sum();
            residual[a * d + b] = overlaps[a * d + b] - modelled;
        }
    }
    let mut gradient = vec![0.0; d * k];
    let mut loss = 0.0;
    // d/dmu of ‖r‖² = -4 r mu P (r is symmetric).
    for a in 0..d {
        for b in 0..d {
            let r = residual[a * d + b];
            if r == 0.0 {
                continue;
            }
            loss += r * r;
            for y in 0..k {
                gradient[a * k + y] -= 4.0 * r * mp[b * k + y];
            }
        }
        // Row sums of mu P against diag(O).
        let s: f64 = (0..k).map(|y| mp[a * k + y]).sum::<f64>() - overlaps[a * d + a];
        loss += s * s;
        for y in 0..k {
            gradient[a * k + y] += 2.0 * s * balance[y];
            let pull = mu[a * k + y] - init[a * k + y];
            gradient[a * k + y] += 2.0 * l2 * l2 * pull;
        }
    }
    if loss.is_nan() {
        return Err(MatrixCompletionError::Diverged);
    }
    Ok(gradient)
}

/// The assignment of rows to columns with the least total cost (Kuhn-Munkres,
/// O(n³)): `result[row] = column`.
fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut owner, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for row in 1..=n {
        owner[0] = row;
        let mut column = 0;
        let mut least = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[column] = true;
            let (current, mut delta, mut next) = (owner[column], f64::INFINITY, 0);
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let reduced = cost[current - 1][j - 1] - u[current] - v[j];
                if reduced < least[j] {
                    least[j] = reduced;
                    way[j] = column;
                }
                if least[j] < delta {
                    delta = least[j];
                    next = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    least[j] -= delta;
                }
            }
            column = next;
            if owner[column] == 0 {
                break;
            }
        }
        loop {
            let previous = way[column];
            owner[column] = owner[previous];
            column = previous;
            if column == 0 {
                break;
            }
        }
    }
    let mut assignment = vec![0; n];
    for j in 1..=n {
        if owner[j] > 0 {
            assignment[owner[j] - 1] = j - 1;
        }
    }
    assignment
}

/// numpy's legacy `np.random.seed(s); np.random.random()` (MT19937 seeded by
/// `init_genrand`, 53-bit doubles), so a seed means what it means in snorkel.
struct NumpyLegacy {
    state: [u32; 624],
    index: usize,
}

impl NumpyLegacy {
    fn new(seed: u64) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed as u32;
        for i in 1..624 {
            let previous = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(previous ^ (previous >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[i] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_f64(&mut self) -> f64 {
        let (a, b) = (self.next_u32() >> 5, self.next_u32() >> 6);
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_draws_what_numpy_draws() {
        // python -c "import numpy as np; np.random.seed(S); print(repr(np.random.random()))"
        assert_eq!(NumpyLegacy::new(0).next_f64(), 0.5488135039273248);
        assert_eq!(NumpyLegacy::new(123).next_f64(), 0.6964691855978616);
    }

    #[test]
    fn the_assignment_is_the_cheapest() {
        let cost = vec![vec![4.0, 1.0, 3.0], vec![2.0, 0.0, 5.0], vec![3.0, 2.0, 2.0]];
        assert_eq!(hungarian(&cost), [1, 0, 2]);
        assert_eq!(hungarian(&[vec![-0.9, -0.1], vec![-0.2, -0.8]]), [0, 1]);
    }

    #[test]
    fn a_bad_class_balance_is_refused() {
        let matrix = LabelMatrix::new(3, 2, vec![0, 0, 1]).expect("valid");
        let settings =
            |balance: Vec<f64>| MatrixCompletionSettings { class_balance: Some(balance), ..Default::default() };
        assert!(matches!(
            MatrixCompletion::fit(&matrix, &settings(vec![1.0])),
            Err(MatrixCompletionError::BalanceLength { got: 1, classes: 2 })
        ));
        assert!(MatrixCompletion::fit(&matrix, &settings(vec![0.0, 1.0])).is_err());
        let fitted = MatrixCompletion::fit(&matrix, &settings(vec![0.3, 0.7])).expect("fits");
        let probabilities = fitted.predict_proba(&LabelMatrix::new(3, 2, vec![-1, -1, -1]).expect("valid"));
        assert!((probabilities[0][1] - 0.7).abs() < 1e-12, "no votes: the class balance, {probabilities:?}");
    }
}
