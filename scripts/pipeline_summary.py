#!/usr/bin/env python3
"""The last lines of `make pipeline`: the headline test metrics and where the model is.

Usage: pipeline_summary.py CONFIG EVAL_METRICS_JSON EXPORT_DIR REGISTRY_DIR
"""

import json
import os
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    config, metrics_path, export_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    registry = Path(sys.argv[4])
    metrics = json.loads(metrics_path.read_text())
    headline = ", ".join(
        f"{key} {metrics[key]:.4f}" for key in ("accuracy", "macro_f1", "loss") if isinstance(metrics.get(key), float)
    )
    entities = metrics.get("entities")
    if entities:
        # A tagger: entity F1 as seqeval gives it (micro) in both modes, then word accuracy.
        headline = (f"entity F1 {entities['conlleval']['micro']['f1']:.4f} (strict IOB2 "
                    f"{entities['strict']['micro']['f1']:.4f}), entity macro F1 {metrics['macro_f1']:.4f}, "
                    f"word accuracy {metrics['accuracy']:.4f}")
    rows = "sentences" if entities else "examples"
    print(f"pipeline done for {config}")
    print(f"  {metrics.get('split', 'test')} metrics ({metrics.get('examples', '?')} {rows}): {headline}")
    print(f"  report:  {metrics_path.parent / 'report.md'}")
    print(f"  model:   {export_dir}/")
    versions = json.loads((registry / "registry.json").read_text())["versions"]
    # The export's manifest has the weights' sha256 already.
    exported = json.loads((export_dir / "kiln_export.json").read_text())["outputs"]
    weights = next(o["sha256"] for o in exported if Path(o["path"]).name == "model.safetensors")
    this = next((v for v in versions if v["weights_sha256"] == weights), None)
    production = next((v for v in versions if v["stage"] == "production"), None)
    if this is not None:
        print(f"  version: v{this['version']} ({this['stage']}) in {registry}/")
    if production is not None:
        print(f"  serving: v{production['version']}, {registry}/production (`make serve CONFIG={config}`)")
    if this is not None and this["stage"] == "candidate":
        print(f"  to serve this one: {os.environ.get('BIN', 'target/release')}/registry --config {config} promote v{this['version']}")


if __name__ == "__main__":
    main()
