"""Loads a kiln export with Hugging Face transformers and prints the class
probabilities of some texts as JSON, for the round-trip check (kiln and
transformers must agree within 1e-4). Run in .venv-ref (scripts/setup.sh reference):

    .venv-ref/bin/python scripts/checks/check_export.py [--clean-with-card] artifacts/export "first text" "second text"

Texts are truncated as transformers does by default (`truncation=True`: the
tokenizer's `model_max_length`, which the export sets to the training
`max_length`). With --clean-with-card each text first goes through the
`kiln_clean` function that the export's model card gives, exactly as a user
would copy it; without it, texts are passed through unchanged.
"""
import json
import re
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def card_cleaner(folder):
    card = (Path(folder) / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", card, flags=re.S):
        if "def kiln_clean" in block:
            code = block.split("from transformers import")[0]
            scope = {}
            exec(code, scope)
            return scope["kiln_clean"]
    sys.exit(f"{folder}/README.md has no kiln_clean")


def main():
    args = sys.argv[1:]
    clean = None
    if args and args[0] == "--clean-with-card":
        args = args[1:]
        clean = card_cleaner(args[0])
    folder, texts = args[0], args[1:]
    if clean:
        texts = [clean(text) for text in texts]
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.softmax(model(**batch).logits, dim=-1)
    print(json.dumps({
        "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "probabilities": probabilities.tolist(),
        "cleaned": texts,
        "lengths": batch["attention_mask"].sum(dim=1).tolist(),
    }))


if __name__ == "__main__":
    main()
