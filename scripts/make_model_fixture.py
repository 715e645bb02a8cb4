"""Writes tests/fixtures/bert_minilm.json: Hugging Face `transformers` outputs of
all-MiniLM-L6-v2 on a padded batch, which kiln's BERT must reproduce within
1e-4 (crates/kiln-model/tests/bert_parity.rs).

The batch has real padding inside it (texts of different lengths), token type
ids, the encoder's last hidden state and pooled output, and the logits of a
3-label classification head whose (seeded, random) weights the fixture stores.
Run with `make fixtures`.
"""
import hashlib
import json
from pathlib import Path

import tokenizers
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models/pretrained/all-MiniLM-L6-v2"
OUT = ROOT / "tests/fixtures/bert_minilm.json"
TEXTS = [
    "I am still waiting on my card?",
    "Great film!",
    "The Rock is destined to be the 21st Century's new Conan.",
]


def rounded(tensor):
    return [round(float(x), 6) for x in tensor.flatten().tolist()]


def main():
    torch.manual_seed(0)
    tokenizer = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(TEXTS)
    input_ids = torch.tensor([e.ids for e in encodings])
    token_type_ids = torch.tensor([e.type_ids for e in encodings])
    attention_mask = torch.tensor([e.attention_mask for e in encodings])

    model = transformers.BertForSequenceClassification.from_pretrained(str(MODEL), num_labels=3).eval()
    with torch.no_grad():
        base = model.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        logits = model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits
    fixture = {
        "generated_by": f"scripts/make_model_fixture.py with transformers {transformers.__version__}, torch {torch.__version__}",
        "weights_sha256": hashlib.sha256((MODEL / "model.safetensors").read_bytes()).hexdigest(),
        "texts": TEXTS,
        "shape": list(input_ids.shape),
        "hidden_size": model.config.hidden_size,
        "input_ids": input_ids.flatten().tolist(),
        "token_type_ids": token_type_ids.flatten().tolist(),
        "attention_mask": attention_mask.flatten().tolist(),
        "last_hidden_state": rounded(base.last_hidden_state),
        "pooled": rounded(base.pooler_output),
        "classifier_weight": rounded(model.classifier.weight),
        "classifier_bias": rounded(model.classifier.bias),
        "logits": rounded(logits),
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
