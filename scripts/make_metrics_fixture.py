"""Writes tests/fixtures/metrics_sklearn.json: scikit-learn's classification
metrics on seeded random predictions (6 classes; one class never predicted, one
never true, one in neither), which kiln's metrics must match
(crates/kiln-model/tests/metrics_sklearn.rs). Run with `make fixtures`.
"""
import json
import random
from pathlib import Path

import sklearn
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/metrics_sklearn.json"
CLASSES = 7


def main():
    rng = random.Random(0)
    y_true, y_pred = [], []
    for _ in range(400):
        actual = rng.choice([0, 0, 0, 1, 1, 2, 3, 4])  # 5 is never true, 6 neither
        predicted = actual if rng.random() < 0.6 else rng.choice([0, 1, 2, 3, 5])  # 4 is never predicted
        y_true.append(actual)
        y_pred.append(predicted)
    per_class = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(CLASSES)), average=None, zero_division=0
    )
    averages = {
        average: precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)[:3]
        for average in ["macro", "weighted"]
    }
    fixture = {
        "generated_by": f"scripts/make_metrics_fixture.py with scikit-learn {sklearn.__version__}",
        "classes": CLASSES,
        "y_true": y_true,
        "y_pred": y_pred,
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": per_class[0].tolist(),
        "recall": per_class[1].tolist(),
        "f1": per_class[2].tolist(),
        "support": per_class[3].tolist(),
        "macro": list(averages["macro"]),
        "weighted": list(averages["weighted"]),
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
