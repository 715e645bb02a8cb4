"""The ceiling for `make bench-train`: LibTorch's GEMM throughput on this
machine, in fp32 and in bf16, at the shapes MiniLM's encoder multiplies (512 x
512 x 512, and 512 tokens x 384 by 384 x 1536, its feed-forward). Prints one
JSON line of GFLOP/s per dtype and shape; the best of five timed repeats of
each counts.

Run by scripts/bench/bench_train.py inside .venv-ref; not meant to be called by hand.
"""

import argparse
import json
import time

import torch

SHAPES = {"512x512x512": (512, 512, 512), "512x384x1536": (512, 384, 1536)}


def gflops(m, k, n, device, dtype, repeats=5, calls=20):
    a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        for _ in range(calls):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - started) / calls)
    return 2 * m * k * n / best / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 with TF32 off, as kiln trains)")
    parser.add_argument("--dtypes", default="fp32,bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    print(json.dumps({name: {shape_name: gflops(*shape, args.device, dtypes[name]) for shape_name, shape in SHAPES.items()}
                      for name in args.dtypes.split(",")}))


if __name__ == "__main__":
    main()
