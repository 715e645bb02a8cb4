"""`make bench-prune`: what ASHA pruning buys a real study, measured in one run.

Runs the same `tune` study on BANKING77 twice, with `--pruner none` and with
`--pruner asha`, in fresh folders under --output: same seed, sampler, space,
trial count and data fraction, so the random start-up trials are the same
settings in both (TPE's later picks differ once pruned trials feed it).
Prints, per study, the wall time, the epochs trained, how many trials were
pruned and the best validation value, then the ASHA / none ratios. Both
studies fit on 2 CPU cores at the defaults (about 25 minutes in all).
"""

import argparse
import csv
import os
import shutil
import sys

from bench_util import run_measured


def study(args, pruner):
    """Runs one study from scratch; returns (wall seconds, its trials.csv rows)."""
    name = f"prune-{pruner}"
    folder = os.path.join(args.output, name)
    shutil.rmtree(folder, ignore_errors=True)
    command = [os.path.join(args.bin, "tune"), "--config", args.config, "--quiet",
               "--study", name, "--output-dir", args.output, "--runs-dir", os.path.join(args.output, "runs"),
               "--pruner", pruner, "--trials", str(args.trials), "--startup-trials", str(args.startup_trials),
               "--data-fraction", str(args.data_fraction), "--seed", str(args.seed), "--keep-models", "false"]
    seconds, _, _ = run_measured(command)
    with open(os.path.join(folder, "trials.csv"), newline="") as f:
        return seconds, list(csv.DictReader(f))


def summary(seconds, trials, maximise):
    finished = [t for t in trials if t["state"] in ("complete", "pruned")]
    complete = [t for t in trials if t["state"] == "complete"]
    if not complete:
        sys.exit("bench-prune: a study finished no trial; see its trials/*/train.log")
    best = (max if maximise else min)(complete, key=lambda t: float(t["value"]))
    return {
        "seconds": seconds,
        "epochs": sum(float(t["epochs_trained"]) for t in finished),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "failed": sum(t["state"] == "failed" for t in trials),
        "best": float(best["value"]),
        "best_trial": best["trial"],
        "count": len(finished),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release", help="folder with kiln's binaries")
    parser.add_argument("--config", default="configs/banking77.toml", help="its [tune] section sets the space and metric")
    parser.add_argument("--output", default="artifacts/bench/prune")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--startup-trials", type=int, default=4)
    parser.add_argument("--data-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--metric", default="accuracy", help="the config's tune.metric: loss is minimised")
    args = parser.parse_args()
    maximise = args.metric != "loss"

    results = {}
    for pruner in ("none", "asha"):
        print(f"bench-prune: study with --pruner {pruner} ({args.trials} trials, data fraction {args.data_fraction})...",
              flush=True)
        results[pruner] = summary(*study(args, pruner), maximise)

    print(f"\nBANKING77, {args.trials} trials ({args.startup_trials} random, then TPE), seed {args.seed}, "
          f"data fraction {args.data_fraction}, {os.cpu_count()} CPU cores")
    print(f"{'pruner':<8}{'wall s':>9}{'epochs':>9}{'pruned':>8}{'failed':>8}{'best ' + args.metric:>16}{'trial':>7}")
    for pruner, r in results.items():
        print(f"{pruner:<8}{r['seconds']:>9.0f}{r['epochs']:>9.2f}{r['pruned']:>8}{r['failed']:>8}"
              f"{r['best']:>16.4f}{r['best_trial']:>7}")
    none, asha = results["none"], results["asha"]
    print(f"\nasha / none: wall time {asha['seconds'] / none['seconds']:.2f}x, "
          f"epochs trained {asha['epochs'] / none['epochs']:.2f}x, "
          f"best {args.metric} {asha['best'] - none['best']:+.4f}")


if __name__ == "__main__":
    main()
