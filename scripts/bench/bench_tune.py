"""`make bench-tune`: kiln's TPE and random samplers against Optuna 5's
TPESampler and RandomSampler on Branin and Hartmann-6, with and without
observation noise, at 50 and 100 trials, 20 seeds each.

Every study minimises the noisy observation; what counts is the true
(noise-free) value of the best-observed trial, so noise can fool a sampler
but not the score. Prints the median over seeds of that value per sampler,
kiln / Optuna ratios of the gap to the optimum, and how often TPE beats random.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys

import numpy as np
import optuna

OPTIMA = {"branin": 0.397887, "hartmann6": -3.32237}
BOUNDS = {"branin": [(-5.0, 10.0), (0.0, 15.0)], "hartmann6": [(0.0, 1.0)] * 6}
# Noise sd: about 1% of each function's range over its box, so it matters near the optimum.
NOISE = {"branin": 1.0, "hartmann6": 0.05}


def branin(x):
    x1, x2 = x
    b, c, r, s, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 6.0, 10.0, 1 / (8 * np.pi)
    return (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s


ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
P = np.array([[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
              [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]])


def hartmann6(x):
    x = np.asarray(x)
    return float(-np.sum(ALPHA * np.exp(-np.sum(A * (x - P) ** 2, axis=1))))


FUNCTIONS = {"branin": branin, "hartmann6": hartmann6}


def optuna_curve(function, sampler_name, noise, trials, seed):
    """The true value of the best-observed trial after each trial."""
    sampler = optuna.samplers.TPESampler(seed=seed) if sampler_name == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    rng = np.random.default_rng(seed ^ 0xA5A5)
    best_seen, best_true, curve = float("inf"), float("nan"), []
    for _ in range(trials):
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", low, high) for i, (low, high) in enumerate(BOUNDS[function])]
        truth = FUNCTIONS[function](x)
        seen = truth + noise * rng.standard_normal()
        study.tell(trial, seen)
        if seen < best_seen:
            best_seen, best_true = seen, truth
        curve.append(best_true)
    return curve


def mann_whitney_p(a, b):
    """Two-sided Mann-Whitney U test, normal approximation with tie correction:
    whether two sets of best values could come from the same sampler."""
    values = np.concatenate([a, b])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(a), len(b)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(values, return_counts=True)
    n = n1 + n2
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma if sigma > 0 else 0.0
    return float(2 * 0.5 * math.erfc(z / math.sqrt(2)))


def kiln_curves(binary, function, sampler, noise, trials, seeds):
    out = subprocess.run([binary, function, sampler, str(noise), str(trials), str(seeds)],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line)["best"] for line in out.splitlines()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers-bin", default="target/release/examples/samplers")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="50,100")
    parser.add_argument("--json", action="store_true", help="one JSON object per row instead of the table (for the test)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budgets = [int(b) for b in args.budgets.split(",")]
    trials = max(budgets)
    say = (lambda *a, **k: None) if args.json else print
    say(f"Median over {args.seeds} seeds of the true value at the best-observed trial (lower is better);")
    say("gap = value - optimum; ratio = kiln gap / Optuna gap (1.0: as good; below 1: better);")
    say("p: two-sided Mann-Whitney test of kiln's and Optuna's TPE over the seeds (above 0.05: within noise).\n")
    say(f"| function | noise sd | trials | optimum | kiln TPE | Optuna TPE | ratio | kiln random | Optuna random | ratio |"
          f" p, kiln vs Optuna TPE | kiln TPE beats kiln random |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for function in ["branin", "hartmann6"]:
        for noise in [0.0, NOISE[function]]:
            curves = {}
            for sampler in ["tpe", "random"]:
                curves[("kiln", sampler)] = kiln_curves(args.samplers_bin, function, sampler, noise, trials, args.seeds)
                curves[("optuna", sampler)] = [optuna_curve(function, sampler, noise, trials, s) for s in range(args.seeds)]
            for budget in budgets:
                med = {key: statistics.median(c[budget - 1] for c in runs) for key, runs in curves.items()}
                gap = {key: value - OPTIMA[function] for key, value in med.items()}
                p = mann_whitney_p(np.array([c[budget - 1] for c in curves[("kiln", "tpe")]]),
                                   np.array([c[budget - 1] for c in curves[("optuna", "tpe")]]))
                wins = sum(t[budget - 1] < r[budget - 1] for t, r in zip(curves[("kiln", "tpe")], curves[("kiln", "random")]))
                if args.json:
                    print(json.dumps({"function": function, "noise": noise, "trials": budget, "p": p, "wins": wins,
                                      "seeds": args.seeds, "median": {f"{k[0]}_{k[1]}": v for k, v in med.items()}}))
                    continue
                print(f"| {function} | {noise} | {budget} | {OPTIMA[function]} | {med[('kiln', 'tpe')]:.4f} |"
                      f" {med[('optuna', 'tpe')]:.4f} | {gap[('kiln', 'tpe')] / gap[('optuna', 'tpe')]:.2f} |"
                      f" {med[('kiln', 'random')]:.4f} | {med[('optuna', 'random')]:.4f} |"
                      f" {gap[('kiln', 'random')] / gap[('optuna', 'random')]:.2f} | {p:.2f} | {wins}/{args.seeds} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
