#!/usr/bin/env bash
# Regenerates the committed test fixtures from the Python reference libraries:
#   tests/fixtures/tokenizer_minilm.json  (tokenizers, in .venv-bench)
#   tests/fixtures/bert_minilm.json       (transformers + torch, in .venv-ref, ~4 GB)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
(source scripts/python_env.sh && python scripts/make_tokenizer_fixture.py)

# The reference model venv: torch 2.9.0 (the wheel setup.sh already cached, if
# present) and transformers, offline at run time.
if [[ ! -x .venv-ref/bin/python ]] || ! .venv-ref/bin/python -c "import torch, transformers, tokenizers" 2>/dev/null; then
  echo "make_fixtures: creating .venv-ref with torch==2.9.0 and transformers==4.57.1" >&2
  python3 -m venv .venv-ref
  # --find-links: pip takes setup.sh's cached torch wheel when it fits this Python.
  .venv-ref/bin/python -m pip install --quiet --find-links "${KILN_DOWNLOAD_DIR:-.cache/downloads}" \
    torch==2.9.0 transformers==4.57.1 safetensors numpy
fi
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv-ref/bin/python scripts/make_model_fixture.py
