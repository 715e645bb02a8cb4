"""Writes tests/fixtures/token_tiny.json: small, randomly initialised (seeded)
`BertForTokenClassification`, `DistilBertForTokenClassification`,
`RobertaForTokenClassification` and `XLMRobertaForTokenClassification` models as
`transformers` saves them (config.json and every tensor, by name), their
logits on a padded batch, and the token losses kiln's training uses on those
logits: torch's cross-entropy with ignore_index=-100 (with and without class
weights) and the focal loss -(1 - p)^gamma ln p over the same positions. kiln
must load each by its key names, reproduce the logits within 1e-4, the losses
within 1e-5, and save back exactly the keys transformers has
(crates/kiln-model/tests/bert_parity.rs). Run with `make fixtures`.
"""
import json
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/token_tiny.json"
LABELS = 5


def rounded(tensor):
    return [round(float(x), 6) for x in tensor.flatten().tolist()]


def saved(model):
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)
        config = json.loads((Path(folder) / "config.json").read_text())
        tensors = load_file(str(Path(folder) / "model.safetensors"))
    # Exact and compact: each tensor's little-endian f32 bytes, in hex.
    return config, {name: {"shape": list(t.shape), "f32_hex": t.contiguous().numpy().astype("<f4").tobytes().hex()}
                    for name, t in sorted(tensors.items())}


def perturbed(model):
    # Random init leaves biases at 0 and LayerNorms at 1/0: perturb them so the
    # test sees every tensor land in the right place.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def losses(logits, labels, weights, gamma):
    flat, target = logits.reshape(-1, LABELS), labels.reshape(-1)
    plain = torch.nn.functional.cross_entropy(flat, target, ignore_index=-100)
    weighted = torch.nn.functional.cross_entropy(flat, target, weight=weights, ignore_index=-100)
    kept = target != -100
    log_p = torch.log_softmax(flat[kept], dim=-1).gather(1, target[kept].unsqueeze(1)).squeeze(1)
    w = weights[target[kept]]
    focal = ((1 - log_p.exp()) ** gamma * -log_p * w).sum() / w.sum()
    return {"cross_entropy": float(plain), "weighted_cross_entropy": float(weighted), "weighted_focal": float(focal)}


def main():
    # BERT pads with 0; RoBERTa pads with 1 (and counts positions from 2).
    batches = {
        0: torch.tensor([[1, 5, 17, 42, 99, 2], [1, 8, 2, 0, 0, 0]]),
        1: torch.tensor([[0, 5, 17, 42, 99, 2], [0, 8, 2, 1, 1, 1]]),
    }
    labels = torch.tensor([[-100, 1, 4, -100, 2, -100], [-100, 3, -100, -100, -100, -100]])
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    gamma = 2.0
    fixture = {
        "generated_by": f"scripts/make_token_fixture.py with transformers {transformers.__version__}, "
        f"torch {torch.__version__}",
        "shape": [2, 6],
        "labels": labels.flatten().tolist(),
        "class_weights": weights.tolist(),
        "focal_gamma": gamma,
        "models": {},
    }
    torch.manual_seed(0)
    bert = transformers.BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=LABELS,
    )
    distilbert = transformers.DistilBertConfig(
        vocab_size=100, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=16, num_labels=LABELS
    )
    roberta = dict(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=18, num_labels=LABELS, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        type_vocab_size=1, layer_norm_eps=1e-5,
    )
    for name, model in [
        ("bert", perturbed(transformers.BertForTokenClassification(bert))),
        ("distilbert", perturbed(transformers.DistilBertForTokenClassification(distilbert))),
        ("roberta", perturbed(transformers.RobertaForTokenClassification(transformers.RobertaConfig(**roberta)))),
        ("xlm-roberta",
         perturbed(transformers.XLMRobertaForTokenClassification(transformers.XLMRobertaConfig(**roberta)))),
    ]:
        config, tensors = saved(model)
        pad = config.get("pad_token_id", 0)
        input_ids = batches[pad]
        attention_mask = (input_ids != pad).long()
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        fixture["models"][name] = {
            "input_ids": input_ids.flatten().tolist(),
            "attention_mask": attention_mask.flatten().tolist(),
            "config": config,
            "tensors": tensors,
            "logits": rounded(logits),
            "losses": losses(logits, labels, weights, gamma),
        }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
