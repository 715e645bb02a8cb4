"""Writes tests/fixtures/aggregation_pipeline.json: what transformers'
`pipeline("token-classification")` answers for each aggregation strategy
(none, simple, first, average, max) on texts tokenized by the installed
all-MiniLM-L6-v2 tokenizer, with the logits it aggregated. kiln's aggregation
(kiln_text::aggregate) must give the same entities from the same logits:
entity or entity_group, word, start and end exactly, score within 1e-5
(crates/kiln-text/tests/aggregation_pipeline.rs). The logits come from a
seeded random `BertForTokenClassification` whose head is scaled up, so that
tags change from token to token and every grouping rule is exercised. Run
with `make fixtures`.
"""
import json
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/aggregation_pipeline.json"
MODEL = ROOT / "models/pretrained/all-MiniLM-L6-v2"
LABELS = ["B-corporation", "B-creative-work", "B-group", "B-location", "B-person", "B-product",
          "I-corporation", "I-creative-work", "I-group", "I-location", "I-person", "I-product", "O"]
TEXTS = [
    "Ada Lovelace visited Kraków and the Analytical Engine in London",
    "@paulwalk it's the view from where I'm living for two weeks. Empire State Building = ESB.",
    "Zyxwvutsr loves 🧿 emoji and naïve café-au-lait on New-York's 5th Avenue!!",
    "Microsoft Xbox Series X vs PlayStation5",
    "a",
]


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "item"):
        return value.item()
    return value


def main():
    torch.manual_seed(17)
    tokenizer = transformers.AutoTokenizer.from_pretrained(MODEL)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = transformers.BertForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    cases = []
    for text in TEXTS:
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**encoded).logits[0]
        case = {"text": text, "input_ids": encoded["input_ids"][0].tolist(), "logits": logits.tolist(), "strategies": {}}
        for strategy in ["none", "simple", "first", "average", "max"]:
            pipe = transformers.pipeline("token-classification", model=model, tokenizer=tokenizer,
                                         aggregation_strategy=strategy, device=-1)
            case["strategies"][strategy] = [plain(e) for e in pipe(text)]
        cases.append(case)
    OUT.write_text(json.dumps({
        "generated_by": f"scripts/make_aggregation_fixture.py with transformers {transformers.__version__}",
        "labels": LABELS,
        "cases": cases,
    }) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
