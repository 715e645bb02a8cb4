"""`make bench-ner`: WNUT-17 named entities, kiln's `train` + `eval` against
Hugging Face `Trainer` (scripts/bench/bench_ner_reference.py), in the same run: the
same MiniLM-L6, processed data, epochs, batch size, learning rate and threads.
Both keep the epoch with the best validation entity macro-F1. Prints test
entity F1 (seqeval default mode, micro and macro, and strict IOB2), training
samples/s, wall time and peak RSS, and the ratios.
"""

import argparse
import json
import os
import tempfile

from bench_util import run_measured


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release", help="folder with kiln's binaries")
    parser.add_argument("--config", default="configs/wnut17.toml")
    parser.add_argument("--processed", default="data/wnut17/processed")
    parser.add_argument("--model", default="models/pretrained/all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--python", default=".venv-ref/bin/python")
    parser.add_argument("--max-steps", type=int, default=0, help="stop both after this many steps (a quick check)")
    parser.add_argument("--keep", help="keep kiln's model and eval here instead of a temporary folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or scratch
        common = ["--config", args.config, "--device", "cpu", "--threads", str(args.threads), "--quiet"]
        train = [
            os.path.join(args.bin, "train"), *common, "--input-dir", args.processed, "--model-dir", args.model,
            "--epochs", str(args.epochs), "--batch-size", str(args.batch), "--learning-rate", str(args.lr),
            "--output-dir", os.path.join(out, "model"), "--run-dir", os.path.join(out, "run"),
            "--max-steps", str(args.max_steps),
        ]
        env = dict(os.environ, KILN_RUNS_DIR=os.path.join(out, "runs"))
        kiln_wall, kiln_rss, _ = run_measured(train, env=env)
        evaluate = [
            os.path.join(args.bin, "eval"), *common, "--input-dir", args.processed,
            "--model-dir", os.path.join(out, "model"), "--output-dir", os.path.join(out, "eval"),
            "--train-metrics", os.path.join(out, "run", "metrics.jsonl"),
        ]
        run_measured(evaluate, env=env)
        records = [json.loads(line) for line in open(os.path.join(out, "run", "metrics.jsonl"))]
        metrics = json.load(open(os.path.join(out, "eval", "metrics.json")))
    trained = [r for r in records if r["kind"] == "train"]
    entities = metrics["entities"]
    kiln_result = {
        "samples_per_second": sum(r["samples"] for r in trained) / sum(r["seconds"] for r in trained),
        "wall_seconds": kiln_wall,
        "peak_rss_mib": kiln_rss,
        "test": {
            "micro_f1": entities["conlleval"]["micro"]["f1"],
            "macro_f1": entities["conlleval"]["macro_avg"]["f1"],
            "strict_micro_f1": entities["strict"]["micro"]["f1"],
        },
    }

    reference = [
        args.python, "scripts/bench/bench_ner_reference.py", "--processed", args.processed, "--model", args.model,
        "--epochs", str(args.epochs), "--batch", str(args.batch), "--lr", str(args.lr),
        "--threads", str(args.threads), "--max-steps", str(args.max_steps),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    _, reference_rss, stdout = run_measured(reference, env=env, capture=True)
    reference_result = json.loads(stdout.strip().splitlines()[-1])
    reference_result["peak_rss_mib"] = reference_rss

    print(f"bench-ner: WNUT-17, MiniLM-L6, {args.epochs} epochs, batch {args.batch}, lr {args.lr}, "
          f"{args.threads} threads; test split, seqeval 1.2.2")
    print(f"{'':30} {'F1 micro':>9} {'F1 macro':>9} {'strict':>8} {'samples/s':>10} {'wall':>8} {'peak RSS':>10}")
    for name, result in [("kiln train + eval", kiln_result),
                         (f"HF Trainer (torch {reference_result['torch']})", reference_result)]:
        test = result["test"]
        print(f"{name:30} {test['micro_f1']:9.4f} {test['macro_f1']:9.4f} {test['strict_micro_f1']:8.4f} "
              f"{result['samples_per_second']:10.1f} {result['wall_seconds']:7.0f}s {result['peak_rss_mib']:7.0f} MiB")
    f1_gap = kiln_result["test"]["micro_f1"] - reference_result["test"]["micro_f1"]
    ratio = kiln_result["samples_per_second"] / reference_result["samples_per_second"]
    print(f"kiln - Trainer: {f1_gap:+.4f} entity micro F1 (goal >= 0); kiln / Trainer: {ratio:.2f}x training "
          f"samples/s, {kiln_result['peak_rss_mib'] / reference_result['peak_rss_mib']:.2f}x peak RSS")
    print(json.dumps({"kiln": kiln_result, "reference": reference_result, "f1_gap": f1_gap, "ratio": ratio}))


if __name__ == "__main__":
    main()
