#!/usr/bin/env bash
# `make bench-shards`: see scripts/bench/bench_shards.py. Needs a trained model
# (make pipeline, or --model DIR) and .venv-ref (made on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/reference_env.sh
python3 scripts/bench/bench_shards.py --bin "${BIN:-target/release}" "$@"
