#!/usr/bin/env bash
# `make bench-train`: see scripts/bench_train.py. Needs ../shared/data/banking77
# (or your own copy: BANKING77=path/to/dir) and .venv-ref (made on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
if [[ ! -f data/banking77/processed/train.parquet ]]; then
  if [[ ! -f ../shared/data/banking77/train.csv ]]; then
    echo "bench-train: BANKING77 is not in ../shared/data/banking77; see configs/banking77.toml for where to get it" >&2
    exit 1
  fi
  for stage in ingest clean tokenize; do "$BIN/$stage" --config configs/banking77.toml --quiet; done
fi
source scripts/reference_env.sh
python3 scripts/bench_train.py --bin "$BIN" "$@"
