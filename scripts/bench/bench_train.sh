#!/usr/bin/env bash
# `make bench-train`: see scripts/bench/bench_train.py. Needs ../shared/data/banking77
# (or your own copy: BANKING77=path/to/dir) and .venv-ref (made on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${BIN:-target/release}
BENCH=bench-train source scripts/bench/bench_banking77.sh
source scripts/reference_env.sh
# The step profile's kiln side (crates/kiln-model/examples/train_step.rs).
cargo build --release --workspace --example train_step --quiet
python3 scripts/bench/bench_train.py --bin "$BIN" "$@"
