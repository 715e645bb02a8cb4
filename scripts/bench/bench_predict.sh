#!/usr/bin/env bash
# `make bench-predict`: see scripts/bench/bench_predict.py. Needs ../shared/data/banking77
# (or --source DIR), a trained BANKING77 model (CONFIG=configs/banking77.toml make
# pipeline, or --model DIR) and .venv-ref (made on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/reference_env.sh
scripts/setup.sh onnx
python3 scripts/bench/bench_predict.py --bin "${BIN:-target/release}" "$@"
