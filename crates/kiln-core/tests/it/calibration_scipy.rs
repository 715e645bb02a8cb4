//! The reference-prediction statistics against numpy and scipy on the same
//! over-confident predictions (fixture: scripts/fixtures/make_calibration_fixture.py):
//! confidence, margin, entropy, the temperature-scaling fit and the
//! calibration error before and after it.

use std::path::Path;

use kiln_core::calibration::{PredictionProfile, expected_calibration_error, fit_temperature, negative_log_likelihood};

#[derive(serde::Deserialize)]
struct Fixture {
    probabilities: Vec<Vec<f32>>,
    labels: Vec<usize>,
    mean_top: f64,
    mean_margin: f64,
    mean_entropy: f64,
    low_confidence_share_0_6: f64,
    accuracy: f64,
    temperature: f64,
    nll_before: f64,
    nll_after: f64,
    ece_before: f64,
    ece_after: f64,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/calibration_scipy.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture parses")
}

fn close(kiln: f64, reference: f64, tolerance: f64, what: &str) {
    assert!((kiln - reference).abs() < tolerance, "{what}: kiln {kiln}, numpy/scipy {reference}");
}

#[test]
fn confidence_and_calibration_match_numpy_and_scipy() {
    let f = fixture();
    let names: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    let profile = PredictionProfile::of("validation", &names, &f.probabilities, &f.labels, 0.6);
    close(profile.accuracy, f.accuracy, 1e-12, "accuracy");
    close(profile.confidence.mean_top, f.mean_top, 1e-12, "mean top probability");
    close(profile.confidence.mean_margin, f.mean_margin, 1e-12, "mean margin");
    close(profile.confidence.mean_entropy, f.mean_entropy, 1e-9, "mean entropy");
    close(profile.confidence.low_confidence_share, f.low_confidence_share_0_6, 1e-12, "share below 0.6");
    close(profile.nll_before, f.nll_before, 1e-9, "NLL at T = 1");
    close(profile.ece_before, f.ece_before, 1e-9, "ECE at T = 1");
    // scipy's bounded Brent and kiln's golden section stop at slightly different points.
    close(profile.temperature, f.temperature, 1e-5, "temperature");
    close(profile.nll_after, f.nll_after, 1e-9, "NLL at the fitted T");
    close(profile.ece_after, f.ece_after, 1e-6, "ECE at the fitted T");
    assert!(profile.temperature > 1.0 && profile.nll_after < profile.nll_before, "over-confidence is cooled");
    assert_eq!(profile.predicted.values().sum::<usize>(), f.labels.len());
    assert_eq!(profile.confidence.top_histogram.iter().sum::<u64>(), f.labels.len() as u64);
    assert_eq!(profile.confidence.top_percentiles.len(), 101);
    assert!(profile.confidence.top_percentiles.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_calibrated_model_keeps_temperature_one() {
    // Labels drawn from the model's own probabilities: already calibrated.
    let rows: Vec<Vec<f32>> = (0..400).map(|i| if i % 4 == 0 { vec![0.5, 0.5] } else { vec![0.75, 0.25] }).collect();
    let labels: Vec<usize> = (0..400)
        .map(|i| match i % 4 {
            0 => (i / 4) % 2,
            _ => usize::from((i / 4) % 4 == 0),
        })
        .collect();
    let t = fit_temperature(&rows, &labels);
    assert!((t - 1.0).abs() < 0.05, "{t}");
    assert!(negative_log_likelihood(&rows, &labels, t) <= negative_log_likelihood(&rows, &labels, 1.0) + 1e-12);
    assert!(expected_calibration_error(&rows, &labels, 1.0) < 0.01);
}
