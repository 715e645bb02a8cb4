# Sourced: makes .venv-ref, the Python with the reference libraries (torch 2.9.0
# CPU, transformers, accelerate for Trainer, FastAPI for the serving reference)
# used by fixture scripts, benchmarks and the checks against Python, once. ~4 GB.
KILN_REF_PACKAGES=(torch==2.9.0 transformers==4.57.1 accelerate==1.11.0 scikit-learn==1.7.2 safetensors numpy pyarrow
  fastapi==0.163.2 uvicorn==0.54.0 uvloop==0.23.0 httptools==0.9.0 openapi-spec-validator==0.9.0)
if [[ ! -x .venv-ref/bin/python ]] ||
  ! .venv-ref/bin/python -c "import torch, transformers, accelerate, sklearn, pyarrow, fastapi, uvicorn, uvloop, openapi_spec_validator" 2>/dev/null; then
  echo "reference_env: creating .venv-ref with ${KILN_REF_PACKAGES[*]}" >&2
  python3 -m venv .venv-ref
  # --find-links: pip takes setup.sh's cached torch wheel when it fits this Python.
  KILN_REF_LINKS=()
  [[ -d "${KILN_DOWNLOAD_DIR:-.cache/downloads}" ]] && KILN_REF_LINKS=(--find-links "${KILN_DOWNLOAD_DIR:-.cache/downloads}")
  .venv-ref/bin/python -m pip install --quiet "${KILN_REF_LINKS[@]}" "${KILN_REF_PACKAGES[@]}"
fi
# Model hubs are out of reach here and never needed: everything is local.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
