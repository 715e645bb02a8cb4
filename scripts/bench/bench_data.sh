#!/usr/bin/env bash
# `make bench-data`: see scripts/bench/bench_data.py. Builds nothing itself (make does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/python_env.sh
python scripts/bench/bench_data.py "$@"
