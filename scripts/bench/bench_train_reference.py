"""The reference for `make bench-train`: Hugging Face `Trainer` fine-tuning the
same model on the same token ids (read from kiln's processed Parquet, so both
sides see identical inputs), CPU torch, dynamic padding (DataCollatorWithPadding,
random batches: what Trainer does by default). Prints one JSON line.

Run by scripts/bench/bench_train.py inside .venv-ref; not meant to be called by hand.
"""

import argparse
import json
import os
import tempfile

import pyarrow.parquet as pq
import torch
from reference_util import StepTimer
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)


class CountingCollator(DataCollatorWithPadding):
    """Dynamic padding, counting the real (unpadded) tokens of every batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def __call__(self, features):
        batch = super().__call__(features)
        self.batches.append((len(features), int(batch["attention_mask"].sum())))
        return batch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processed", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="mixed precision in bfloat16 (GPU)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    table = pq.read_table(os.path.join(args.processed, "train.parquet")).to_pydict()
    with open(os.path.join(args.processed, "labels.json")) as f:
        labels = json.load(f)["labels"]
    rows = []
    for i, ids in enumerate(table["input_ids"]):
        row = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": table["label_id"][i]}
        if "token_type_ids" in table:
            row["token_type_ids"] = table["token_type_ids"][i]
        rows.append(row)

    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(labels))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    collator = CountingCollator(tokenizer)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch,
            learning_rate=args.lr,
            warmup_ratio=0.1,
            weight_decay=0.01,
            max_steps=args.steps,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=args.device == "cpu",
            bf16=args.bf16,
            dataloader_num_workers=0,
            seed=42,
            disable_tqdm=True,
        )
        Trainer(model=model, args=training, train_dataset=rows, data_collator=collator, callbacks=[timer]).train()

    timed = slice(args.warmup_steps, args.steps)
    seconds = sum(timer.times[timed])
    samples = sum(n for n, _ in collator.batches[timed])
    tokens = sum(t for _, t in collator.batches[timed])
    print(json.dumps({
        "steps": len(timer.times[timed]),
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "tokens_per_second": tokens / seconds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
