"""ONNX Runtime, the fastest CPU path Python users reach for, as a second
reference for `make bench-predict`: what `optimum`'s ORTQuantizer does, in
ONNX Runtime's own API (optimum itself pins older transformers).

  export   (in .venv-ref, which has torch)  MODEL_DIR OUT_DIR
      the classifier as ONNX (torch.onnx.export, dynamic batch and length).
  run      (in .venv-onnx)  MODEL_DIR OUT_DIR TEXTS.csv [threads] [batch] [none|int8] [PREDICTIONS.json]
      fuses the BERT graph (onnxruntime.transformers.optimizer: attention,
      GELU, LayerNorm), quantises its MatMuls to dynamic int8 when asked
      (per-channel weights, reduce_range for AVX2, as torch.ao and kiln do),
      then predicts TEXTS.csv in batches with the folder's tokenizer (max
      length 64). Prints rows/s as JSON; writes the predicted labels when asked.
"""

import csv
import json
import os
import sys
import time


def export(model_dir, out_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "length"} for name in names}
    torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), os.path.join(out_dir, "model.onnx"),
                      input_names=names, output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)


def prepare(model_dir, out_dir, quantize):
    """The fused (and, for int8, quantised) graph's path."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    fused = os.path.join(out_dir, "model.fused.onnx")
    if not os.path.exists(fused):
        # opt_level 0: the Python fusions only; the session applies ONNX Runtime's
        # own graph optimisations (ORT_ENABLE_ALL) when it loads the model.
        optimize_model(os.path.join(out_dir, "model.onnx"), model_type="bert", num_heads=config["num_attention_heads"],
                       hidden_size=config["hidden_size"], opt_level=0).save_model_to_file(fused)
    if quantize == "none":
        return fused
    quantized = os.path.join(out_dir, "model.int8.onnx")
    # The fused graph's contrib ops defeat ONNX shape inference: say the weights are float.
    quantize_dynamic(fused, quantized, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return quantized


def run(model_dir, out_dir, texts_path, threads, batch, quantize, predictions_path):
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    path = prepare(model_dir, out_dir, quantize)
    with open(texts_path, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    with open(os.path.join(model_dir, "config.json")) as f:
        id2label = json.load(f)["id2label"]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(64)
    tokenizer.enable_padding()
    wanted = {i.name for i in session.get_inputs()}
    predicted = []
    for start in range(0, len(texts), batch):
        encodings = tokenizer.encode_batch(texts[start:start + batch])
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (logits,) = session.run(None, {k: v for k, v in feeds.items() if k in wanted})
        predicted.extend(id2label[str(i)] for i in logits.argmax(axis=1))
    seconds = time.perf_counter() - started
    if predictions_path:
        with open(predictions_path, "w") as f:
            json.dump(predicted, f)
    print(json.dumps({"rows": len(texts), "seconds": seconds, "rows_per_second": len(texts) / seconds,
                      "onnxruntime": onnxruntime.__version__}))


def main():
    command, model_dir, out_dir = sys.argv[1:4]
    if command == "export":
        export(model_dir, out_dir)
    else:
        rest = sys.argv[4:]
        run(model_dir, out_dir, rest[0], int(rest[1]) if len(rest) > 1 else 2, int(rest[2]) if len(rest) > 2 else 64,
            rest[3] if len(rest) > 3 else "none", rest[4] if len(rest) > 4 else None)


if __name__ == "__main__":
    main()
