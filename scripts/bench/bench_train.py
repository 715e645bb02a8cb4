"""`make bench-train`: training throughput of kiln's `train` against Hugging Face
`Trainer`, in the same run, on BANKING77 (MiniLM-L6, batch 32, max length 64,
2 threads, a fixed number of steps, the first few untimed).

Both sides train on the same token ids (kiln's processed Parquet) with dynamic
padding; kiln batches by length (its default), Trainer samples random batches
(its default). Prints samples/s, tokens/s (real tokens, padding excluded) and
peak RSS of each process, and the ratios.

The limit: LibTorch's best fp32 GEMM rate here (scripts/bench/bench_gemm_reference.py)
over the 6 FLOPs per parameter per token that a training step multiplies
through the encoder's linear layers (forward 2, backward 4; attention's own
products and everything else are not counted), so "share of the limit" is how
much of the machine's matrix throughput each side turns into training.

Then the step profile on identical batches: kiln's `train_step` example and
plain torch (scripts/bench/bench_step_reference.py) time one step's phases (forward
with the loss, backward, clipping, AdamW) on the same fixed batches of 32 x L
real tokens, so the per-step cost is compared with batching taken out.
"""

import argparse
import json
import os
import tempfile

from bench_util import run_measured

# The recipe's batch size, for the whole run and the step profile alike.
BATCH = 32


def encoder_linear_parameters(model_dir):
    """Weights of the encoder's linear layers: Q, K, V, output and the two feed-forward ones."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    hidden = config.get("hidden_size", config.get("dim"))
    inner = config.get("intermediate_size", config.get("hidden_dim"))
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    return layers * (4 * hidden * hidden + 2 * hidden * inner)


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
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (scripts/checks/gpu_check.sh)")
    parser.add_argument("--reference-bf16", action="store_true", help="Trainer in bf16 mixed precision (GPU)")
    parser.add_argument("--profile-lengths", default="16,32",
                        help="text lengths of the step profile's fixed batches ('' skips it; CPU runs only)")
    parser.add_argument("--profile-steps", type=int, default=10, help="timed steps per length in the step profile")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        kiln = [
            os.path.join(args.bin, "train"), "--config", args.config, "--input-dir", args.processed,
            "--model-dir", args.model, "--device", args.device, "--threads", str(args.threads),
            "--batch-size", str(BATCH), "--learning-rate", "1e-4", "--max-steps", str(args.steps),
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
        args.python, "scripts/bench/bench_train_reference.py", "--processed", args.processed, "--model", args.model,
        "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps), "--threads", str(args.threads),
        "--device", args.device,
    ] + (["--bf16"] if args.reference_bf16 else [])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    _, reference_rss, stdout = run_measured(reference, env=env, capture=True)
    reference_result = json.loads(stdout.strip().splitlines()[-1])
    reference_result["peak_rss_mib"] = reference_rss

    _, _, stdout = run_measured([args.python, "scripts/bench/bench_gemm_reference.py", "--threads", str(args.threads),
                                 "--device", args.device],
                                env=env, capture=True)
    gemm = json.loads(stdout.strip().splitlines()[-1])
    limit_gflops = max(gemm.values())
    flops_per_token = 6 * encoder_linear_parameters(args.model)
    limit_tokens = limit_gflops * 1e9 / flops_per_token

    timed_steps = args.steps - args.warmup_steps
    print(f"bench-train: BANKING77 train, MiniLM-L6, batch {BATCH}, max length 64, {args.threads} threads, "
          f"{timed_steps} timed steps after {args.warmup_steps} untimed")
    print("limit: fp32 GEMM " + ", ".join(f"{shape} {rate:.0f}" for shape, rate in gemm.items())
          + f" GFLOP/s; {flops_per_token / 1e6:.1f} MFLOP per real token -> {limit_tokens:.0f} tokens/s")
    print(f"{'':28} {'samples/s':>10} {'tokens/s':>10} {'of limit':>9} {'peak RSS':>10}")
    for name, result in [("kiln train (bucketed)", kiln_result),
                         (f"HF Trainer (torch {reference_result['torch']})", reference_result)]:
        result["share_of_limit"] = result["tokens_per_second"] / limit_tokens
        print(f"{name:28} {result['samples_per_second']:10.1f} {result['tokens_per_second']:10.0f} "
              f"{result['share_of_limit']:8.0%} {result['peak_rss_mib']:7.0f} MiB")
    ratio = kiln_result["samples_per_second"] / reference_result["samples_per_second"]
    print(f"kiln / Trainer: {ratio:.2f}x samples/s (target >= 1.5x), "
          f"{kiln_result['peak_rss_mib'] / reference_result['peak_rss_mib']:.2f}x peak RSS")
    # The profile's two sides run on the CPU: a GPU run (gpu_check.sh) skips it.
    profiled = args.profile_lengths and args.device == "cpu"
    profile = step_profile(args, env, flops_per_token, limit_gflops) if profiled else []
    print(json.dumps({"kiln": kiln_result, "reference": reference_result, "ratio": ratio,
                      "gemm_gflops": gemm, "limit_tokens_per_second": limit_tokens, "step_profile": profile}))


def step_profile(args, env, flops_per_token, limit_gflops):
    """Both sides' phase times on the identical fixed batches; prints a table and returns the records."""
    common = ["--threads", str(args.threads), "--batch", str(BATCH), "--lengths", args.profile_lengths,
              "--steps", str(args.profile_steps)]
    kiln = [os.path.join(args.bin, "examples", "train_step"), args.model, str(args.threads), str(BATCH),
            args.profile_lengths, str(args.profile_steps)]
    _, _, stdout = run_measured(kiln, env=env, capture=True)
    records = [json.loads(line) for line in stdout.strip().splitlines()]
    _, _, stdout = run_measured([args.python, "scripts/bench/bench_step_reference.py", "--model", args.model] + common,
                                env=env, capture=True)
    records += [json.loads(line) for line in stdout.strip().splitlines() if line.startswith("{")]

    print(f"step profile: identical fixed batches of {BATCH} x L real tokens, median ms per step over "
          f"{args.profile_steps} steps, {args.threads} threads")
    print(f"{'':30} {'forward':>8} {'backward':>9} {'clip':>6} {'AdamW':>7} {'step':>8} {'of limit':>9}")
    for length in sorted({r["length"] for r in records}):
        rows = [r for r in records if r["length"] == length]
        for r in rows:
            tokens_per_second = BATCH * length / (r["step_ms"] / 1e3)
            r["share_of_limit"] = tokens_per_second * flops_per_token / (limit_gflops * 1e9)
            print(f"L={length:<3} {r['side']:25} {r['forward_ms']:8.1f} {r['backward_ms']:9.1f} {r['clip_ms']:6.1f} "
                  f"{r['optimizer_ms']:7.1f} {r['step_ms']:8.1f} {r['share_of_limit']:8.0%}")
        kiln_step = next(r["step_ms"] for r in rows if r["side"] == "kiln")
        best = min((r for r in rows if r["side"] != "kiln"), key=lambda r: r["step_ms"])
        print(f"L={length:<3} kiln / {best['side']}: {kiln_step / best['step_ms']:.2f}x step time (target <= 1.00x)")
    return records


if __name__ == "__main__":
    main()
