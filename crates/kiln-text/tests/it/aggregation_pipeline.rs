//! kiln's entity aggregation against transformers' token-classification
//! pipeline, each strategy, on the same logits (fixture:
//! scripts/fixtures/make_aggregation_fixture.py): tags, words and character offsets
//! exactly, scores within 1e-5; and long texts read in overlapping windows as
//! the pipeline reads them with `stride`.

use std::path::Path;

use kiln_core::LabelMap;
use kiln_text::aggregate::{Aggregation, Entity, aggregate, aggregate_windows};

#[derive(serde::Deserialize)]
struct Fixture {
    labels: Vec<String>,
    cases: Vec<Case>,
    max_length: usize,
    stride: usize,
    windowed: Vec<Windowed>,
}

/// A long text, the windows the pipeline read it in, and its entities.
#[derive(serde::Deserialize)]
struct Windowed {
    text: String,
    tokens: usize,
    windows: Vec<Window>,
    strategies: std::collections::BTreeMap<String, Vec<Entity>>,
}

#[derive(serde::Deserialize)]
struct Window {
    input_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    input_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    strategies: std::collections::BTreeMap<String, Vec<Entity>>,
}

/// numpy's softmax as the pipeline computes it, in f32.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn fixture() -> (Fixture, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/aggregation_pipeline.json")).expect("fixture"),
    )
    .expect("fixture parses");
    let model = root.join("models/pretrained/all-MiniLM-L6-v2");
    assert!(model.join("tokenizer.json").exists(), "no MiniLM at {}: run `make setup`", model.display());
    (fixture, model)
}

fn assert_same(got: &[Entity], want: &[Entity], what: &str) -> usize {
    assert_eq!(got.len(), want.len(), "{what}: {got:#?}\nvs {want:#?}");
    for (ours, theirs) in got.iter().zip(want) {
        let what = format!("{what}: {ours:?} vs {theirs:?}");
        assert_eq!(
            (&ours.entity, &ours.entity_group, &ours.word, ours.start, ours.end, ours.index),
            (&theirs.entity, &theirs.entity_group, &theirs.word, theirs.start, theirs.end, theirs.index),
            "{what}"
        );
        assert!((ours.score - theirs.score).abs() <= 1e-5, "{what}");
    }
    got.len()
}

#[test]
fn long_texts_read_in_windows_match_the_pipeline_with_stride() {
    let (fixture, model) = fixture();
    let mut tokenizer = kiln_text::load_tokenizer(&model, fixture.max_length).expect("tokenizer");
    kiln_text::read_in_windows(&mut tokenizer, fixture.max_length, fixture.stride).expect("windows");
    let labels = LabelMap::from_ordered_names(fixture.labels.clone());
    let mut compared = 0;
    for case in &fixture.windowed {
        assert!(case.tokens >= 5 * fixture.max_length, "{} tokens", case.tokens);
        let encoding = tokenizer.encode_char_offsets(case.text.as_str(), true).expect("encodes");
        let windows: Vec<&tokenizers::Encoding> =
            std::iter::once(&encoding).chain(encoding.get_overflowing()).collect();
        let ids: Vec<&[u32]> = windows.iter().map(|w| w.get_ids()).collect();
        let want_ids: Vec<&[u32]> = case.windows.iter().map(|w| w.input_ids.as_slice()).collect();
        assert_eq!(ids, want_ids, "the pipeline's windows, sub-word for sub-word");
        let probabilities: Vec<Vec<Vec<f32>>> =
            case.windows.iter().map(|w| w.logits.iter().map(|l| softmax(l)).collect()).collect();
        for (name, want) in &case.strategies {
            let strategy = <Aggregation as clap::ValueEnum>::from_str(name, true).expect("a strategy");
            let got = aggregate_windows(&case.text, &windows, &probabilities, &labels, &tokenizer, strategy);
            compared += assert_same(&got, want, &format!("{name}, {} windows", windows.len()));
            // Read in one piece, the text's end is lost; in windows, entities come from all of it.
            let last = want.iter().map(|e| e.end).max().unwrap_or(0);
            assert!(
                last > windows[0].get_offsets().iter().map(|o| o.1).max().unwrap_or(0),
                "{name}: entities past the first window"
            );
        }
    }
    assert!(compared > 40, "{compared} entities compared");
    eprintln!("{compared} entities of long texts equal to the pipeline's with stride");
}

#[test]
fn every_strategy_matches_the_transformers_pipeline() {
    let (fixture, model) = fixture();
    let tokenizer = kiln_text::load_tokenizer(&model, 512).expect("tokenizer");
    let labels = LabelMap::from_ordered_names(fixture.labels.clone());
    let mut compared = 0;
    for case in &fixture.cases {
        let encoding = tokenizer.encode_char_offsets(case.text.as_str(), true).expect("encodes");
        assert_eq!(encoding.get_ids(), case.input_ids, "{}: the same sub-words", case.text);
        let probabilities: Vec<Vec<f32>> = case.logits.iter().map(|l| softmax(l)).collect();
        for (name, want) in &case.strategies {
            let strategy = <Aggregation as clap::ValueEnum>::from_str(name, true).expect("a strategy");
            let got = aggregate(&case.text, &encoding, &probabilities, &labels, &tokenizer, strategy);
            compared += assert_same(&got, want, &format!("{} ({name})", case.text));
        }
    }
    assert!(compared > 100, "{compared} entities compared");
    eprintln!("{compared} entities equal to the pipeline's");
}
