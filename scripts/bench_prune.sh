#!/usr/bin/env bash
# `make bench-prune`: see scripts/bench_prune.py. Needs ../shared/data/banking77
# (or your own copy, placed as configs/banking77.toml says).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
if [[ ! -f data/banking77/processed/train.parquet ]]; then
  if [[ ! -f ../shared/data/banking77/train.csv ]]; then
    echo "bench-prune: BANKING77 is not in ../shared/data/banking77; see configs/banking77.toml for where to get it" >&2
    exit 1
  fi
  for stage in ingest clean tokenize; do "$BIN/$stage" --config configs/banking77.toml --quiet; done
fi
python3 scripts/bench_prune.py --bin "$BIN" "$@"
