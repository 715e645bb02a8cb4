"""Writes tests/fixtures/distilbert_tiny.json: a small, randomly initialised
(seeded) `DistilBertForSequenceClassification` as `transformers` saves it (its
config.json and every tensor of its model.safetensors, by name, exactly) and its
outputs on a padded batch. The Rust test writes the folder back out (weights
are kept out of git as binaries) and kiln's DistilBERT must load it by
DistilBERT's key names and reproduce the outputs within 1e-4
(crates/kiln-model/tests/bert_parity.rs). No DistilBERT
weights ship on PyPI, so random weights are the reference here; the
architecture, names and arithmetic are what is checked. Run with `make fixtures`.
"""
import json
import tempfile
from pathlib import Path

from safetensors.torch import load_file

import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/distilbert_tiny.json"


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
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)
        config_json = json.loads((Path(folder) / "config.json").read_text())
        saved = load_file(str(Path(folder) / "model.safetensors"))
    tensors = {name: {"shape": list(t.shape), "data": t.flatten().tolist()} for name, t in sorted(saved.items())}

    input_ids = torch.tensor([[1, 5, 17, 42, 99, 2], [1, 8, 2, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()
    with torch.no_grad():
        hidden = model.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    fixture = {
        "generated_by": f"scripts/make_distilbert_fixture.py with transformers {transformers.__version__}, "
        f"torch {torch.__version__}",
        "config": config_json,
        "tensors": tensors,
        "shape": list(input_ids.shape),
        "input_ids": input_ids.flatten().tolist(),
        "attention_mask": attention_mask.flatten().tolist(),
        "last_hidden_state": rounded(hidden),
        "logits": rounded(logits),
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
