# kiln: `make pipeline` runs the main job, `make test` the tests. Both install
# what they need first (LibTorch, pre-trained weights, default data) with
# scripts/setup.sh, into ignored folders of this repo, once.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CONFIG ?= configs/default.toml
CARGO ?= cargo
# Tests and the pipeline share one (release) build: a first build takes minutes.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release
STAGE_FLAGS ?=

LIBTORCH := .libtorch/build-version
PRETRAINED := models/pretrained/all-MiniLM-L6-v2/model.safetensors
DEFAULT_DATA := data/external/movie-reviews/movieReviewSnippets_GroundTruth.txt
SETUP := $(LIBTORCH) $(PRETRAINED) $(DEFAULT_DATA)
# DVC, for `make repro` and the dvc.yaml test.
DVC := .venv-tools/.kiln-installed
# What the tests use beyond the set-up: a browser for the web page test, DVC,
# an MLflow server, the Python references (transformers round trip, OpenAPI
# validation), schemathesis, podman/buildah with a local base image,
# Prometheus, the manifest/workflow checkers and Apache Airflow (the DAG
# test). `make test` installs each
# (idempotent: a check when present); a missing one fails its test, never
# skips it, except podman/buildah/Prometheus where apt cannot install them
# (not root): those tests are counted as skipped.
TEST_TOOLS := browser dvc mlflow reference schemathesis containers prometheus deploy optuna airflow docs
# Tests that read ../shared/data (only kiln's own checkouts have it) are
# #[ignore]d, so a clone without it counts them as skipped; here they run.
SHARED_TESTS := $(if $(wildcard ../shared/data/banking77),--include-ignored,)
# The book's tools (scripts/setup.sh docs); CI keeps them outside the clone.
MDBOOK_DIR := $(abspath $(or $(KILN_DOCS_TOOLS),.tools/mdbook))
# Inputs per reader for the property tests of outside input (tests/it/fuzz.rs):
# ten readers, so `make fuzz` tries 110,000 and `make test` 5,000.
FUZZ_CASES ?= 11000
FUZZ_CASES_TEST := 500

.PHONY: help setup setup-cuda build test fuzz docs docs-check pipeline repro lint fmt bench-data bench-train bench-precision bench-ner bench-predict bench-shards bench-serve bench-tune bench-prune bench-weak tune image serve monitor gate retrain drift-demo drift-demo-ner fixtures

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Install LibTorch (CPU), all-MiniLM-L6-v2 and the default data (idempotent)
	scripts/setup.sh libtorch model data

setup-cuda: ## GPU workstation: CUDA torch 2.9.0 in .venv-torch-cuda, linked as .libtorch
	scripts/setup.sh cuda model data

$(LIBTORCH):
	scripts/setup.sh libtorch
$(PRETRAINED):
	scripts/setup.sh model
$(DEFAULT_DATA):
	scripts/setup.sh data

build: $(LIBTORCH) ## Build the stage binaries (release)
	$(CARGO) build --release --workspace --bins

$(DVC):
	scripts/setup.sh dvc

test: $(SETUP) ## Run every test (installs what is missing first); the last line counts passed, failed, skipped
	scripts/setup.sh $(TEST_TOOLS)
	@$(MAKE) --no-print-directory docs-check
	@mkdir -p .cache && rm -f .cache/test-figures.txt .cache/test-skips.txt
	@# The summary prints whatever cargo's exit: its failed count is what a failure needs most.
	@status=0; KILN_TEST_FIGURES=$(CURDIR)/.cache/test-figures.txt KILN_TEST_SKIPS=$(CURDIR)/.cache/test-skips.txt \
	  KILN_FUZZ_CASES=$(FUZZ_CASES_TEST) $(CARGO) test --release --workspace --no-fail-fast -- $(SHARED_TESTS) 2>&1 \
	  | tee .cache/test.log || status=$$?; \
	scripts/make/test_summary.sh .cache/test.log .cache/test-figures.txt .cache/test-skips.txt $$status

fuzz: $(SETUP) ## Property tests of every reader of outside input, FUZZ_CASES inputs each (110,000 in all); prints the counts
	@mkdir -p .cache && rm -f .cache/fuzz-figures.txt
	KILN_TEST_FIGURES=$(CURDIR)/.cache/fuzz-figures.txt KILN_FUZZ_CASES=$(FUZZ_CASES) \
	  $(CARGO) test --release -p kiln-cli --test it -- fuzz::
	@cat .cache/fuzz-figures.txt
	@awk '{ n += $$(NF-3) } END { printf "fuzz: %d inputs in all, 0 panics\n", n }' .cache/fuzz-figures.txt

docs: $(LIBTORCH) ## The book: docs/src/config-reference.md from the flags' help, then docs/ built into target/book, links checked
	scripts/setup.sh docs
	$(CARGO) build --release -p kiln-track --bin pipeline
	$(BIN)/pipeline config-reference > docs/src/config-reference.md.tmp
	mv docs/src/config-reference.md.tmp docs/src/config-reference.md
	@$(MAKE) --no-print-directory docs-check

# The book as committed (make test): mdbook-linkcheck fails the build on a
# broken link inside it; the tests check the key page is current and complete.
docs-check:
	PATH="$(MDBOOK_DIR)/bin:$$PATH" $(MDBOOK_DIR)/bin/mdbook build docs

# A config whose labelling functions run TextBlob (configs/youtube-spam.toml) gets its venv first.
TEXTBLOB := .venv-textblob/.kiln-installed
CONFIG_NEEDS := $(if $(shell grep -ls 'venv-textblob' $(CONFIG)),$(TEXTBLOB))
$(TEXTBLOB):
	scripts/setup.sh textblob

pipeline: $(SETUP) $(CONFIG_NEEDS) build ## Run the pipeline on $(CONFIG), each stage only when its inputs or settings changed
	@$(MAKE) --no-print-directory -f scripts/make/pipeline.mk CONFIG=$(CONFIG) BIN=$(BIN) STAGE_FLAGS="$(STAGE_FLAGS)"

repro: $(SETUP) $(DVC) build ## `dvc repro`: the pipeline of dvc.yaml (configs/default.toml) under DVC
	.venv-tools/bin/dvc repro

lint: $(LIBTORCH) ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench-data: $(SETUP) build ## clean/tokenize throughput on ~1M rows vs pandas / HF tokenizers
	scripts/bench/bench_data.sh

bench-weak: $(SETUP) build ## Weak supervision on YouTube spam vs snorkel 0.10: label models, end models (MiniLM, logistic regression), apply speed on 1M rows
	scripts/bench/bench_weak.sh $(ARGS)

bench-train: $(SETUP) build ## train throughput and peak RSS on BANKING77 vs HF Trainer, fp32 and bf16, shares of the GEMM limits, step profile vs plain torch
	BIN=$(BIN) scripts/bench/bench_train.sh $(ARGS)

bench-precision: $(SETUP) build ## BANKING77 5-epoch test accuracy trained and scored in fp32 vs bf16 (about 30 min on 2 cores)
	BIN=$(BIN) scripts/bench/bench_precision.sh $(ARGS)

bench-ner: $(SETUP) build ## WNUT-17 entity F1 and train throughput vs HF Trainer, same data and settings (ARGS="--epochs N")
	BIN=$(BIN) scripts/bench/bench_ner.sh $(ARGS)

bench-predict: $(SETUP) build ## predict rows/s (fp32, int8, bf16) on 1M BANKING77 queries vs HF pipeline and ONNX Runtime (ARGS="--rows N --reference-rows M")
	BIN=$(BIN) scripts/bench/bench_predict.sh $(ARGS)

bench-shards: $(SETUP) build ## Sharded batch prediction (N processes + merge) vs one process on the same input (ARGS="--shards N --rows R")
	BIN=$(BIN) scripts/bench/bench_shards.sh $(ARGS)

bench-tune: ## kiln's TPE and random samplers vs Optuna 5's on Branin and Hartmann-6 (installs .venv-optuna)
	scripts/bench/bench_tune.sh $(ARGS)

bench-prune: $(SETUP) build ## One BANKING77 study with and without ASHA pruning: wall time, epochs, best accuracy (ARGS="--trials N")
	BIN=$(BIN) scripts/bench/bench_prune.sh $(ARGS)

tune: $(SETUP) build ## Hyper-parameter search on $(CONFIG) ([tune]); resumable; outputs in its tune.output_dir (ARGS="--trials N")
	$(BIN)/tune --config $(CONFIG) $(STAGE_FLAGS) $(ARGS)

bench-serve: $(SETUP) build ## serve req/s and latency at concurrency 1-64 vs FastAPI + transformers (ARGS="--duration S")
	BIN=$(BIN) scripts/bench/bench_serve.sh $(ARGS)

image: build ## The CPU container image kiln:cpu from the binaries built here (podman or docker; `podman build -t kiln:cpu .` builds from source)
	scripts/make/image_root.sh
	$(or $(CONTAINER),$(shell command -v podman || command -v docker)) build --target runtime-prebuilt -t kiln:cpu -f Containerfile .

serve: $(SETUP) build ## Serve $(CONFIG)'s production model (its registry's, after `make pipeline`) on http://127.0.0.1:8080
	$(BIN)/serve --config $(CONFIG) $(STAGE_FLAGS)

monitor: build ## Compare the served model's prediction log with its reference: artifacts/monitor/report.md (ARGS="--fail-on alert")
	$(BIN)/monitor --config $(CONFIG) $(STAGE_FLAGS) $(ARGS)

gate: build ## Compare the newest registry candidate with production on the test split; promote it only if not worse
	$(BIN)/gate --config $(CONFIG) $(STAGE_FLAGS) $(ARGS)

retrain: $(SETUP) build ## The loop once: monitor, then retrain (and gate) when it alerts; FORCE=1 retrains anyway, as a schedule does
	@status=0; $(BIN)/monitor --config $(CONFIG) $(STAGE_FLAGS) --fail-on alert || status=$$?; \
	if [ $$status -eq 3 ] || [ -n "$(FORCE)" ]; then $(BIN)/retrain --config $(CONFIG) $(STAGE_FLAGS); \
	elif [ $$status -ne 0 ]; then exit $$status; \
	else echo "monitor: no alert, so no retraining (FORCE=1 retrains anyway)"; fi

drift-demo: $(SETUP) build ## The whole loop on BANKING77 (../shared/data, or BANKING77=DIR): skewed model, shifting stream, monitor, retrain warm and from pre-trained weights (ARGS="--init production" for one), gate, live swap
	source scripts/python_env.sh && python scripts/demo/drift_demo.py --bin $(BIN) $(if $(BANKING77),--banking77 $(BANKING77),) $(ARGS)

drift-demo-ner: $(SETUP) build ## The loop for a tagger on WNUT-17 (../shared/data, or WNUT17=DIR): rare types held back, a stream that shifts to them, monitor, retrain, gate, live swap
	source scripts/python_env.sh && python scripts/demo/drift_demo_ner.py --bin $(BIN) $(if $(WNUT17),--wnut17 $(WNUT17),) $(ARGS)

fixtures: $(PRETRAINED) ## Regenerate the fixtures checked against Python (tokenizer, BERT and DistilBERT parity, metrics, calibration, drift statistics)
	scripts/fixtures/make_fixtures.sh
