//! kiln's samplers on standard test functions, for `make bench-tune`
//! (scripts/bench/bench_tune.py runs Optuna's on the same ones and compares):
//!
//! `samplers <branin|hartmann6> <tpe|random> <noise sd> <trials> <seeds>`
//!
//! Minimises the function, observing it with Gaussian noise of the given sd;
//! prints one JSON line per seed with the true value of the best-observed
//! trial after each trial (so any budget up to `trials` is read off one run).

use kiln_config::SamplerKind;
use kiln_tune::sampler::{Observed, Outcome, Sampler};
use kiln_tune::space::{Domain, Param, Params, Space};
use rand::{Rng, SeedableRng};

fn branin(x: &[f64]) -> f64 {
    let (x1, x2) = (x[0], x[1]);
    let pi = std::f64::consts::PI;
    let (b, c, r, s, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 6.0, 10.0, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - r).powi(2) + s * (1.0 - t) * x1.cos() + s
}

fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4).map(|i| ALPHA[i] * (-(0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum::<f64>()).exp()).sum::<f64>()
}

/// A test function and its box.
type Problem = (fn(&[f64]) -> f64, Vec<(f64, f64)>);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "samplers <branin|hartmann6> <tpe|random> <noise sd> <trials> <seeds>";
    assert!(args.len() == 6, "{usage}");
    let (function, bounds): Problem = match args[1].as_str() {
        "branin" => (branin, vec![(-5.0, 10.0), (0.0, 15.0)]),
        "hartmann6" => (hartmann6, vec![(0.0, 1.0); 6]),
        other => panic!("no function {other}: {usage}"),
    };
    let kind = match args[2].as_str() {
        "tpe" => SamplerKind::Tpe,
        "random" => SamplerKind::Random,
        other => panic!("no sampler {other}: {usage}"),
    };
    let noise: f64 = args[3].parse().expect(usage);
    let trials: usize = args[4].parse().expect(usage);
    let seeds: u64 = args[5].parse().expect(usage);
    let names: Vec<String> = (0..bounds.len()).map(|i| format!("x{i}")).collect();
    let space = Space {
        params: names
            .iter()
            .zip(&bounds)
            .map(|(name, &(low, high))| Param { name: name.clone(), domain: Domain::Float { low, high, log: false } })
            .collect(),
    };
    for seed in 0..seeds {
        let sampler = Sampler::new(kind, seed, false);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xA5A5);
        let mut history: Vec<(Params, f64)> = Vec::new();
        let mut best: Option<(f64, f64)> = None; // (observed, true)
        let mut curve = Vec::new();
        for number in 0..trials {
            let observed: Vec<Observed> = history
                .iter()
                .enumerate()
                .map(|(n, (params, value))| Observed { number: n, params, outcome: Outcome::Complete(*value) })
                .collect();
            let params = sampler.sample(&space, &observed, number).expect("a draw");
            let x: Vec<f64> = names.iter().map(|n| params[n].as_f64().expect("a number")).collect();
            let truth = function(&x);
            // Box-Muller: a standard normal from two uniforms.
            let gaussian = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt()
                * (2.0 * std::f64::consts::PI * rng.random::<f64>()).cos();
            let seen = truth + noise * gaussian;
            if best.is_none_or(|(b, _)| seen < b) {
                best = Some((seen, truth));
            }
            curve.push(best.map_or(f64::NAN, |b| b.1));
            history.push((params, seen));
        }
        #[allow(clippy::print_stdout)] // The curves are the program's output.
        {
            println!("{}", serde_json::json!({ "seed": seed, "best": curve }));
        }
    }
}
