//! kiln's classification metrics against scikit-learn's on the same predictions
//! (fixture: scripts/fixtures/make_metrics_fixture.py), including a class never
//! predicted, one never true and one in neither.

use std::path::Path;

use kiln_core::scores::Confusion;

#[derive(serde::Deserialize)]
struct Fixture {
    classes: usize,
    y_true: Vec<usize>,
    y_pred: Vec<usize>,
    accuracy: f64,
    precision: Vec<f64>,
    recall: Vec<f64>,
    f1: Vec<f64>,
    support: Vec<u64>,
    macro_avg: [f64; 3],
    weighted: [f64; 3],
}

#[test]
fn metrics_match_scikit_learn() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics_sklearn.json");
    let text = std::fs::read_to_string(path).expect("fixture").replace("\"macro\"", "\"macro_avg\"");
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    let mut confusion = Confusion::new(fixture.classes);
    for (&actual, &predicted) in fixture.y_true.iter().zip(&fixture.y_pred) {
        confusion.add(actual, predicted);
    }
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-12, "{what}: kiln {a}, sklearn {b}");
    close(confusion.accuracy(), fixture.accuracy, "accuracy");
    for class in 0..fixture.classes {
        let scores = confusion.class_scores(class);
        close(scores.precision, fixture.precision[class], &format!("precision of {class}"));
        close(scores.recall, fixture.recall[class], &format!("recall of {class}"));
        close(scores.f1, fixture.f1[class], &format!("f1 of {class}"));
        assert_eq!(scores.support, fixture.support[class], "support of {class}");
    }
    for (ours, theirs, name) in
        [(confusion.macro_avg(), fixture.macro_avg, "macro"), (confusion.weighted_avg(), fixture.weighted, "weighted")]
    {
        close(ours.precision, theirs[0], &format!("{name} precision"));
        close(ours.recall, theirs[1], &format!("{name} recall"));
        close(ours.f1, theirs[2], &format!("{name} f1"));
    }
}
