"""`make bench-predict`: batch-inference throughput of kiln's `predict` against
Hugging Face `pipeline("text-classification")`, in the same run, on BANKING77's
queries replicated to ROWS short texts (1M by default), same model folder, same
threads, batch 64, max length 64. kiln runs in fp32, with `--quantize int8` and
with `--precision bf16` (where the CPU has fast bf16); the reference in fp32,
with torch's `quantize_dynamic` on the same layers (the encoder's linear
layers, per-channel int8 weights) and under `torch.autocast` bf16. ONNX Runtime's
CPU execution provider has no bf16 MatMul kernel (microsoft/onnxruntime#20630),
so it runs fp32 and int8. ONNX Runtime, the
fastest CPU path in Python, runs the same model fused, in fp32 and dynamic int8
(scripts/bench/bench_predict_onnx.py; timed from session load, after the offline
export, fusion and quantisation).

Both are timed as whole processes (start-up, reading, model load, inference;
kiln also writes its Parquet output). The reference can run on a prefix of the
file (--reference-rows) when a full run would take too long: its rate per row
does not depend on the file's length. Prints rows/s, peak RSS and the ratios.

Accuracy of int8: kiln predicts BANKING77's test split (test.csv, with its
labels) in fp32 and in int8; prints both accuracies, the difference in points
and the share of predictions int8 changes.
"""

import argparse
import csv
import itertools
import json
import os
import sys
import tempfile

from bench_util import cpu_has_fast_bf16, cpu_name, run_measured


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="target/release", help="folder with kiln's binaries")
    parser.add_argument("--model", default="artifacts/banking77/model",
                        help="a classifier folder both sides can load (train's output or an export)")
    parser.add_argument("--source", default="../shared/data/banking77", help="folder with BANKING77's CSVs")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=None, help="rows for the reference (default: --rows)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--python", default=".venv-ref/bin/python")
    parser.add_argument("--precisions", default="fp32,bf16", help="'fp32' leaves bf16 out")
    parser.add_argument("--onnx-python", default=".venv-onnx/bin/python", help="'' skips ONNX Runtime")
    args = parser.parse_args()
    reference_rows = min(args.reference_rows or args.rows, args.rows)
    bf16 = "bf16" in args.precisions.split(",") and cpu_has_fast_bf16()
    if "bf16" in args.precisions.split(",") and not bf16:
        print("bench-predict: this CPU has no fast bf16 (AVX-512 BF16 or AMX): fp32 and int8 only")
    modes = ("none", "int8", "bf16") if bf16 else ("none", "int8")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        sys.exit(f"bench-predict: no model in {args.model}; train one first "
                 "(CONFIG=configs/banking77.toml make pipeline) or pass --model")

    queries = []
    for name in ("train.csv", "test.csv"):
        with open(os.path.join(args.source, name), newline="") as f:
            queries.extend(row["text"] for row in csv.DictReader(f))

    with tempfile.TemporaryDirectory() as out:
        texts = os.path.join(out, "texts.csv")
        prefix = os.path.join(out, "reference.csv")
        for path, rows in ((texts, args.rows), (prefix, reference_rows)):
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text"])
                writer.writerows([q] for q in itertools.islice(itertools.cycle(queries), rows))

        def kiln(input_file, output_file, mode):
            """`mode`: none (fp32), int8 or bf16."""
            precision, quantize = ("bf16", "none") if mode == "bf16" else ("fp32", mode)
            return [
                os.path.join(args.bin, "predict"), "--input-file", input_file, "--model-dir", args.model,
                "--output-file", output_file, "--device", "cpu", "--threads", str(args.threads),
                "--batch-size", str(args.batch), "--quantize", quantize, "--precision", precision, "--quiet",
            ]

        predictions = os.path.join(out, "predictions.parquet")
        kiln_result = timed(kiln(texts, predictions, "none"), args.rows)
        kiln_int8 = timed(kiln(texts, predictions, "int8"), args.rows)
        kiln_bf16 = timed(kiln(texts, predictions, "bf16"), args.rows) if bf16 else None

        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))

        def reference(quantize):
            return [args.python, "scripts/bench/bench_predict_reference.py", args.model, prefix, str(args.threads),
                    str(args.batch), quantize]

        reference_result = timed(reference("none"), reference_rows, env=env)
        reference_int8 = timed(reference("int8"), reference_rows, env=env)
        reference_bf16 = timed(reference("bf16"), reference_rows, env=env) if bf16 else None

        onnx = os.path.join(out, "onnx")
        if args.onnx_python:
            os.makedirs(onnx)
            run_measured([args.python, "scripts/bench/bench_predict_onnx.py", "export", args.model, onnx], env=env)

        def onnx_runtime(texts_file, quantize, predictions=None):
            command = [args.onnx_python, "scripts/bench/bench_predict_onnx.py", "run", args.model, onnx, texts_file,
                       str(args.threads), str(args.batch), quantize] + ([predictions] if predictions else [])
            _, rss, stdout = run_measured(command, env=env, capture=True)
            return dict(json.loads(stdout.strip().splitlines()[-1]), peak_rss_mib=rss)

        onnx_results = {q: onnx_runtime(prefix, q) for q in ("none", "int8")} if args.onnx_python else {}

        test = os.path.join(args.source, "test.csv")
        with open(test, newline="") as f:
            truth = [row["category"] for row in csv.DictReader(f)]
        labels = {}
        for quantize in modes:
            output = os.path.join(out, f"test-{quantize}.parquet")
            run_measured(kiln(test, output, quantize))
            _, _, stdout = run_measured([args.python, "-c", READ_LABELS, output], capture=True)
            labels[quantize] = json.loads(stdout)
            if args.onnx_python and quantize != "bf16":
                output = os.path.join(out, f"onnx-{quantize}.json")
                onnx_runtime(test, quantize, output)
                with open(output) as f:
                    labels[f"onnx-{quantize}"] = json.load(f)

    print(f"bench-predict: {args.rows:,} BANKING77 queries (reference: first {reference_rows:,}), "
          f"{args.model}, batch {args.batch}, {cpu_name()}, {args.threads} threads")
    print(f"{'':40} {'rows':>10} {'seconds':>9} {'rows/s':>8} {'peak RSS':>10}")
    rows = [("kiln predict (streaming)", kiln_result),
            ("kiln predict --quantize int8", kiln_int8),
            ("HF pipeline(text-classification)", reference_result),
            ("HF pipeline, torch quantize_dynamic int8", reference_int8)]
    if bf16:
        rows[2:2] = [("kiln predict --precision bf16", kiln_bf16)]
        rows += [("HF pipeline, torch.autocast bf16", reference_bf16)]
    rows += [(f"ONNX Runtime {r['onnxruntime']} fused " + ("int8" if q == "int8" else "fp32"), r)
             for q, r in onnx_results.items()]
    for name, result in rows:
        print(f"{name:40} {result['rows']:10,} {result['seconds']:9.1f} {result['rows_per_second']:8.1f} "
              f"{result['peak_rss_mib']:7.0f} MiB")
    rate = lambda result: result["rows_per_second"]  # noqa: E731
    ratio = rate(kiln_result) / rate(reference_result)
    print(f"kiln / HF pipeline: {ratio:.2f}x rows/s, "
          f"{kiln_result['peak_rss_mib'] / reference_result['peak_rss_mib']:.2f}x peak RSS")
    print(f"int8 / fp32: kiln {rate(kiln_int8) / rate(kiln_result):.2f}x rows/s, "
          f"reference {rate(reference_int8) / rate(reference_result):.2f}x; "
          f"kiln int8 / reference int8 {rate(kiln_int8) / rate(reference_int8):.2f}x")
    if bf16:
        print(f"bf16 / fp32: kiln {rate(kiln_bf16) / rate(kiln_result):.2f}x rows/s, "
              f"reference {rate(reference_bf16) / rate(reference_result):.2f}x; "
              f"kiln bf16 / reference bf16 {rate(kiln_bf16) / rate(reference_bf16):.2f}x; "
              f"kiln bf16 / kiln int8 {rate(kiln_bf16) / rate(kiln_int8):.2f}x")
    if onnx_results:
        print(f"ONNX Runtime int8 / fp32 {rate(onnx_results['int8']) / rate(onnx_results['none']):.2f}x; "
              f"kiln / ONNX Runtime: fp32 {rate(kiln_result) / rate(onnx_results['none']):.2f}x, "
              f"int8 {rate(kiln_int8) / rate(onnx_results['int8']):.2f}x rows/s")
    accuracy = {q: sum(p == t for p, t in zip(predicted, truth)) / len(truth) for q, predicted in labels.items()}
    changed = sum(a != b for a, b in zip(labels["none"], labels["int8"])) / len(truth)
    print(f"BANKING77 test ({len(truth):,} queries): accuracy fp32 {accuracy['none']:.2%}, int8 {accuracy['int8']:.2%} "
          f"({(accuracy['int8'] - accuracy['none']) * 100:+.2f} points); int8 changes {changed:.2%} of predictions")
    if bf16:
        bf16_changed = sum(a != b for a, b in zip(labels["none"], labels["bf16"])) / len(truth)
        print(f"bf16: accuracy {accuracy['bf16']:.2%} ({(accuracy['bf16'] - accuracy['none']) * 100:+.2f} points "
              f"against fp32, goal within 0.3); bf16 changes {bf16_changed:.2%} of predictions")
    if onnx_results:
        onnx_changed = sum(a != b for a, b in zip(labels["onnx-none"], labels["onnx-int8"])) / len(truth)
        print(f"ONNX Runtime: accuracy fp32 {accuracy['onnx-none']:.2%}, int8 {accuracy['onnx-int8']:.2%} "
              f"({(accuracy['onnx-int8'] - accuracy['onnx-none']) * 100:+.2f} points); "
              f"int8 changes {onnx_changed:.2%} of predictions")
    print(json.dumps({"kiln": kiln_result, "kiln_int8": kiln_int8, "kiln_bf16": kiln_bf16,
                      "reference": reference_result, "reference_int8": reference_int8,
                      "reference_bf16": reference_bf16, "cpu": cpu_name(), "onnxruntime": onnx_results, "ratio": ratio,
                      "accuracy": accuracy, "int8_changed": changed}))


READ_LABELS = "import json, sys, pyarrow.parquet as pq; print(json.dumps(pq.read_table(sys.argv[1])['predicted'].to_pylist()))"


def timed(command, rows, env=None):
    """Runs `command` to completion: its wall time, rows/s and peak RSS (MiB)."""
    seconds, rss, _ = run_measured(command, env=env)
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds, "peak_rss_mib": rss}


if __name__ == "__main__":
    main()
