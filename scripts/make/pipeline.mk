# The stages of `make pipeline` as file targets, run by the top Makefile once the
# binaries are built: `make -f scripts/make/pipeline.mk CONFIG=... BIN=...`.
#
# Each stage's target is the file it writes last (its manifest, or train's
# summary), so a stage killed half way never looks done. A stage reruns when its
# binary was rebuilt, its own config section changed (.cache/pipeline/<config>/
# <stage>.json is rewritten only then) or an input changed. Paths and done files
# come from the binaries themselves (`pipeline make-state`, from the settings
# as every stage resolves them), so make and the stages never disagree on them.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := pipeline

CONFIG ?= configs/default.toml
BIN ?= target/release
STAGE_FLAGS ?=
STATE := .cache/pipeline/$(subst /,_,$(basename $(CONFIG)))

RESOLVED := $(shell $(BIN)/pipeline --config $(CONFIG) make-state $(STATE) && echo ok)
ifneq ($(RESOLVED),ok)
$(error cannot read $(CONFIG); the message above says why)
endif
include $(STATE)/paths.mk

.PHONY: pipeline
pipeline: $(PROFILE_DONE) $(REGISTRY_INDEX)
	@$(BIN)/pipeline --config $(CONFIG) --quiet summary

$(INGEST_DONE): $(STATE)/ingest.json $(BIN)/ingest $(INGEST_DEPS)
	$(BIN)/ingest --config $(CONFIG) $(STAGE_FLAGS)

$(CLEAN_DONE): $(STATE)/clean.json $(BIN)/clean $(CLEAN_DEPS)
	$(BIN)/clean --config $(CONFIG) $(STAGE_FLAGS)

# Weak supervision, for a config with [[label.functions]] (its tokenize reads
# label's output); the others have no LABEL_DONE.
ifneq ($(LABEL_DONE),)
$(LABEL_DONE): $(STATE)/label.json $(BIN)/label $(LABEL_DEPS)
	$(BIN)/label --config $(CONFIG) $(STAGE_FLAGS)
endif

$(TOKENIZE_DONE): $(STATE)/tokenize.json $(BIN)/tokenize $(TOKENIZE_DEPS)
	$(BIN)/tokenize --config $(CONFIG) $(STAGE_FLAGS)

# The profile takes its tokenizer and max_length from [tokenize] unless it sets
# its own; it runs after tokenize (order only: it reads the cleaned text).
$(PROFILE_DONE): $(STATE)/profile.json $(STATE)/tokenize.json $(BIN)/profile $(PROFILE_DEPS) | $(TOKENIZE_DONE)
	$(BIN)/profile --config $(CONFIG) $(STAGE_FLAGS)

$(TRAIN_DONE): $(STATE)/train.json $(BIN)/train $(TRAIN_DEPS)
	$(BIN)/train --config $(CONFIG) $(STAGE_FLAGS)

$(EVAL_DONE): $(STATE)/eval.json $(BIN)/eval $(EVAL_DEPS)
	$(BIN)/eval --config $(CONFIG) $(STAGE_FLAGS)

# --force: the export folder is this config's, replaced by each new model.
$(EXPORT_DONE): $(STATE)/export.json $(BIN)/export $(EXPORT_DEPS)
	$(BIN)/export --config $(CONFIG) --force $(STAGE_FLAGS)

# Each new export becomes the registry's next version (the first one goes to
# production). The target is the registry's index, touched when the export was
# registered already (same weights), so make sees this step as done.
$(REGISTRY_INDEX): $(EXPORT_DONE)
	$(BIN)/registry --config $(CONFIG) $(STAGE_FLAGS) add
	@touch $@
