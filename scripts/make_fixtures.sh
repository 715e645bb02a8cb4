#!/usr/bin/env bash
# Regenerates the committed test fixtures from the Python reference libraries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/python_env.sh
python scripts/make_tokenizer_fixture.py
