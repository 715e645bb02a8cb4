"""`make bench-precision`: does bf16 cost accuracy? The BANKING77 recipe
(configs/banking77.toml: MiniLM-L6, 5 epochs, batch 32, lr 1e-4) trained twice
in one run, with `--precision fp32` and `--precision bf16`, each model then
scored on the test split by `eval` in fp32 and in bf16 (the model folder is
fp32 either way). Prints test accuracy and macro-F1 of the four pairs, each
training's samples/s and wall time, and the bf16 - fp32 differences (goal:
within 0.3 points of accuracy).
"""

import argparse
import json
import os
import tempfile

from bench_util import run_measured


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release", help="folder with kiln's binaries")
    parser.add_argument("--config", default="configs/banking77.toml")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", help="keep the models and reports in this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or scratch
        results = {}
        for train_precision in ("fp32", "bf16"):
            model = os.path.join(out, f"model-{train_precision}")
            run = os.path.join(out, f"train-{train_precision}")
            seconds, rss, _ = run_measured([
                os.path.join(args.bin, "train"), "--config", args.config, "--precision", train_precision,
                "--epochs", str(args.epochs), "--device", args.device, "--threads", str(args.threads),
                "--output-dir", model, "--run-dir", run, "--quiet",
            ])
            records = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
            steps = [r for r in records if r["kind"] == "train"]
            samples_per_second = sum(r["samples"] for r in steps) / sum(r["seconds"] for r in steps)
            results[train_precision] = {"train_seconds": seconds, "samples_per_second": samples_per_second,
                                        "peak_rss_mib": rss}
            for eval_precision in ("fp32", "bf16"):
                report = os.path.join(out, f"eval-{train_precision}-{eval_precision}")
                run_measured([
                    os.path.join(args.bin, "eval"), "--config", args.config, "--model-dir", model,
                    "--precision", eval_precision, "--device", args.device, "--threads", str(args.threads),
                    "--output-dir", report, "--train-metrics", os.path.join(run, "metrics.jsonl"), "--quiet",
                ])
                metrics = json.load(open(os.path.join(report, "metrics.json")))
                results[train_precision][eval_precision] = {"accuracy": metrics["accuracy"],
                                                            "macro_f1": metrics["macro_f1"]}

    print(f"bench-precision: BANKING77, {args.epochs} epochs of configs/banking77.toml on {args.device}, "
          f"{args.threads} threads")
    print(f"{'trained in':11} {'samples/s':>10} {'train s':>8} {'peak RSS':>10} {'eval':>5} {'accuracy':>9} {'macro-F1':>9}")
    for train_precision, result in results.items():
        for eval_precision in ("fp32", "bf16"):
            scores = result[eval_precision]
            print(f"{train_precision:11} {result['samples_per_second']:10.1f} {result['train_seconds']:8.0f} "
                  f"{result['peak_rss_mib']:7.0f} MiB {eval_precision:>5} {scores['accuracy']:9.4f} "
                  f"{scores['macro_f1']:9.4f}")
    trained = 100 * (results["bf16"]["bf16"]["accuracy"] - results["fp32"]["fp32"]["accuracy"])
    served = 100 * (results["fp32"]["bf16"]["accuracy"] - results["fp32"]["fp32"]["accuracy"])
    speed = results["bf16"]["samples_per_second"] / results["fp32"]["samples_per_second"]
    print(f"bf16 - fp32 test accuracy: trained and scored in bf16 {trained:+.2f} points, the fp32 model scored in "
          f"bf16 {served:+.2f} points (goal: within 0.3); bf16 trains at {speed:.2f}x fp32's samples/s")
    print(json.dumps({"results": results, "trained_bf16_minus_fp32_points": trained,
                      "scored_bf16_minus_fp32_points": served, "samples_per_second_ratio": speed}))


if __name__ == "__main__":
    main()
