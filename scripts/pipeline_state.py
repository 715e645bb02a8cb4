#!/usr/bin/env python3
"""Turns a resolved kiln config into what scripts/pipeline.mk needs to run
each stage only when its inputs or its own config section changed.

Usage: ingest --config CONFIG --print-config | pipeline_state.py STATE_DIR
with STATE_DIR/done.toml from `ingest --config CONFIG --print-done-files`.

Writes into STATE_DIR (one folder per config, so configs never share state):
  <stage>.json  the stage's resolved section, rewritten only when it changed,
                so its mtime is the last time that stage's settings changed;
  paths.mk      make variables: each stage's "done" file (the file the stage
                writes last, so a killed run never looks finished) and its
                prerequisites (the done file of the stage that produces an input,
                or the input's own files when no stage of this config does).
"""

import json
import os
import sys
import tomllib
from pathlib import Path

STAGES = ["ingest", "clean", "tokenize", "profile", "train", "eval", "export"]


def norm(path: str) -> str:
    return os.path.normpath(path)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    state = Path(sys.argv[1])
    config = tomllib.loads(sys.stdin.read())
    state.mkdir(parents=True, exist_ok=True)

    for stage in STAGES:
        section = config[stage]
        text = json.dumps(section, sort_keys=True, indent=1) + "\n"
        target = state / f"{stage}.json"
        if not target.exists() or target.read_text() != text:
            tmp = target.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(target)

    ingest, clean, tokenize, profile = config["ingest"], config["clean"], config["tokenize"], config["profile"]
    train, evaluate, export = config["train"], config["eval"], config["export"]
    # The file each stage commits last, as the binaries name it (kiln_core::stages).
    done = tomllib.loads((state / "done.toml").read_text())
    produced = {
        norm(ingest["output_dir"]): done["ingest"],
        norm(clean["output_dir"]): done["clean"],
        norm(tokenize["output_dir"]): done["tokenize"],
        norm(profile["output_dir"]): done["profile"],
        norm(train["output_dir"]): done["train"],
        norm(train["run_dir"]): done["train"],
        norm(evaluate["output_dir"]): done["eval"],
        norm(export["output_dir"]): done["export"],
    }

    def prerequisites(*paths: str | None) -> str:
        found: list[str] = []
        for path in filter(None, paths):
            path = norm(path)
            producer = next(
                (stamp for out, stamp in produced.items() if path == out or path.startswith(out + os.sep)), None
            )
            if producer:
                found.append(producer)
            elif os.path.isdir(path):
                found.extend(sorted(str(p) for p in Path(path).iterdir() if p.is_file()))
            else:
                # A missing file stays a prerequisite: make then says which one is missing.
                found.append(path)
        if any(" " in p for p in found):
            sys.exit(f"pipeline: paths with spaces cannot be make targets: {found}")
        return " ".join(dict.fromkeys(found))

    deps = {
        "ingest": prerequisites(ingest.get("train_file"), ingest.get("validation_file"), ingest.get("test_file")),
        "clean": prerequisites(clean["input_dir"]),
        "tokenize": prerequisites(tokenize["input_dir"], tokenize["model_dir"]),
        # Settings left out of [profile] come from [tokenize] (the tokenizer, max_length).
        "profile": prerequisites(
            profile.get("input_file") or profile["input_dir"], profile.get("model_dir") or tokenize["model_dir"]
        ),
        "train": prerequisites(train["input_dir"], train["model_dir"]),
        "eval": prerequisites(evaluate["model_dir"], evaluate["input_dir"], evaluate.get("train_metrics")),
        "export": prerequisites(
            export["model_dir"],
            export.get("eval_metrics"),
            export.get("reference_predictions"),
            export.get("data_profile"),
        ),
    }
    lines = [f"{stage.upper()}_DONE := {done[stage]}\n{stage.upper()}_DEPS := {deps[stage]}\n" for stage in STAGES]
    lines.append(f"EVAL_METRICS := {evaluate['output_dir']}/metrics.json\n")
    lines.append(f"EXPORT_DIR := {export['output_dir']}\n")
    # `registry add` records the export; its index is rewritten by each change.
    lines.append(f"REGISTRY_DIR := {config['registry']['dir']}\n")
    lines.append(f"REGISTRY_INDEX := {done['registry']}\n")
    paths = state / "paths.mk"
    tmp = paths.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(paths)


if __name__ == "__main__":
    main()
