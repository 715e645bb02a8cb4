//! Picks each trial's settings: at random, over a grid, or by TPE from the
//! trials so far. Trial N's draw depends only on the seed, N and the trials
//! before it, so a study replays the same way and a resumed one goes on as if
//! it had never stopped.

use kiln_config::{SamplerKind, TuneConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::space::{Domain, Params, Space};
use crate::tpe;

/// How a trial the sampler learns from ended (values as the metric reports them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Complete(f64),
    /// Stopped at `epoch` with `value` then.
    Pruned {
        epoch: f64,
        value: f64,
    },
    /// Being trained by some worker: TPE counts it as bad (Optuna's "constant
    /// liar") so parallel workers do not all try the same spot.
    Running,
    Failed,
}

/// A trial as the sampler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub number: usize,
    pub params: &'a Params,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct Sampler {
    kind: SamplerKind,
    seed: u64,
    startup_trials: usize,
    grid_points: usize,
    maximize: bool,
    /// TPE: candidates drawn from the good trials' density per setting (Optuna: 24).
    candidates: usize,
}

impl Sampler {
    pub fn new(kind: SamplerKind, seed: u64, maximize: bool) -> Self {
        let defaults = TuneConfig::default();
        Self {
            kind,
            seed,
            startup_trials: defaults.startup_trials,
            grid_points: defaults.grid_points,
            maximize,
            candidates: 24,
        }
    }

    pub fn from_config(config: &TuneConfig) -> Self {
        Self {
            startup_trials: config.startup_trials,
            grid_points: config.grid_points,
            ..Self::new(config.sampler, config.seed, config.metric.higher_is_better())
        }
    }

    pub fn with_startup_trials(self, startup_trials: usize) -> Self {
        Self { startup_trials, ..self }
    }

    /// How many trials the sampler can give: the grid's size, or unlimited.
    pub fn capacity(&self, space: &Space) -> Option<usize> {
        (self.kind == SamplerKind::Grid).then(|| self.grid(space).iter().map(Vec::len).product())
    }

    /// Trial `number`'s settings, or `None` when a grid has no point left.
    pub fn sample(&self, space: &Space, history: &[Observed], number: usize) -> Option<Params> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (number as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self.kind {
            SamplerKind::Random => Some(random(space, &mut rng)),
            SamplerKind::Grid => self.grid_point(space, number),
            SamplerKind::Tpe => Some(self.tpe(space, history, &mut rng)),
        }
    }

    /// Each setting's grid values: every choice; each integer, or `grid_points`
    /// of them when there are more; `grid_points` evenly spaced reals.
    fn grid(&self, space: &Space) -> Vec<Vec<serde_json::Value>> {
        space
            .params
            .iter()
            .map(|param| {
                let domain = &param.domain;
                match domain {
                    Domain::Choice(choices) => choices.clone(),
                    Domain::Int { low, high, log: false } if (high - low + 1) as usize <= self.grid_points => {
                        (*low..=*high).map(serde_json::Value::from).collect()
                    }
                    _ => {
                        let (low, high) = match *domain {
                            Domain::Int { low, high, log } => {
                                if log {
                                    ((low as f64).ln(), (high as f64).ln())
                                } else {
                                    (low as f64, high as f64)
                                }
                            }
                            _ => domain.internal_bounds().unwrap_or_default(),
                        };
                        let n = self.grid_points;
                        let mut values: Vec<serde_json::Value> = (0..n)
                            .map(|i| {
                                let t = if n == 1 { 0.5 } else { i as f64 / (n - 1) as f64 };
                                domain.decode(low + t * (high - low))
                            })
                            .collect();
                        values.dedup();
                        values
                    }
                }
            })
            .collect()
    }

    /// The grid's points in an order shuffled by the seed (as Optuna's grid
    /// sampler does), so a study cut short still covers the grid evenly.
    fn grid_point(&self, space: &Space, number: usize) -> Option<Params> {
        let grid = self.grid(space);
        let size: usize = grid.iter().map(Vec::len).product();
        if number >= size {
            return None;
        }
        let mut order: Vec<usize> = (0..size).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed));
        let mut index = order[number];
        let mut params = Params::new();
        for (param, values) in space.params.iter().zip(&grid) {
            params.insert(param.name.clone(), values[index % values.len()].clone());
            index /= values.len();
        }
        Some(params)
    }

    /// Optuna's TPE: the finished trials split into the best `good_count`
    /// and the rest; the next settings are the best of `candidates` draws from
    /// the good trials' density by the ratio of good to bad density there.
    fn tpe(&self, space: &Space, history: &[Observed], rng: &mut ChaCha8Rng) -> Params {
        let sign = if self.maximize { -1.0 } else { 1.0 };
        // Ranked best first: complete trials by value, then pruned ones by how
        // far they got and their value there.
        let mut ranked: Vec<(usize, (u8, f64, f64))> = history
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.outcome {
                Outcome::Complete(value) if value.is_finite() => Some((i, (0, 0.0, sign * value))),
                Outcome::Pruned { epoch, value } if value.is_finite() => Some((i, (1, -epoch, sign * value))),
                _ => None,
            })
            .collect();
        if ranked.len() < self.startup_trials.max(1) {
            return random(space, rng);
        }
        ranked.sort_by(|a, b| a.1.0.cmp(&b.1.0).then(a.1.1.total_cmp(&b.1.1)).then(a.1.2.total_cmp(&b.1.2)));
        let good_count = tpe::good_count(ranked.len());
        let mut good: Vec<&Observed> = ranked[..good_count].iter().map(|&(i, _)| &history[i]).collect();
        let mut bad: Vec<&Observed> = ranked[good_count..].iter().map(|&(i, _)| &history[i]).collect();
        bad.extend(history.iter().filter(|t| t.outcome == Outcome::Running));
        // Weights ramp by age: observations go in trial order.
        good.sort_by_key(|t| t.number);
        bad.sort_by_key(|t| t.number);
        // Only trials with every setting of this space count (as in Optuna).
        let points = |trials: &[&Observed]| -> Vec<Vec<f64>> {
            trials
                .iter()
                .filter_map(|t| space.params.iter().map(|p| p.domain.encode(t.params.get(&p.name)?)).collect())
                .collect()
        };
        let dims: Vec<tpe::Dim> = space
            .params
            .iter()
            .map(|p| match &p.domain {
                Domain::Choice(choices) => tpe::Dim::Choices(choices.len()),
                domain => {
                    let (low, high) = domain.internal_bounds().unwrap_or_default();
                    tpe::Dim::Interval { low, high: high.max(low + 1e-12) }
                }
            })
            .collect();
        let l = tpe::Mixture::new(&points(&good), &dims);
        let g = tpe::Mixture::new(&points(&bad), &dims);
        let best = (0..self.candidates)
            .map(|_| l.sample(rng))
            .map(|x| (l.log_pdf(&x) - g.log_pdf(&x), x))
            .fold(None, |best: Option<(f64, Vec<f64>)>, next| match best {
                Some(b) if b.0 >= next.0 => Some(b),
                _ => Some(next),
            })
            .map(|b| b.1)
            .unwrap_or_default();
        space.params.iter().zip(best).map(|(param, x)| (param.name.clone(), param.domain.decode(x))).collect()
    }
}

/// Each setting uniform over its internal interval (log ranges uniform in the log).
fn random(space: &Space, rng: &mut ChaCha8Rng) -> Params {
    use rand::Rng;
    space
        .params
        .iter()
        .map(|param| {
            let x = match &param.domain {
                Domain::Choice(choices) => rng.random_range(0..choices.len()) as f64,
                domain => {
                    let (low, high) = domain.internal_bounds().unwrap_or_default();
                    if high > low { rng.random_range(low..high) } else { low }
                }
            };
            (param.name.clone(), param.domain.decode(x))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kiln_config::PipelineConfig;

    use super::*;

    fn space(toml: &str) -> Space {
        Space::from_config(&PipelineConfig::from_toml(&format!("[tune.space]\n{toml}")).expect("parses"))
            .expect("valid")
    }

    fn history(trials: &[(Params, Outcome)]) -> Vec<Observed<'_>> {
        trials
            .iter()
            .enumerate()
            .map(|(number, (params, outcome))| Observed { number, params, outcome: *outcome })
            .collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_trials_and_another_seed_others() {
        let space = Space::from_config(&PipelineConfig::default()).expect("valid");
        for kind in [SamplerKind::Random, SamplerKind::Grid, SamplerKind::Tpe] {
            let draw = |seed| (0..5).map(|n| Sampler::new(kind, seed, true).sample(&space, &[], n)).collect::<Vec<_>>();
            assert_eq!(draw(7), draw(7), "{kind}");
            assert_ne!(draw(7), draw(8), "{kind}");
        }
    }

    #[test]
    fn random_draws_stay_in_range_and_log_ranges_are_uniform_in_the_log() {
        let space = space("learning_rate = { log_uniform = [1e-5, 1e-1] }\nepochs = { int = [2, 5] }\n");
        let sampler = Sampler::new(SamplerKind::Random, 1, true);
        let draws: Vec<Params> = (0..4000).map(|n| sampler.sample(&space, &[], n).expect("draw")).collect();
        let lrs: Vec<f64> = draws.iter().map(|p| p["learning_rate"].as_f64().expect("f64")).collect();
        assert!(lrs.iter().all(|lr| (1e-5..=1e-1).contains(lr)));
        let below_1e3 = lrs.iter().filter(|&&lr| lr < 1e-3).count() as f64 / lrs.len() as f64;
        assert!((below_1e3 - 0.5).abs() < 0.03, "half the decades, half the draws: {below_1e3}");
        for epochs in 2..=5 {
            let share = draws.iter().filter(|p| p["epochs"] == epochs).count() as f64 / draws.len() as f64;
            assert!((share - 0.25).abs() < 0.03, "epochs {epochs}: {share}");
        }
    }

    #[test]
    fn the_grid_covers_every_point_once_then_stops() {
        let space = space("batch_size = { choices = [16, 32] }\nwarmup_ratio = { uniform = [0.0, 0.1] }\n");
        let sampler = Sampler { grid_points: 3, ..Sampler::new(SamplerKind::Grid, 3, true) };
        assert_eq!(sampler.capacity(&space), Some(6));
        let points: Vec<Params> = (0..6).map(|n| sampler.sample(&space, &[], n).expect("point")).collect();
        for (i, p) in points.iter().enumerate() {
            assert!(!points[..i].contains(p), "{p:?} twice");
        }
        let warmups: std::collections::BTreeSet<String> =
            points.iter().map(|p| p["warmup_ratio"].to_string()).collect();
        assert_eq!(warmups.into_iter().collect::<Vec<_>>(), ["0.0", "0.05", "0.1"]);
        assert_eq!(sampler.sample(&space, &[], 6), None);
    }

    /// After the startup trials, TPE draws near the good trials: with every
    /// trial's value its distance from 0.8, half the late draws land within
    /// 0.1 of it (uniform draws would put a fifth there).
    #[test]
    fn tpe_moves_towards_the_good_trials() {
        let space = space("weight_decay = { uniform = [0.0, 1.0] }\n");
        let sampler = Sampler::new(SamplerKind::Tpe, 5, false).with_startup_trials(10);
        let mut trials: Vec<(Params, Outcome)> = Vec::new();
        for n in 0..60 {
            let params = sampler.sample(&space, &history(&trials), n).expect("draw");
            let x = params["weight_decay"].as_f64().expect("f64");
            trials.push((params, Outcome::Complete((x - 0.8).abs())));
        }
        let late: Vec<f64> = trials[30..].iter().map(|(p, _)| p["weight_decay"].as_f64().expect("f64")).collect();
        let near = late.iter().filter(|x| (*x - 0.8).abs() < 0.1).count();
        assert!(near >= 15, "{near} of 30 late draws within 0.1 of the optimum: {late:?}");
    }
}
