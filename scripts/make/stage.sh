#!/usr/bin/env bash
# Runs one kiln stage for dvc.yaml: `scripts/make/stage.sh train --config configs/default.toml`.
# Builds the binary first (a no-op for cargo when it is up to date), so `dvc repro`
# works from a fresh clone; KILN_BIN_DIR=DIR runs prebuilt binaries from DIR instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[[ $# -ge 1 ]] || { echo "usage: scripts/make/stage.sh STAGE [FLAGS...]" >&2; exit 2; }
stage="$1"
shift
if [[ -n "${KILN_BIN_DIR:-}" ]]; then
  bin="$KILN_BIN_DIR/$stage"
else
  cargo build --release --quiet --bin "$stage"
  bin="${CARGO_TARGET_DIR:-target}/release/$stage"
fi
exec "$bin" "$@"
