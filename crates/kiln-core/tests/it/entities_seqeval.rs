//! Entity spans and entity-level scores against seqeval 1.2.2 on the same tags
//! (fixture: scripts/fixtures/make_entity_fixture.py), in its default (conlleval) mode
//! and in strict IOB2 mode, including the tags where the two modes differ.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_core::entities::{EntityScore, Mode, score, spans};

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    #[serde(rename = "true")]
    truth: Vec<Vec<String>>,
    pred: Vec<Vec<String>>,
    /// Per sentence, (type, first word, last word) as seqeval gives them.
    default_entities: Vec<Vec<(String, usize, usize)>>,
    strict_entities: Option<Vec<Vec<(String, usize, usize)>>>,
    accuracy: f64,
    default: BTreeMap<String, Expected>,
    strict: Option<BTreeMap<String, Expected>>,
}

#[derive(serde::Deserialize)]
struct Expected {
    precision: Option<f64>,
    recall: Option<f64>,
    f1: Option<f64>,
    support: usize,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/entities_seqeval.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture parses")
}

fn check(case: &str, what: &str, kiln: &EntityScore, seqeval: &Expected) {
    // seqeval's mean over no types is NaN (null in the fixture); kiln says 0.
    for (name, ours, theirs) in [
        ("precision", kiln.precision, seqeval.precision),
        ("recall", kiln.recall, seqeval.recall),
        ("f1", kiln.f1, seqeval.f1),
    ] {
        let theirs = theirs.unwrap_or(0.0);
        assert!((ours - theirs).abs() < 1e-12, "{case}, {what} {name}: kiln {ours}, seqeval {theirs}");
    }
    assert_eq!(kiln.support, seqeval.support, "{case}, {what} support");
}

fn check_report(case: &Case, mode: Mode, expected: &BTreeMap<String, Expected>) {
    let scores = score(&case.truth, &case.pred, mode).expect("same lengths");
    let name = format!("{} ({mode:?})", case.name);
    let types: Vec<&String> = expected.keys().filter(|k| !k.ends_with(" avg")).collect();
    assert_eq!(scores.per_type.keys().collect::<Vec<_>>(), types, "{name}: the same types");
    for (kind, kiln) in &scores.per_type {
        check(&name, kind, kiln, &expected[kind]);
    }
    check(&name, "micro", &scores.micro, &expected["micro avg"]);
    check(&name, "macro", &scores.macro_avg, &expected["macro avg"]);
    check(&name, "weighted", &scores.weighted, &expected["weighted avg"]);
    assert!((scores.token_accuracy - case.accuracy).abs() < 1e-12, "{name}: token accuracy");
}

fn check_spans(case: &Case, mode: Mode, expected: &[Vec<(String, usize, usize)>]) {
    for (sentence, (tags, want)) in case.pred.iter().zip(expected).enumerate() {
        let got: Vec<(String, usize, usize)> =
            spans(tags, mode).into_iter().map(|s| (s.kind, s.start, s.end - 1)).collect();
        assert_eq!(&got, want, "{}, sentence {sentence} {tags:?} ({mode:?})", case.name);
    }
}

#[test]
fn spans_match_seqeval_in_both_modes() {
    let fixture = fixture();
    assert!(fixture.cases.len() >= 7);
    for case in &fixture.cases {
        check_spans(case, Mode::Conlleval, &case.default_entities);
        if let Some(strict) = &case.strict_entities {
            check_spans(case, Mode::Strict, strict);
        }
    }
}

#[test]
fn scores_match_seqeval_in_both_modes() {
    let fixture = fixture();
    for case in &fixture.cases {
        check_report(case, Mode::Conlleval, &case.default);
        if let Some(strict) = &case.strict {
            check_report(case, Mode::Strict, strict);
        }
    }
    // The random case is large enough that the modes disagree, as they should.
    let random = fixture.cases.last().expect("the random case");
    let micro = |mode| score(&random.truth, &random.pred, mode).expect("scores").micro.f1;
    assert!((micro(Mode::Conlleval) - micro(Mode::Strict)).abs() > 0.01);
}
