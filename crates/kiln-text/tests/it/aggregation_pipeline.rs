//! kiln's entity aggregation against transformers' token-classification
//! pipeline, each strategy, on the same logits (fixture:
//! scripts/fixtures/make_aggregation_fixture.py): tags, words and character offsets
//! exactly, scores within 1e-5.

use std::path::Path;

use kiln_core::LabelMap;
use kiln_text::aggregate::{Aggregation, Entity, aggregate};

#[derive(serde::Deserialize)]
struct Fixture {
    labels: Vec<String>,
    cases: Vec<Case>,
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

#[test]
fn every_strategy_matches_the_transformers_pipeline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/aggregation_pipeline.json")).expect("fixture"),
    )
    .expect("fixture parses");
    let model = root.join("models/pretrained/all-MiniLM-L6-v2");
    assert!(model.join("tokenizer.json").exists(), "no MiniLM at {}: run `make setup`", model.display());
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
            assert_eq!(got.len(), want.len(), "{} ({name}): {got:#?}\nvs {want:#?}", case.text);
            for (ours, theirs) in got.iter().zip(want) {
                let what = format!("{} ({name}): {ours:?} vs {theirs:?}", case.text);
                assert_eq!(
                    (&ours.entity, &ours.entity_group, &ours.word, ours.start, ours.end, ours.index),
                    (&theirs.entity, &theirs.entity_group, &theirs.word, theirs.start, theirs.end, theirs.index),
                    "{what}"
                );
                assert!((ours.score - theirs.score).abs() <= 1e-5, "{what}");
                compared += 1;
            }
        }
    }
    assert!(compared > 100, "{compared} entities compared");
    eprintln!("{compared} entities equal to the pipeline's");
}
