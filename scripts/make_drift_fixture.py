"""Writes tests/fixtures/drift_scipy.json: the drift and interval statistics
of `monitor` (and the model comparison of the retraining gate), computed with
numpy and scipy on seeded samples, which kiln_monitor::stats must match
(crates/kiln-monitor/tests/stats_scipy.rs). Run with `make fixtures`.

Definitions (what kiln implements):
- PSI: sum (a - r) ln(a / r) over the shares of each bin, an empty bin's share
  raised to 1e-4 (not in scipy: computed here with numpy);
- chi-square test of homogeneity: scipy.stats.chi2_contingency([reference,
  observed], correction=False), bins empty on both sides left out;
- Jensen-Shannon distance: scipy.spatial.distance.jensenshannon, base 2;
- Kolmogorov-Smirnov: scipy.stats.ks_2samp's statistic, and the asymptotic
  p-value scipy.stats.kstwobign.sf(sqrt(nm / (n + m)) d);
- Wasserstein: scipy.stats.wasserstein_distance;
- Wilson: scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson");
- McNemar exact: scipy.stats.binomtest(b, b + c, 0.5).pvalue.
"""
import json
from pathlib import Path

import numpy as np
import scipy
from scipy import stats
from scipy.spatial.distance import jensenshannon

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/drift_scipy.json"
EMPTY = 1e-4


def shares(counts):
    counts = np.asarray(counts, dtype=float)
    return np.maximum(counts / counts.sum(), EMPTY)


def psi(reference, actual):
    r, a = shares(reference), shares(actual)
    return float(((a - r) * np.log(a / r)).sum())


def categorical_cases(rng):
    cases = []
    for classes, n_ref, n_new, shift in [(5, 2000, 400, 0.0), (5, 2000, 400, 0.8), (12, 5000, 150, 0.3), (3, 300, 1000, 2.0)]:
        base = rng.dirichlet(np.ones(classes) * 3)
        moved = base * np.exp(shift * rng.normal(size=classes))
        moved /= moved.sum()
        reference = rng.multinomial(n_ref, base).tolist()
        observed = rng.multinomial(n_new, moved).tolist()
        if shift == 2.0:
            observed[0] = 0  # a class that never shows up in the window
        table = np.array([reference, observed], dtype=float)
        table = table[:, table.sum(axis=0) > 0]
        homogeneity = stats.chi2_contingency(table, correction=False)
        cases.append({
            "homogeneity": float(homogeneity.statistic),
            "homogeneity_p": float(homogeneity.pvalue),
            "reference": reference,
            "observed": observed,
            "psi": psi(reference, observed),
            "jensen_shannon": float(jensenshannon(reference, observed, base=2)),
        })
    return cases


def continuous_cases(rng):
    cases = []
    for n, m, loc in [(300, 500, 0.0), (200, 101, 0.15), (50, 80, 0.5), (1000, 1000, 0.03)]:
        a = np.clip(rng.beta(5, 1.5, n) - loc, 0, 1)
        b = np.clip(rng.beta(5, 1.5, m), 0, 1)
        d = float(stats.ks_2samp(a, b).statistic)
        cases.append({
            "a": a.tolist(),
            "b": b.tolist(),
            "ks": d,
            "ks_p_asymptotic": float(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * d)),
            "wasserstein": float(stats.wasserstein_distance(a, b)),
        })
    return cases


def wilson_cases():
    cases = []
    for k, n in [(0, 10), (3, 10), (10, 10), (45, 50), (812, 1000), (1, 3)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        cases.append({"successes": k, "n": n, "low": float(ci.low), "high": float(ci.high)})
    return cases


def mcnemar_cases():
    return [
        {"only_first": b, "only_second": c, "p": float(stats.binomtest(b, b + c, 0.5).pvalue)}
        for b, c in [(0, 0), (3, 3), (2, 9), (15, 30), (40, 12), (0, 7), (120, 150)]
        if b + c > 0
    ]


def main():
    rng = np.random.default_rng(17)
    fixture = {
        "generator": f"scripts/make_drift_fixture.py, numpy {np.__version__}, scipy {scipy.__version__}",
        "categorical": categorical_cases(rng),
        "continuous": continuous_cases(rng),
        "wilson": wilson_cases(),
        "mcnemar": mcnemar_cases(),
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
