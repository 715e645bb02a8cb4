#!/usr/bin/env bash
# `make bench-weak`: see scripts/bench/bench_weak.py. Builds nothing itself (make
# does); installs snorkel (the reference, over the reference venv) and TextBlob
# (the config's Python functions) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
scripts/setup.sh weak textblob
ref="${KILN_REF_VENV:-.venv-ref}"
PYTHONPATH=.venv-weak OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" "$ref/bin/python" scripts/bench/bench_weak.py "$@"
