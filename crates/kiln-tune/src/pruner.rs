//! Decides, after each validation of a trial, whether it is worth finishing:
//! Optuna's `MedianPruner` and `SuccessiveHalvingPruner` (ASHA), with epochs
//! of training as the resource, so trials with other batch sizes compare at
//! the same point of training.

use kiln_config::{PrunerKind, TuneConfig};

/// Slack when comparing epochs computed from different step counts.
const EPOCH_EPS: f64 = 1e-6;

/// A trial's validation values so far, in order: (epochs trained, value).
#[derive(Debug, Clone)]
pub struct Curve<'a> {
    pub number: usize,
    /// Finished its training (the median compares with these only).
    pub complete: bool,
    pub points: &'a [(f64, f64)],
}

#[derive(Debug, Clone)]
pub struct Pruner {
    kind: PrunerKind,
    maximize: bool,
    startup_trials: usize,
    warmup_epochs: f64,
    reduction_factor: usize,
    min_resource: f64,
}

impl Pruner {
    pub fn from_config(config: &TuneConfig) -> Self {
        Self {
            kind: config.pruner,
            maximize: config.metric.higher_is_better(),
            startup_trials: config.pruner_startup_trials,
            warmup_epochs: config.pruner_warmup_epochs,
            reduction_factor: config.reduction_factor,
            min_resource: config.min_resource,
        }
    }

    /// Whether trial `trial`, whose latest point is the last of its curve,
    /// should stop. `curves` holds every trial of the study, itself included.
    pub fn should_prune(&self, trial: usize, curves: &[Curve]) -> bool {
        let Some(current) = curves.iter().find(|c| c.number == trial) else { return false };
        let Some(&(epoch, value)) = current.points.last() else { return false };
        if !value.is_finite() {
            return true;
        }
        match self.kind {
            PrunerKind::None => false,
            PrunerKind::Median => self.below_median(current, epoch, curves),
            PrunerKind::Asha => self.not_promoted(current, epoch, curves),
        }
    }

    fn better(&self, a: f64, b: f64) -> bool {
        if self.maximize { a > b } else { a < b }
    }

    /// The trial's best value so far is worse than the median of the complete
    /// trials' values at this point of training (each trial's latest value at
    /// or before this epoch).
    fn below_median(&self, current: &Curve, epoch: f64, curves: &[Curve]) -> bool {
        let complete: Vec<&Curve> = curves.iter().filter(|c| c.complete && c.number != current.number).collect();
        if complete.len() < self.startup_trials.max(1) || epoch + EPOCH_EPS < self.warmup_epochs {
            return false;
        }
        let best = current.points.iter().map(|p| p.1).fold(None, |best: Option<f64>, v| match best {
            Some(b) if !self.better(v, b) => Some(b),
            _ => Some(v),
        });
        let mut others: Vec<f64> = complete
            .iter()
            .filter_map(|c| c.points.iter().rev().find(|p| p.0 <= epoch + EPOCH_EPS).map(|p| p.1))
            .filter(|v| v.is_finite())
            .collect();
        if others.is_empty() {
            return false;
        }
        others.sort_by(f64::total_cmp);
        let n = others.len();
        let median = if n % 2 == 1 { others[n / 2] } else { 0.5 * (others[n / 2 - 1] + others[n / 2]) };
        best.is_some_and(|best| self.better(median, best))
    }

    /// ASHA: at each rung the trial has just reached (min_resource x
    /// reduction_factor^k epochs), it goes on only when its value there is
    /// among the best 1/reduction_factor of all trials' values at that rung.
    fn not_promoted(&self, current: &Curve, epoch: f64, curves: &[Curve]) -> bool {
        let previous = current.points.len().checked_sub(2).map_or(0.0, |i| current.points[i].0);
        let eta = self.reduction_factor as f64;
        for rung in 0.. {
            let resource = self.min_resource * eta.powi(rung);
            if resource > epoch + EPOCH_EPS {
                break;
            }
            if previous + EPOCH_EPS >= resource {
                continue; // judged at this rung before
            }
            let at_rung = |c: &Curve| c.points.iter().find(|p| p.0 + EPOCH_EPS >= resource).map(|p| p.1);
            let Some(value) = at_rung(current) else { continue };
            let mut competing: Vec<f64> = curves.iter().filter_map(at_rung).filter(|v| v.is_finite()).collect();
            if !promotable(value, &mut competing, self.reduction_factor, self.maximize) {
                return true;
            }
        }
        false
    }
}

/// Optuna's `_is_trial_promotable_to_next_rung`: the top `len / eta` values go
/// on; while there are fewer than `eta`, only the best one.
fn promotable(value: f64, competing: &mut [f64], eta: usize, maximize: bool) -> bool {
    let index = (competing.len() / eta).saturating_sub(1);
    competing.sort_by(f64::total_cmp);
    if competing.is_empty() {
        return true;
    }
    if maximize { value >= competing[competing.len() - 1 - index] } else { value <= competing[index] }
}

#[cfg(test)]
mod tests {
    use kiln_config::Metric;

    use super::*;

    fn pruner(kind: PrunerKind) -> Pruner {
        Pruner::from_config(&TuneConfig { pruner: kind, metric: Metric::Accuracy, ..TuneConfig::default() })
    }

    fn curve(number: usize, complete: bool, points: &[(f64, f64)]) -> Curve<'_> {
        Curve { number, complete, points }
    }

    #[test]
    fn the_median_pruner_waits_for_its_startup_trials_then_cuts_below_the_median() {
        let done: Vec<Vec<(f64, f64)>> = (0..5).map(|i| vec![(1.0, 0.5 + 0.1 * i as f64), (2.0, 0.9)]).collect();
        let mut curves: Vec<Curve> = done.iter().enumerate().map(|(i, p)| curve(i, true, p)).collect();
        let low = [(1.0, 0.6)];
        let high = [(1.0, 0.8)];
        curves.push(curve(5, false, &low));
        curves.push(curve(6, false, &high));
        let median = pruner(PrunerKind::Median);
        assert!(median.should_prune(5, &curves), "0.6 is below the median 0.7 at epoch 1");
        assert!(!median.should_prune(6, &curves), "0.8 is above it");
        assert!(!pruner(PrunerKind::None).should_prune(5, &curves));
        let too_few: Vec<Curve> = curves[1..].to_vec();
        assert!(!median.should_prune(5, &too_few), "four complete trials are fewer than the five it waits for");
        let warm = Pruner { warmup_epochs: 1.5, ..median.clone() };
        assert!(!warm.should_prune(5, &curves), "still warming up at epoch 1");
        let nan = [(1.0, f64::NAN)];
        curves.push(curve(7, false, &nan));
        assert!(median.should_prune(7, &curves), "a diverged trial stops");
    }

    /// Rungs at 1 and 3 epochs with reduction factor 3: of the trials at a
    /// rung only the top third go on (the best one while there are fewer than 3).
    #[test]
    fn asha_promotes_the_top_third_at_each_rung() {
        let asha = pruner(PrunerKind::Asha);
        let first = [(1.0, 0.5)];
        assert!(!asha.should_prune(0, &[curve(0, false, &first)]), "alone, it is the best");
        let values = [0.5, 0.7, 0.6, 0.9, 0.4, 0.8];
        let points: Vec<[(f64, f64); 1]> = values.iter().map(|&v| [(1.0, v)]).collect();
        let curves: Vec<Curve> = points.iter().enumerate().map(|(i, p)| curve(i, false, p)).collect();
        let pruned: Vec<usize> = (0..6).filter(|&i| asha.should_prune(i, &curves)).collect();
        assert_eq!(pruned, [0, 1, 2, 4], "of six, the top two (0.9 and 0.8) go on");
        // Already judged at rung 1: a later point before rung 3 is not judged again.
        let later = [(1.0, 0.4), (2.0, 0.1)];
        let mut curves = curves.clone();
        curves[4] = curve(4, false, &later);
        assert!(!asha.should_prune(4, &curves));
        // Loss is minimised: the lowest values go on.
        let loss = Pruner { maximize: false, ..asha };
        let curves: Vec<Curve> = points.iter().enumerate().map(|(i, p)| curve(i, false, p)).collect();
        let pruned: Vec<usize> = (0..6).filter(|&i| loss.should_prune(i, &curves)).collect();
        assert_eq!(pruned, [1, 2, 3, 5], "of six, the lowest two (0.4 and 0.5) go on");
    }
}
