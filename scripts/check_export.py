"""Loads a kiln export with Hugging Face transformers and prints the class
probabilities of some texts as JSON, for the round-trip check (kiln and
transformers must agree within 1e-4). Run in .venv-ref (scripts/reference_env.sh):

    .venv-ref/bin/python scripts/check_export.py artifacts/export "first text" "second text"

Texts are passed through unchanged: give them already cleaned.
"""
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    folder, texts = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.softmax(model(**batch).logits, dim=-1)
    print(json.dumps({
        "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "probabilities": probabilities.tolist(),
    }))


if __name__ == "__main__":
    main()
