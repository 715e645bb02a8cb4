#!/usr/bin/env bash
# `make bench-ner`: see scripts/bench/bench_ner.py. Needs ../shared/data/wnut17 (or
# your own copy, as configs/wnut17.toml says) and .venv-ref (made on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${BIN:-target/release}
if [[ ! -f data/wnut17/processed/train.parquet ]]; then
  if [[ ! -f ../shared/data/wnut17/train.conll ]]; then
    echo "bench-ner: WNUT-17 is not in ../shared/data/wnut17; see configs/wnut17.toml for where to get it" >&2
    exit 1
  fi
  for stage in ingest clean tokenize; do "$BIN/$stage" --config configs/wnut17.toml --quiet; done
fi
source scripts/reference_env.sh
python3 scripts/bench/bench_ner.py --bin "$BIN" "$@"
