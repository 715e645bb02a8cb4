#!/usr/bin/env bash
# scripts/checks/gpu_check.sh: the CUDA path, checked in one go on a fresh GPU machine
# (about 10 minutes after the build; nothing here has run on a GPU yet, so the
# README calls the GPU path unverified until this prints its figures there).
#
#   1. installs the CUDA LibTorch (`make setup-cuda`: PyPI's CUDA torch 2.9,
#      linked as .libtorch) and builds the binaries against it. Without
#      internet, point it at a CUDA LibTorch already there:
#      KILN_CUDA_LIBTORCH=/path/to/libtorch, or KILN_CUDA_PYTHON=/path/to/python
#      whose torch is the CUDA build of 2.9 (scripts/setup.sh links it);
#   2. runs the parity tests on the GPU (KILN_TEST_DEVICE=cuda): fp32 against
#      transformers (BERT, DistilBERT, the token heads, <= 1e-4), and bf16
#      against torch.autocast's first layer;
#   3. trains BANKING77 on the GPU with kiln and with transformers' Trainer, each
#      in fp32 and in bf16 mixed precision, printing samples/s and tokens/s;
#   4. serves the trained model on the GPU against FastAPI + transformers on the
#      same GPU, at concurrency 1 and 32, kiln in fp32 and bf16.
# Needs BANKING77 (../shared/data/banking77, or data/banking77/processed made
# by `ingest`/`clean`/`tokenize -c configs/banking77.toml`). Figures go to
# stdout and to $OUT (default artifacts/gpu-check/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-artifacts/gpu-check}
STEPS=${STEPS:-300}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
make setup-cuda
cargo clean --release -p torch-sys -p kiln-torch-ops  # relink against the CUDA LibTorch
cargo build --release --workspace --bins
BIN=target/release

echo "== parity on the GPU (fp32 <= 1e-4 against transformers; bf16 against torch.autocast)"
KILN_TEST_DEVICE=cuda cargo test --release --workspace --test bert_parity

BENCH=gpu_check source scripts/bench/bench_banking77.sh
source scripts/reference_env.sh

echo "== train: kiln vs Trainer on the GPU, fp32 and bf16 ($STEPS steps, batch 32)"
python3 scripts/bench/bench_train.py --bin "$BIN" --device cuda --steps "$STEPS" --warmup-steps 20 | tee "$OUT/train.txt"

echo "== one epoch of BANKING77 on the GPU, then serve it"
"$BIN/train" --config configs/banking77.toml --device cuda --epochs 1 --output-dir "$OUT/model" \
  --run-dir "$OUT/train" --quiet
python3 scripts/bench/bench_serve.py --bin "$BIN" --model "$OUT/model" --device cuda --concurrency 1,32 \
  --duration 15 --soak 0 --oha "$(command -v oha || echo .tools/bin/oha)" | tee "$OUT/serve.txt"
echo "gpu_check: done; figures in $OUT"
