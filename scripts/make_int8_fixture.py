"""tests/fixtures/int8_linear_torch.json: torch.ao's dynamic int8 Linear (per-
channel qint8 weights, the fbgemm engine) on a fixed weight, bias and input,
for kiln-torch-ops's parity test. kiln's int8 layer runs the same LibTorch ops, so
the outputs agree to float rounding, not just to quantization error.

Also tests/fixtures/bert_minilm_int8.json: all-MiniLM-L6-v2 with its encoder's
linear layers (not the pooler) quantized the same way, on bert_minilm.json's
padded batch: the last hidden state kiln's `quantize = "int8"` must reproduce."""

import hashlib
import json
import os
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent

torch.manual_seed(11)
OUT_FEATURES, IN_FEATURES = 24, 40
weight = torch.randn(OUT_FEATURES, IN_FEATURES) * 0.08
bias = torch.randn(OUT_FEATURES) * 0.1
x = torch.randn(2, 3, IN_FEATURES)

torch.backends.quantized.engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "x86"
layer = torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, OUT_FEATURES))
layer[0].weight.data, layer[0].bias.data = weight.clone(), bias.clone()
qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
int8 = torch.ao.quantization.quantize_dynamic(layer, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
with torch.inference_mode():
    expected = int8(x)
    reference = layer(x)

fixture = {
    "torch": torch.__version__,
    "engine": torch.backends.quantized.engine,
    "weight": weight.flatten().tolist(),
    "bias": bias.tolist(),
    "input": x.flatten().tolist(),
    "input_shape": list(x.shape),
    "int8_output": expected.flatten().tolist(),
    "float_output": reference.flatten().tolist(),
}
path = ROOT / "tests/fixtures/int8_linear_torch.json"
path.write_text(json.dumps(fixture))
error = (expected - reference).norm() / reference.norm()
print(f"wrote {path.relative_to(ROOT)}: int8 vs float relative error {error:.4f}")

model_dir = ROOT / "models/pretrained/all-MiniLM-L6-v2"
batch = json.loads((ROOT / "tests/fixtures/bert_minilm.json").read_text())
shape = batch["shape"]
inputs = {key: torch.tensor(batch[key]).reshape(shape) for key in ("input_ids", "token_type_ids", "attention_mask")}
model = transformers.BertModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
with torch.inference_mode():
    fp32 = model(**inputs).last_hidden_state
model.encoder = torch.ao.quantization.quantize_dynamic(model.encoder, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
with torch.inference_mode():
    int8 = model(**inputs).last_hidden_state
minilm = {
    "generated_by": f"scripts/make_int8_fixture.py with transformers {transformers.__version__}, torch {torch.__version__}",
    "weights_sha256": hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest(),
    "shape": shape,
    "last_hidden_state_int8": [round(float(x), 6) for x in int8.flatten().tolist()],
}
path = ROOT / "tests/fixtures/bert_minilm_int8.json"
path.write_text(json.dumps(minilm) + "\n")
print(f"wrote {path.relative_to(ROOT)}: int8 vs fp32 max abs difference {(int8 - fp32).abs().max():.4f}")
