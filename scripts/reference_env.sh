# Sourced: makes sure .venv-ref, the Python with the reference libraries (torch
# 2.9.0 run on the CPU, transformers, accelerate for Trainer, FastAPI for the
# serving reference), is installed (scripts/setup.sh reference: once, ~5.6 GB),
# for fixture scripts, benchmarks and the checks against Python.
scripts/setup.sh reference
# Model hubs are out of reach here and never needed: everything is local.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
