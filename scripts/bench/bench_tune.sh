#!/usr/bin/env bash
# `make bench-tune`: see scripts/bench/bench_tune.py. Installs Optuna 5 into
# .venv-optuna (scripts/setup.sh optuna) on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
scripts/setup.sh optuna
cargo build --release --quiet -p kiln-tune --example samplers
.venv-optuna/bin/python scripts/bench/bench_tune.py "$@"
