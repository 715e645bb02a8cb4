"""The reference for `make bench-ner`: Hugging Face `Trainer` fine-tuning the
same model for token classification on the same sub-word ids and labels (read
from kiln's processed Parquet, so both sides see identical inputs: words cut
into the same windows, the label on each word's first sub-word), with the same
epochs, batch size, learning rate, warm-up, weight decay, clipping, seed and
threads. Like kiln, it validates by entity macro-F1 after each epoch and keeps
the best model, then scores the test split with seqeval (default and strict
IOB2 modes) over words read where kiln reads them. Prints one JSON line.

Run by scripts/bench/bench_ner.py inside .venv-ref; not meant to be called by hand.
"""

import argparse
import json
import os
import tempfile
import time

import pyarrow.parquet as pq
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from reference_util import StepTimer
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)


def read_split(processed, split, limit=None):
    table = pq.read_table(os.path.join(processed, f"{split}.parquet")).to_pydict()
    if limit:
        table = {key: values[:limit] for key, values in table.items()}
    rows = []
    for i, ids in enumerate(table["input_ids"]):
        row = {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": table["labels"][i]}
        if "token_type_ids" in table:
            row["token_type_ids"] = table["token_type_ids"][i]
        rows.append(row)
    return table, rows


def word_tags(table, predictions, names):
    """Per sentence, true and predicted tags per word, each read at the word's
    first sub-word in the window where it sits furthest from the edges (as kiln
    reads them); words whose reading sub-word has no label are left out."""
    sentences = {}
    order = []
    for row, sentence in enumerate(table["id"]):
        if sentence not in sentences:
            sentences[sentence] = []
            order.append(sentence)
        sentences[sentence].append(row)
    truth, guess = [], []
    for sentence in order:
        best = {}
        for row in sentences[sentence]:
            word_ids = table["word_ids"][row]
            previous = -1
            for position, word in enumerate(word_ids):
                if word == -1 or word == previous:
                    previous = word
                    continue
                previous = word
                margin = min(position, len(word_ids) - 1 - position)
                if word not in best or margin > best[word][2]:
                    best[word] = (row, position, margin)
        t, g = [], []
        for word in sorted(best):
            row, position, _ = best[word]
            label = table["labels"][row][position]
            if label >= 0:
                t.append(names[label])
                g.append(names[int(predictions[row][position])])
        truth.append(t)
        guess.append(g)
    return truth, guess


def scores(truth, guess):
    return {
        "micro_f1": f1_score(truth, guess),
        "micro_precision": precision_score(truth, guess),
        "micro_recall": recall_score(truth, guess),
        "macro_f1": f1_score(truth, guess, average="macro"),
        "strict_micro_f1": f1_score(truth, guess, mode="strict", scheme=IOB2),
        "strict_macro_f1": f1_score(truth, guess, mode="strict", scheme=IOB2, average="macro"),
        "per_type": {kind: {key: float(value) for key, value in row.items()}
                     for kind, row in classification_report(truth, guess, output_dict=True).items()
                     if not kind.endswith("avg")},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processed", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    parser.add_argument("--limit", type=int, help="only the first N sentences of each split (a quick check)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.processed, "labels.json")) as f:
        names = json.load(f)["labels"]
    _, train = read_split(args.processed, "train", args.limit)
    validation_table, validation = read_split(args.processed, "validation", args.limit)
    test_table, test = read_split(args.processed, "test", args.limit)

    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    collator = DataCollatorForTokenClassification(tokenizer)
    timer = StepTimer()

    def validation_metrics(prediction):
        predicted = prediction.predictions.argmax(-1)
        truth, guess = word_tags(validation_table, predicted, names)
        return {"macro_f1": f1_score(truth, guess, average="macro")}

    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch,
            per_device_eval_batch_size=64,
            learning_rate=args.lr,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps or -1,
            warmup_ratio=0.1,
            weight_decay=0.01,
            max_grad_norm=1.0,
            eval_strategy="epoch",
            save_strategy="epoch",
            load_best_model_at_end=True,
            metric_for_best_model="macro_f1",
            save_total_limit=1,
            logging_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=args.seed,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=validation,
                          data_collator=collator, callbacks=[timer], compute_metrics=validation_metrics)
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        trainer.compute_metrics = None  # it reads the validation split's words
        output = trainer.predict(test)

    truth, guess = word_tags(test_table, output.predictions.argmax(-1), names)
    seconds = sum(timer.times)
    print(json.dumps({
        "steps": len(timer.times),
        "train_seconds": seconds,
        "wall_seconds": wall,
        # A full run sees every sentence window once per epoch; a --max-steps check, whole batches.
        "samples_per_second": (len(timer.times) * args.batch if args.max_steps else len(train) * args.epochs) / seconds,
        "test": scores(truth, guess),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
