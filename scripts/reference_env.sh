# Sourced: makes .venv-ref, the Python with the reference libraries (torch 2.9.0
# CPU, transformers, accelerate for Trainer) used by fixture scripts and
# benchmarks, once. ~4 GB; only `make fixtures` and `make bench-train` need it.
KILN_REF_PACKAGES=(torch==2.9.0 transformers==4.57.1 accelerate==1.11.0 scikit-learn==1.7.2 safetensors numpy pyarrow)
if [[ ! -x .venv-ref/bin/python ]] || ! .venv-ref/bin/python -c "import torch, transformers, accelerate, sklearn, pyarrow" 2>/dev/null; then
  echo "reference_env: creating .venv-ref with ${KILN_REF_PACKAGES[*]}" >&2
  python3 -m venv .venv-ref
  # --find-links: pip takes setup.sh's cached torch wheel when it fits this Python.
  .venv-ref/bin/python -m pip install --quiet --find-links "${KILN_DOWNLOAD_DIR:-.cache/downloads}" \
    "${KILN_REF_PACKAGES[@]}"
fi
# Model hubs are out of reach here and never needed: everything is local.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
