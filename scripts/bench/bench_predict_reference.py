"""The reference for `make bench-predict`: Hugging Face `pipeline("text-classification")`
on the same texts, model folder and thread count as kiln's `predict`. Prints rows/s as JSON.
With `int8`, the model's encoder first goes through torch's `quantize_dynamic`
(per-channel int8 weights on its linear layers): what `predict --quantize int8` runs.
With `bf16`, the pipeline runs under `torch.autocast(dtype=torch.bfloat16)`: what
`predict --precision bf16` runs.
Run in .venv-ref:  .venv-ref/bin/python scripts/bench/bench_predict_reference.py MODEL_DIR TEXTS.csv [threads] [batch] [none|int8|bf16]
"""
import csv
import json
import sys
import time

import torch
from transformers import pipeline


def main():
    folder, path = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    quantize = sys.argv[5] if len(sys.argv) > 5 else "none"
    torch.set_num_threads(threads)
    with open(path, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    classifier = pipeline("text-classification", model=folder, device="cpu", truncation=True, max_length=64)
    if quantize == "int8":
        base = classifier.model.base_model
        base.encoder = torch.ao.quantization.quantize_dynamic(
            base.encoder, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=quantize == "bf16"):
        results = classifier(texts, batch_size=batch)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(results), "seconds": seconds, "rows_per_second": len(results) / seconds}))


if __name__ == "__main__":
    main()
