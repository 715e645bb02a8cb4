#!/usr/bin/env bash
# `make bench-precision`: see scripts/bench/bench_precision.py. Needs
# ../shared/data/banking77 (or BANKING77=path/to/dir) and a CPU or GPU with fast bf16.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${BIN:-target/release}
BENCH=bench-precision source scripts/bench/bench_banking77.sh
python3 scripts/bench/bench_precision.py --bin "$BIN" "$@"
