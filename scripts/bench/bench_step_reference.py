"""The reference for the step profile of `make bench-train`: one training step
of plain torch (transformers' model with its default SDPA attention, AdamW,
clip_grad_norm_) on the identical fixed batches kiln's
`crates/kiln-model/examples/train_step.rs` times: `batch` x `length` real
tokens, the same token-id formula, 77 labels. Times each phase and prints one
JSON line per length and optimizer (torch's default AdamW, and fused=True);
with `--bf16`, the forward and loss under `torch.autocast(dtype=torch.bfloat16)`,
as kiln's `precision = "bf16"` (fused AdamW only).

Run by scripts/bench/bench_train.py inside .venv-ref.
"""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForSequenceClassification

LABELS = 77
WARMUP_STEPS = 3
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")


def token_id(row, column, length):
    """Same as `token_id` in train_step.rs."""
    if column == 0:
        return 101
    if column + 1 == length:
        return 102
    return 1000 + (row * 7919 + column * 104729) % 20000


def fixed_batch(batch, length):
    ids = torch.tensor([[token_id(r, c, length) for c in range(length)] for r in range(batch)])
    return {
        "input_ids": ids,
        "token_type_ids": torch.zeros_like(ids),
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([r % LABELS for r in range(batch)]),
    }


def profile(model_dir, batch, length, steps, fused, bf16=False):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=LABELS)
    model.train()
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(NO_DECAY)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-4, eps=1e-8, fused=fused or None)
    inputs = fixed_batch(batch, length)
    phases = {"forward_ms": [], "backward_ms": [], "clip_ms": [], "optimizer_ms": [], "step_ms": []}
    for step in range(WARMUP_STEPS + steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs).loss
        loss.item()
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        clipped = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if step >= WARMUP_STEPS:
            for key, (a, b) in {"forward_ms": (started, forward), "backward_ms": (forward, backward),
                                "clip_ms": (backward, clipped), "optimizer_ms": (clipped, done),
                                "step_ms": (started, done)}.items():
                phases[key].append((b - a) * 1e3)
    return {key: statistics.median(values) for key, values in phases.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", default="16,32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="also time the step under torch.autocast bf16")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    for length in map(int, args.lengths.split(",")):
        runs = [(False, False), (True, False)] + ([(True, True)] if args.bf16 else [])
        for fused, bf16 in runs:
            result = profile(args.model, args.batch, length, args.steps, fused, bf16)
            side = ("torch autocast bf16, fused" if bf16 else
                    "torch AdamW(fused)" if fused else "torch AdamW")
            print(json.dumps({"side": side, "torch": torch.__version__, "batch": args.batch, "length": length,
                              "threads": args.threads, "steps": args.steps, **result}), flush=True)


if __name__ == "__main__":
    main()
