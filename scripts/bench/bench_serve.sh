#!/usr/bin/env bash
# `make bench-serve`: see scripts/bench/bench_serve.py. Needs a trained BANKING77 model
# (CONFIG=configs/banking77.toml make pipeline, or --model DIR), .venv-ref (made
# on first use) and oha (installed into .tools/ on first use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/reference_env.sh
OHA=$(command -v oha || true)
if [[ -z "$OHA" ]]; then
  OHA=.tools/bin/oha
  if [[ ! -x "$OHA" ]]; then
    echo "bench_serve: installing the load generator oha into .tools/ (once, a few minutes)" >&2
    cargo install --quiet --locked oha@1.10.0 --root .tools
  fi
fi
python3 scripts/bench/bench_serve.py --bin "${BIN:-target/release}" --oha "$OHA" "$@"
