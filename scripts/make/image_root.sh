#!/usr/bin/env bash
# Stages what kiln's runtime image holds into OUT (default .cache/image-root):
#   OUT/bin  the stage binaries, stripped of symbols
#   OUT/lib  the LibTorch libraries they load, found with ldd: nothing else
#            of .libtorch (headers, the link-time stub) goes into the image
# The Containerfile's builder stage runs it after the release build; the
# `runtime-prebuilt` target copies a folder it made on the host instead
# (`make image-prebuilt`, the image test), so no compiler runs twice.
#
# Usage: scripts/make/image_root.sh [OUT] (BIN, the release folder, from the environment)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-$ROOT/.cache/image-root}"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
LIBTORCH_LIB="$(readlink -f "$ROOT/.libtorch/lib")"
# Every binary a user runs in the image: the pipeline's stages, serving and the loop.
STAGES=(ingest clean profile tokenize train eval export predict serve registry runs monitor gate retrain tune)

die() { printf 'image_root: error: %s\n' "$*" >&2; exit 1; }
[[ -d "$LIBTORCH_LIB" ]] || die "no .libtorch/lib: run make setup first"

staging="$(mktemp -d "$(dirname "$OUT")/.image-root.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/bin" "$staging/lib"
for stage in "${STAGES[@]}"; do
  [[ -x "$BIN/$stage" ]] || die "no $BIN/$stage: build the release binaries first (make build)"
  strip --strip-unneeded -o "$staging/bin/$stage" "$BIN/$stage"
done
# The libraries the binaries load, and those those load in turn, that the
# base image lacks: everything ldd resolves outside the system's lib folders.
ldd "$staging"/bin/* | awk '$2 == "=>" && $3 ~ /^\// && $3 !~ /^\/(usr\/)?lib(32|64|x32)?\// { print $3 }' | sort -u |
  while read -r library; do cp -L "$library" "$staging/lib/"; done
# A CUDA LibTorch (make setup-cuda: PyPI's torch in a venv) also dlopens
# libraries ldd cannot see (cuDNN's engines, NVRTC): take NVIDIA's wheels whole.
site_packages="$(dirname "$(dirname "$LIBTORCH_LIB")")"
if [[ -f "$LIBTORCH_LIB/libtorch_cuda.so" && -d "$site_packages/nvidia" ]]; then
  find "$site_packages/nvidia" -path '*/lib/*.so*' -exec cp -L {} "$staging/lib/" \;
fi
[[ -f "$staging/lib/libtorch_cpu.so" || -f "$staging/lib/libtorch_cuda.so" ]] ||
  die "ldd found no LibTorch library under $LIBTORCH_LIB; are the binaries linked against it?"
chmod -R a+rX "$staging"
rm -rf "$OUT"
mv "$staging" "$OUT"
trap - EXIT
du -sh "$OUT/bin" "$OUT/lib" >&2
