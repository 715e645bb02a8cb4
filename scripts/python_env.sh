# Sourced: activates .venv-bench, the Python used for reference scripts and
# benchmarks (pandas, pyarrow, tokenizers; matplotlib for the drift demo's
# stream plot), creating it once.
KILN_PY_PACKAGES=(pandas==3.1.1 pyarrow==26.0.1 tokenizers==0.23.3 matplotlib==3.11.2)
if [[ ! -x .venv-bench/bin/python ]] || ! .venv-bench/bin/python -c "import pandas, pyarrow, tokenizers, matplotlib" 2>/dev/null; then
  echo "python_env: creating .venv-bench with ${KILN_PY_PACKAGES[*]}" >&2
  python3 -m venv .venv-bench
  .venv-bench/bin/python -m pip install --quiet "${KILN_PY_PACKAGES[@]}"
fi
source .venv-bench/bin/activate
