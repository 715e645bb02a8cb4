//! Monitoring's statistics against numpy and scipy on the same seeded samples
//! (fixture: scripts/fixtures/make_drift_fixture.py): PSI, chi-square homogeneity, Jensen-Shannon,
//! Kolmogorov-Smirnov, Wasserstein, Wilson intervals and McNemar's exact test.

use std::path::Path;

use kiln_monitor::stats;
use serde::Deserialize;

#[derive(Deserialize)]
struct Categorical {
    reference: Vec<f64>,
    observed: Vec<f64>,
    psi: f64,
    homogeneity: f64,
    homogeneity_p: f64,
    jensen_shannon: f64,
}

#[derive(Deserialize)]
struct Continuous {
    a: Vec<f64>,
    b: Vec<f64>,
    ks: f64,
    ks_p_asymptotic: f64,
    wasserstein: f64,
}

#[derive(Deserialize)]
struct Wilson {
    successes: usize,
    n: usize,
    low: f64,
    high: f64,
}

#[derive(Deserialize)]
struct Mcnemar {
    only_first: usize,
    only_second: usize,
    p: f64,
}

#[derive(Deserialize)]
struct Fixture {
    categorical: Vec<Categorical>,
    continuous: Vec<Continuous>,
    wilson: Vec<Wilson>,
    mcnemar: Vec<Mcnemar>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/drift_scipy.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture parses")
}

/// Agreement to `tolerance`, relative to the expected value's size (absolute below 1).
fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let scale = expected.abs().max(1.0);
    assert!((actual - expected).abs() <= tolerance * scale, "{what}: kiln {actual}, scipy {expected}");
}

#[test]
fn categorical_drift_matches_scipy() {
    let cases = fixture().categorical;
    assert_eq!(cases.len(), 4);
    for (i, case) in cases.iter().enumerate() {
        close(stats::psi(&case.reference, &case.observed), case.psi, 1e-10, &format!("case {i} PSI"));
        let (statistic, p) = stats::chi_square_homogeneity(&case.reference, &case.observed);
        close(statistic, case.homogeneity, 1e-9, &format!("case {i} homogeneity"));
        // p-values reach 1e-149 here: the tiny ones agree in their logarithm.
        if case.homogeneity_p > 1e-12 {
            close(p, case.homogeneity_p, 1e-9, &format!("case {i} homogeneity p"));
        } else {
            close(p.ln(), case.homogeneity_p.ln(), 1e-9, &format!("case {i} homogeneity ln p"));
        }
        close(
            stats::jensen_shannon(&case.reference, &case.observed),
            case.jensen_shannon,
            1e-9,
            &format!("case {i} JS"),
        );
    }
}

#[test]
fn distribution_distances_match_scipy() {
    for (i, case) in fixture().continuous.iter().enumerate() {
        let d = stats::ks_statistic(&case.a, &case.b);
        close(d, case.ks, 1e-12, &format!("case {i} KS"));
        let p = stats::ks_p_value(d, case.a.len(), case.b.len());
        close(p, case.ks_p_asymptotic, 1e-9, &format!("case {i} KS p"));
        close(stats::wasserstein(&case.a, &case.b), case.wasserstein, 1e-10, &format!("case {i} Wasserstein"));
    }
}

#[test]
fn wilson_intervals_match_scipy() {
    for case in fixture().wilson {
        let interval = stats::wilson(case.successes, case.n, 0.95);
        let what = format!("{} of {}", case.successes, case.n);
        close(interval.low, case.low, 1e-9, &format!("{what} low"));
        close(interval.high, case.high, 1e-9, &format!("{what} high"));
    }
}

#[test]
fn mcnemar_exact_matches_scipy() {
    for case in fixture().mcnemar {
        let p = stats::mcnemar_exact(case.only_first, case.only_second);
        close(p, case.p, 1e-9, &format!("{} vs {}", case.only_first, case.only_second));
    }
}
