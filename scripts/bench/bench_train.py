"""`make bench-train`: training throughput of kiln's `train` against Hugging Face
`Trainer`, in the same run, on BANKING77 (MiniLM-L6, batch 32, max length 64,
2 threads, a fixed number of steps, the first few untimed), each in fp32 and in
bf16 mixed precision (kiln `--precision bf16`, Trainer `bf16=True`) where the
CPU or GPU has fast bf16 (AVX-512 BF16 or AMX; `--precisions fp32` skips bf16).

Both sides train on the same token ids (kiln's processed Parquet) with dynamic
padding; kiln batches by length (its default), Trainer samples random batches
(its default). Prints samples/s, tokens/s (real tokens, padding excluded) and
peak RSS of each process, and the ratios.

The limits: LibTorch's best GEMM rate here, in fp32 and in bf16
(scripts/bench/bench_gemm_reference.py), over the 6 FLOPs per parameter per
token that a training step multiplies through the encoder's linear layers
(forward 2, backward 4; attention's own products and everything else are not
counted), so "share of the limit" is how much of the machine's matrix
throughput each side turns into training; the bf16 limit is the ceiling for
any precision.

Then the step profile on identical batches: kiln's `train_step` example and
plain torch (scripts/bench/bench_step_reference.py) time one step's phases (forward
with the loss, backward, clipping, AdamW) on the same fixed batches of 32 x L
real tokens, in fp32 and bf16 (torch: `torch.autocast`), so the per-step cost
is compared with batching taken out.
"""

import argparse
import json
import os
import tempfile

from bench_util import cpu_has_fast_bf16, cpu_name, run_measured

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


def kiln_train(args, precision):
    """kiln `train` for --steps steps; samples/s and tokens/s over the timed ones, and peak RSS."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            os.path.join(args.bin, "train"), "--config", args.config, "--input-dir", args.processed,
            "--model-dir", args.model, "--device", args.device, "--threads", str(args.threads),
            "--precision", precision, "--batch-size", str(BATCH), "--learning-rate", "1e-4",
            "--max-steps", str(args.steps), "--log-every-steps", "1", "--output-dir", os.path.join(out, "model"),
            "--run-dir", os.path.join(out, "run"), "--quiet",
        ]
        _, rss, _ = run_measured(command)
        records = [json.loads(line) for line in open(os.path.join(out, "run", "metrics.jsonl"))]
    timed = [r for r in records if r["kind"] == "train" and r["step"] > args.warmup_steps]
    seconds = sum(r["seconds"] for r in timed)
    return {
        "samples_per_second": sum(r["samples"] for r in timed) / seconds,
        "tokens_per_second": sum(r["tokens"] for r in timed) / seconds,
        "peak_rss_mib": rss,
    }


def reference_train(args, env, precision):
    command = [
        args.python, "scripts/bench/bench_train_reference.py", "--processed", args.processed, "--model", args.model,
        "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps), "--threads", str(args.threads),
        "--device", args.device,
    ] + (["--bf16"] if precision == "bf16" else [])
    _, rss, stdout = run_measured(command, env=env, capture=True)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = rss
    return result


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
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="which of fp32,bf16 to run (bf16 is left out on a CPU without fast bf16)")
    parser.add_argument("--profile-lengths", default="16,32",
                        help="text lengths of the step profile's fixed batches ('' skips it; CPU runs only)")
    parser.add_argument("--profile-steps", type=int, default=10, help="timed steps per length in the step profile")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if "bf16" in precisions and args.device == "cpu" and not cpu_has_fast_bf16():
        print("bench-train: this CPU has no fast bf16 (AVX-512 BF16 or AMX): fp32 only")
        precisions = [p for p in precisions if p != "bf16"]

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    sides = {}
    for precision in precisions:
        sides[f"kiln {precision}"] = kiln_train(args, precision)
        reference = reference_train(args, env, precision)
        sides[f"Trainer {precision}"] = reference

    _, _, stdout = run_measured([args.python, "scripts/bench/bench_gemm_reference.py", "--threads", str(args.threads),
                                 "--device", args.device, "--dtypes", ",".join(precisions)],
                                env=env, capture=True)
    gemm = json.loads(stdout.strip().splitlines()[-1])
    flops_per_token = 6 * encoder_linear_parameters(args.model)
    limits = {dtype: max(rates.values()) * 1e9 / flops_per_token for dtype, rates in gemm.items()}
    ceiling = max(limits, key=limits.get)

    timed_steps = args.steps - args.warmup_steps
    device = cpu_name() if args.device == "cpu" else args.device
    print(f"bench-train: BANKING77 train, MiniLM-L6, batch {BATCH}, max length 64, {device}, {args.threads} threads, "
          f"{timed_steps} timed steps after {args.warmup_steps} untimed (torch {sides['Trainer fp32']['torch']})")
    for dtype, rates in gemm.items():
        print(f"limit {dtype}: GEMM " + ", ".join(f"{shape} {rate:.0f}" for shape, rate in rates.items())
              + f" GFLOP/s; {flops_per_token / 1e6:.1f} MFLOP per real token -> {limits[dtype]:.0f} tokens/s")
    header = "".join(f" {'of ' + dtype + ' limit':>14}" for dtype in limits)
    print(f"{'':28} {'samples/s':>10} {'tokens/s':>10}{header} {'peak RSS':>10}")
    for name, result in sides.items():
        result["share_of_limit"] = {dtype: result["tokens_per_second"] / limit for dtype, limit in limits.items()}
        shares = "".join(f" {share:14.0%}" for share in result["share_of_limit"].values())
        label = "kiln train (bucketed)" if name == "kiln fp32" else name
        print(f"{label:28} {result['samples_per_second']:10.1f} {result['tokens_per_second']:10.0f}{shares} "
              f"{result['peak_rss_mib']:7.0f} MiB")
    ratio = lambda a, b: sides[a]["samples_per_second"] / sides[b]["samples_per_second"]
    ratios = {"kiln fp32 / Trainer fp32": ratio("kiln fp32", "Trainer fp32")}
    rss = lambda a, b: sides[a]["peak_rss_mib"] / sides[b]["peak_rss_mib"]
    print(f"kiln fp32 / Trainer fp32: {ratios['kiln fp32 / Trainer fp32']:.2f}x samples/s (target >= 1.5x), "
          f"{rss('kiln fp32', 'Trainer fp32'):.2f}x peak RSS")
    if "bf16" in precisions:
        ratios["kiln bf16 / kiln fp32"] = ratio("kiln bf16", "kiln fp32")
        ratios["kiln bf16 / Trainer bf16"] = ratio("kiln bf16", "Trainer bf16")
        ratios["Trainer bf16 / Trainer fp32"] = ratio("Trainer bf16", "Trainer fp32")
        print(f"kiln bf16 / kiln fp32: {ratios['kiln bf16 / kiln fp32']:.2f}x samples/s (target >= 1.5x); "
              f"kiln bf16 / Trainer bf16: {ratios['kiln bf16 / Trainer bf16']:.2f}x (target >= 1.5x), "
              f"{rss('kiln bf16', 'Trainer bf16'):.2f}x peak RSS; Trainer bf16 / fp32: "
              f"{ratios['Trainer bf16 / Trainer fp32']:.2f}x")
        print(f"kiln bf16 reaches {sides['kiln bf16']['share_of_limit'][ceiling]:.0%} of the {ceiling} limit")
    # The profile's two sides run on the CPU: a GPU run (gpu_check.sh) skips it.
    profiled = args.profile_lengths and args.device == "cpu"
    profile = step_profile(args, env, flops_per_token, limits, precisions) if profiled else []
    print(json.dumps({"sides": sides, "ratios": ratios, "gemm_gflops": gemm, "limit_tokens_per_second": limits,
                      "cpu": device, "step_profile": profile}))


def step_profile(args, env, flops_per_token, limits, precisions):
    """Both sides' phase times on the identical fixed batches; prints a table and returns the records."""
    common = ["--threads", str(args.threads), "--batch", str(BATCH), "--lengths", args.profile_lengths,
              "--steps", str(args.profile_steps)]
    records = []
    for precision in precisions:
        kiln = [os.path.join(args.bin, "examples", "train_step"), args.model, str(args.threads), str(BATCH),
                args.profile_lengths, str(args.profile_steps), precision]
        _, _, stdout = run_measured(kiln, env=env, capture=True)
        records += [json.loads(line) for line in stdout.strip().splitlines()]
    reference = [args.python, "scripts/bench/bench_step_reference.py", "--model", args.model] + common
    _, _, stdout = run_measured(reference + (["--bf16"] if "bf16" in precisions else []), env=env, capture=True)
    records += [json.loads(line) for line in stdout.strip().splitlines() if line.startswith("{")]

    print(f"step profile: identical fixed batches of {BATCH} x L real tokens, median ms per step over "
          f"{args.profile_steps} steps, {args.threads} threads")
    header = "".join(f" {'of ' + dtype + ' limit':>14}" for dtype in limits)
    print(f"{'':32} {'forward':>8} {'backward':>9} {'clip':>6} {'AdamW':>7} {'step':>8}{header}")
    for length in sorted({r["length"] for r in records}):
        rows = [r for r in records if r["length"] == length]
        for r in rows:
            tokens_per_second = BATCH * length / (r["step_ms"] / 1e3)
            r["share_of_limit"] = {dtype: tokens_per_second / limit for dtype, limit in limits.items()}
            shares = "".join(f" {share:14.0%}" for share in r["share_of_limit"].values())
            print(f"L={length:<3} {r['side']:27} {r['forward_ms']:8.1f} {r['backward_ms']:9.1f} {r['clip_ms']:6.1f} "
                  f"{r['optimizer_ms']:7.1f} {r['step_ms']:8.1f}{shares}")
        for precision in precisions:
            kiln_side = "kiln" if precision == "fp32" else "kiln bf16"
            torch_sides = [r for r in rows if r["side"].startswith("torch") and ("bf16" in r["side"]) == (precision == "bf16")]
            kiln_step = next(r["step_ms"] for r in rows if r["side"] == kiln_side)
            best = min(torch_sides, key=lambda r: r["step_ms"])
            print(f"L={length:<3} {kiln_side} / {best['side']}: {kiln_step / best['step_ms']:.2f}x step time "
                  f"(target <= 1.00x)")
    return records


if __name__ == "__main__":
    main()
