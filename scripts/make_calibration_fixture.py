"""Writes tests/fixtures/calibration_scipy.json: the confidence statistics and
the temperature-scaling fit of kiln's reference predictions, computed with
numpy and scipy on seeded, over-confident predictions (5 classes), which
kiln_core::profile must match (crates/kiln-core/tests/calibration_scipy.rs).
Run with `make fixtures`.

Definitions (what kiln implements):
- top: the highest probability; margin: highest minus second highest;
  entropy: -sum p ln p (natural log);
- temperature: argmin over T of the mean negative log-likelihood of
  softmax(ln p / T), the probabilities' own logits (Guo et al. 2017);
- ECE: 15 equal-width bins of the top probability, sum over bins of
  |accuracy - mean confidence| weighted by the bin's share of rows.
"""
import json
from pathlib import Path

import numpy as np
import scipy
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/calibration_scipy.json"
ROWS, CLASSES, BINS = 300, 5, 15


def confidence(p):
    ordered = np.sort(p, axis=1)
    top, second = ordered[:, -1], ordered[:, -2]
    entropy = -(p * np.log(np.clip(p, 1e-38, None))).sum(axis=1)
    return top, top - second, entropy


def nll(p, y, t):
    return float(-log_softmax(np.log(np.clip(p, 1e-38, None)) / t, axis=1)[np.arange(len(y)), y].mean())


def ece(p, y, t):
    q = softmax(np.log(np.clip(p, 1e-38, None)) / t, axis=1)
    top = q.max(axis=1)
    correct = q.argmax(axis=1) == y
    bins = np.minimum((top * BINS).astype(int), BINS - 1)
    total = 0.0
    for b in range(BINS):
        members = bins == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - top[members].mean())
    return float(total)


def main():
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, ROWS)
    logits = rng.normal(0, 1, (ROWS, CLASSES))
    # Right about 70% of the time, and far more sure of itself than that.
    right = rng.random(ROWS) < 0.7
    logits[np.arange(ROWS), np.where(right, y, (y + 1) % CLASSES)] += 2.5
    p = softmax(logits * 2.5, axis=1).astype(np.float32)
    p64 = p.astype(np.float64)
    top, margin, entropy = confidence(p64)
    fit = minimize_scalar(lambda log_t: nll(p64, y, np.exp(log_t)), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded", options={"xatol": 1e-10})
    t = float(np.exp(fit.x))
    fixture = {
        "generated_by": f"scripts/make_calibration_fixture.py with numpy {np.__version__}, scipy {scipy.__version__}",
        "probabilities": p.tolist(),
        "labels": y.tolist(),
        "mean_top": float(top.mean()),
        "mean_margin": float(margin.mean()),
        "mean_entropy": float(entropy.mean()),
        "low_confidence_share_0_6": float((top < 0.6).mean()),
        "accuracy": float((p64.argmax(axis=1) == y).mean()),
        "temperature": t,
        "nll_before": nll(p64, y, 1.0),
        "nll_after": nll(p64, y, t),
        "ece_before": ece(p64, y, 1.0),
        "ece_after": ece(p64, y, t),
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT}: T = {t:.4f}, NLL {fixture['nll_before']:.4f} -> {fixture['nll_after']:.4f}, "
          f"ECE {fixture['ece_before']:.4f} -> {fixture['ece_after']:.4f}")


if __name__ == "__main__":
    main()
