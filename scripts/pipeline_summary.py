#!/usr/bin/env python3
"""The last lines of `make pipeline`: the headline test metrics and where the model is.

Usage: pipeline_summary.py CONFIG EVAL_METRICS_JSON EXPORT_DIR
"""

import json
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    config, metrics_path, export_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    metrics = json.loads(metrics_path.read_text())
    headline = ", ".join(
        f"{key} {metrics[key]:.4f}" for key in ("accuracy", "macro_f1", "loss") if isinstance(metrics.get(key), float)
    )
    print(f"pipeline done for {config}")
    print(f"  {metrics.get('split', 'test')} metrics ({metrics.get('examples', '?')} examples): {headline}")
    print(f"  report:  {metrics_path.parent / 'report.md'}")
    print(f"  model:   {export_dir}/ (serve it with `make serve CONFIG={config}`)")


if __name__ == "__main__":
    main()
