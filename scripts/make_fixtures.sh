#!/usr/bin/env bash
# Regenerates the committed test fixtures from the Python reference libraries:
#   tests/fixtures/tokenizer_minilm.json  (tokenizers, in .venv-bench)
#   tests/fixtures/bert_minilm.json       (transformers + torch, in .venv-ref, ~4 GB)
#   tests/fixtures/distilbert_tiny.json   (the same)
#   tests/fixtures/metrics_sklearn.json   (scikit-learn, the same venv)
#   tests/fixtures/calibration_scipy.json (numpy and scipy, the same venv)
#   tests/fixtures/drift_scipy.json       (the same)
#   tests/fixtures/entities_seqeval.json  (seqeval 1.2.2, the same venv)
#   tests/fixtures/token_tiny.json        (transformers + torch, the same venv)
#   tests/fixtures/aggregation_pipeline.json (transformers pipeline, the same venv)
#   tests/fixtures/int8_linear_torch.json (torch.ao dynamic int8 Linear, the same venv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
(source scripts/python_env.sh && python scripts/make_tokenizer_fixture.py)

source scripts/reference_env.sh
.venv-ref/bin/python scripts/make_model_fixture.py
.venv-ref/bin/python scripts/make_distilbert_fixture.py
.venv-ref/bin/python scripts/make_metrics_fixture.py
.venv-ref/bin/python scripts/make_calibration_fixture.py
.venv-ref/bin/python scripts/make_drift_fixture.py
.venv-ref/bin/python scripts/make_entity_fixture.py
.venv-ref/bin/python scripts/make_token_fixture.py
.venv-ref/bin/python scripts/make_aggregation_fixture.py
.venv-ref/bin/python scripts/make_int8_fixture.py
