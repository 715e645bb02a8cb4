"""Writes tests/fixtures/distilbert_tiny/: a small, randomly initialised (seeded)
`DistilBertForSequenceClassification` saved by `transformers` (config.json,
model.safetensors) and expected.json with its outputs on a padded batch.
kiln's DistilBERT must load it by DistilBERT's key names and reproduce the
outputs within 1e-4 (crates/kiln-model/tests/bert_parity.rs). No DistilBERT
weights ship on PyPI, so random weights are the reference here; the
architecture, names and arithmetic are what is checked. Run with `make fixtures`.
"""
import json
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/distilbert_tiny"


def rounded(tensor):
    return [round(float(x), 6) for x in tensor.flatten().tolist()]


def main():
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32, num_labels=3
    )
    model = transformers.DistilBertForSequenceClassification(config).eval()
    # Random init leaves biases at 0 and LayerNorms at 1/0: perturb them so the
    # test sees every tensor land in the right place.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(OUT, safe_serialization=True)

    input_ids = torch.tensor([[1, 5, 17, 42, 99, 2], [1, 8, 2, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()
    with torch.no_grad():
        hidden = model.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    expected = {
        "generated_by": f"scripts/make_distilbert_fixture.py with transformers {transformers.__version__}, "
        f"torch {torch.__version__}",
        "shape": list(input_ids.shape),
        "input_ids": input_ids.flatten().tolist(),
        "attention_mask": attention_mask.flatten().tolist(),
        "last_hidden_state": rounded(hidden),
        "logits": rounded(logits),
    }
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
