#!/usr/bin/env bash
# `make bench-prune`: see scripts/bench/bench_prune.py. Needs ../shared/data/banking77
# (or your own copy, placed as configs/banking77.toml says).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${BIN:-target/release}
BENCH=bench-prune source scripts/bench/bench_banking77.sh
python3 scripts/bench/bench_prune.py --bin "$BIN" "$@"
