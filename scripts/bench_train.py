"""`make bench-train`: training throughput of kiln's `train` against Hugging Face
`Trainer`, in the same run, on BANKING77 (MiniLM-L6, batch 32, max length 64,
2 threads, a fixed number of steps, the first few untimed).

Both sides train on the same token ids (kiln's processed Parquet) with dynamic
padding; kiln batches by length (its default), Trainer samples random batches
(its default). Prints samples/s, tokens/s (real tokens, padding excluded) and
peak RSS of each process, and the ratios.
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
    parser.add_argument("--processed", default="data/banking77/processed")
    parser.add_argument("--model", default="models/pretrained/all-MiniLM-L6-v2")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps at the start")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--python", default=".venv-ref/bin/python")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        kiln = [
            os.path.join(args.bin, "train"), "--config", args.config, "--input-dir", args.processed,
            "--model-dir", args.model, "--device", "cpu", "--threads", str(args.threads),
            "--batch-size", "32", "--learning-rate", "1e-4", "--max-steps", str(args.steps),
            "--log-every-steps", "1", "--output-dir", os.path.join(out, "model"),
            "--run-dir", os.path.join(out, "run"), "--quiet",
        ]
        _, kiln_rss, _ = run_measured(kiln)
        records = [json.loads(line) for line in open(os.path.join(out, "run", "metrics.jsonl"))]
    timed = [r for r in records if r["kind"] == "train" and r["step"] > args.warmup_steps]
    seconds = sum(r["seconds"] for r in timed)
    kiln_result = {
        "samples_per_second": sum(r["samples"] for r in timed) / seconds,
        "tokens_per_second": sum(r["tokens"] for r in timed) / seconds,
        "peak_rss_mib": kiln_rss,
    }

    reference = [
        args.python, "scripts/bench_train_reference.py", "--processed", args.processed, "--model", args.model,
        "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps), "--threads", str(args.threads),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    _, reference_rss, stdout = run_measured(reference, env=env, capture=True)
    reference_result = json.loads(stdout.strip().splitlines()[-1])
    reference_result["peak_rss_mib"] = reference_rss

    timed_steps = args.steps - args.warmup_steps
    print(f"bench-train: BANKING77 train, MiniLM-L6, batch 32, max length 64, {args.threads} threads, "
          f"{timed_steps} timed steps after {args.warmup_steps} untimed")
    print(f"{'':28} {'samples/s':>10} {'tokens/s':>10} {'peak RSS':>10}")
    for name, result in [("kiln train (bucketed)", kiln_result),
                         (f"HF Trainer (torch {reference_result['torch']})", reference_result)]:
        print(f"{name:28} {result['samples_per_second']:10.1f} {result['tokens_per_second']:10.0f} "
              f"{result['peak_rss_mib']:7.0f} MiB")
    ratio = kiln_result["samples_per_second"] / reference_result["samples_per_second"]
    print(f"kiln / Trainer: {ratio:.2f}x samples/s (target >= 1.5x), "
          f"{kiln_result['peak_rss_mib'] / reference_result['peak_rss_mib']:.2f}x peak RSS")
    print(json.dumps({"kiln": kiln_result, "reference": reference_result, "ratio": ratio}))


if __name__ == "__main__":
    main()
