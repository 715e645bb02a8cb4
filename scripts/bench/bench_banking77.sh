# Sourced by the BANKING77 benchmarks: makes data/banking77/processed from
# ../shared/data/banking77 (configs/banking77.toml's paths) when it is not there.
# Needs BIN (the binaries' folder) and the caller's name in BENCH.
if [[ ! -f data/banking77/processed/train.parquet ]]; then
  if [[ ! -f ../shared/data/banking77/train.csv ]]; then
    echo "$BENCH: BANKING77 is not in ../shared/data/banking77; see configs/banking77.toml for where to get it" >&2
    exit 1
  fi
  for stage in ingest clean tokenize; do "$BIN/$stage" --config configs/banking77.toml --quiet; done
fi
