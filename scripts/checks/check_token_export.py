"""Loads a kiln token-classification export with Hugging Face transformers and
prints, as JSON, the entities `pipeline("token-classification")` finds in some
texts with each aggregation strategy, for the round-trip check (kiln's
`predict` must find the same entities, scores within 1e-4). Run in .venv-ref
(scripts/setup.sh reference):

    .venv-ref/bin/python scripts/checks/check_token_export.py artifacts/wnut17/export "first text" "second text"
"""
import json
import sys

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

STRATEGIES = ["none", "simple", "first", "average", "max"]


def plain(entity):
    out = {key: entity[key] for key in ("word", "start", "end") if key in entity}
    out["score"] = float(entity["score"])
    for key in ("entity", "entity_group"):
        if key in entity:
            out[key] = entity[key]
    return out


def main():
    folder, texts = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    found = {}
    for strategy in STRATEGIES:
        tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy)
        found[strategy] = [[plain(e) for e in tagger(text)] for text in texts]
    print(json.dumps({
        "architecture": type(model).__name__,
        "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "entities": found,
    }))


if __name__ == "__main__":
    main()
