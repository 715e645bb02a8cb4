//! kiln-label against snorkel 0.10 on one label matrix
//! (tests/fixtures/weak_snorkel.json, from scripts/fixtures/make_weak_fixture.py):
//! the analysis and the majority vote agree exactly; kiln's matrix completion,
//! fitted with snorkel's settings and seed, learns what snorkel's `LabelModel`
//! learns (within the tolerances below); Dawid-Skene labels the rows at least
//! as accurately, and the accuracies it learns without gold are at least as
//! close to the functions' real ones.

use kiln_core::scores::argmax;
use kiln_label::{DawidSkene, EmSettings, LabelMatrix, MatrixCompletion, MatrixCompletionSettings, analyse, majority};
use serde_json::Value;

fn fixture() -> (Value, LabelMatrix, Vec<usize>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/weak_snorkel.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let number = |key: &str| fixture[key].as_u64().expect("a count") as usize;
    let votes: Vec<i32> =
        fixture["votes"].as_array().expect("votes").iter().map(|v| v.as_i64().expect("vote") as i32).collect();
    let gold: Vec<usize> =
        fixture["gold"].as_array().expect("gold").iter().map(|v| v.as_u64().expect("label") as usize).collect();
    let matrix = LabelMatrix::new(number("functions"), number("classes"), votes).expect("a valid matrix");
    (fixture, matrix, gold)
}

fn accuracy_on_covered(probabilities: &[Vec<f64>], gold: &[usize], matrix: &LabelMatrix) -> f64 {
    let covered: Vec<usize> = (0..gold.len()).filter(|&row| matrix.covered(row)).collect();
    let right = covered.iter().filter(|&&row| argmax(&probabilities[row]) == gold[row]).count();
    right as f64 / covered.len() as f64
}

#[test]
fn the_analysis_is_snorkels_lf_summary() {
    let (fixture, matrix, gold) = fixture();
    let ours = analyse(&matrix, Some(&gold));
    let theirs = fixture["analysis"].as_array().expect("analysis");
    assert_eq!(ours.len(), theirs.len());
    for (function, (ours, theirs)) in ours.iter().zip(theirs).enumerate() {
        let close = |a: f64, key: &str| (a - theirs[key].as_f64().expect(key)).abs() < 1e-12;
        assert!(
            close(ours.coverage, "coverage") && close(ours.overlaps, "overlaps"),
            "function {function}: {ours:?} vs {theirs}"
        );
        assert!(close(ours.conflicts, "conflicts"), "function {function}: {ours:?} vs {theirs}");
        let polarity: Vec<usize> = theirs["polarity"]
            .as_array()
            .expect("polarity")
            .iter()
            .map(|v| v.as_u64().expect("label") as usize)
            .collect();
        assert_eq!(ours.polarity, polarity, "function {function}");
        assert_eq!(ours.correct, theirs["correct"].as_u64().map(|c| c as usize), "function {function}");
        assert_eq!(ours.incorrect, theirs["incorrect"].as_u64().map(|c| c as usize), "function {function}");
        assert!(close(ours.empirical_accuracy.expect("gold"), "empirical_accuracy"), "function {function}");
    }
}

#[test]
fn the_majority_vote_is_snorkels_majority_label_voter() {
    let (fixture, matrix, _) = fixture();
    let theirs = fixture["majority_proba"].as_array().expect("probabilities");
    for (row, (ours, theirs)) in majority(&matrix).iter().zip(theirs).enumerate() {
        let theirs: Vec<f64> = theirs.as_array().expect("a row").iter().map(|v| v.as_f64().expect("p")).collect();
        assert!(ours.iter().zip(&theirs).all(|(a, b)| (a - b).abs() < 1e-9), "row {row}: {ours:?} vs {theirs:?}");
    }
}

#[test]
fn dawid_skene_labels_at_least_as_well_as_snorkels_label_model() {
    let (fixture, matrix, gold) = fixture();
    let model = DawidSkene::fit(&matrix, EmSettings::default());
    let ours = accuracy_on_covered(&model.predict_proba(&matrix), &gold, &matrix);
    let theirs = fixture["label_model"]["accuracy_on_covered_gold"].as_f64().expect("accuracy");
    let voted = accuracy_on_covered(&majority(&matrix), &gold, &matrix);
    eprintln!(
        "accuracy on covered gold rows: Dawid-Skene {ours:.4}, snorkel LabelModel {theirs:.4}, majority {voted:.4}"
    );
    assert!(ours >= theirs - 0.005, "Dawid-Skene {ours:.4} vs snorkel's LabelModel {theirs:.4}");
    let learned = model.accuracies();
    let snorkels: Vec<f64> = fixture["label_model"]["accuracies"]
        .as_array()
        .expect("accuracies")
        .iter()
        .map(|a| a.as_f64().expect("accuracy"))
        .collect();
    let real: Vec<f64> = fixture["analysis"]
        .as_array()
        .expect("analysis")
        .iter()
        .map(|f| f["empirical_accuracy"].as_f64().expect("accuracy"))
        .collect();
    let (mut ours_off, mut theirs_off) = (0.0, 0.0);
    for function in 0..real.len() {
        let (ours, theirs, real) = (learned[function], snorkels[function], real[function]);
        eprintln!(
            "function {function}: accuracy on gold {real:.3}, learned by Dawid-Skene {ours:.3}, by snorkel {theirs:.3}"
        );
        assert!((ours - real).abs() < 0.08, "function {function}: learned {ours:.3}, real {real:.3}");
        ours_off += (ours - real).abs();
        theirs_off += (theirs - real).abs();
    }
    assert!(
        ours_off <= theirs_off,
        "mean error of learned accuracies: Dawid-Skene {ours_off:.3} vs snorkel {theirs_off:.3} (sums)"
    );
}

/// How far kiln's fit may stray from snorkel's: snorkel runs in float32
/// (torch), kiln in float64, over 500 SGD steps; they agree to ~1e-7.
const CONDITIONAL_TOLERANCE: f64 = 1e-5;
const ACCURACY_TOLERANCE: f64 = 1e-5;
const PROBABILITY_TOLERANCE: f64 = 1e-5;

#[test]
fn matrix_completion_learns_what_snorkels_label_model_learns() {
    let (fixture, matrix, gold) = fixture();
    let theirs = &fixture["label_model"];
    let setting = |key: &str| theirs["settings"][key].as_f64().expect(key);
    let settings = MatrixCompletionSettings {
        epochs: setting("n_epochs") as usize,
        learning_rate: setting("lr"),
        seed: setting("seed") as u64,
        ..MatrixCompletionSettings::default()
    };
    let model = MatrixCompletion::fit(&matrix, &settings).expect("fits");
    let floats = |value: &Value| -> Vec<f64> {
        value.as_array().expect("a list").iter().map(|v| v.as_f64().expect("a number")).collect()
    };
    let mut worst = 0.0f64;
    for (function, (ours, theirs)) in model
        .conditional_probabilities()
        .iter()
        .zip(theirs["conditional_probabilities"].as_array().expect("mu"))
        .enumerate()
    {
        for (vote, (ours, theirs)) in ours.iter().zip(theirs.as_array().expect("votes")).enumerate() {
            for (ours, theirs) in ours.iter().zip(floats(theirs)) {
                worst = worst.max((ours - theirs).abs());
                assert!(
                    (ours - theirs).abs() < CONDITIONAL_TOLERANCE,
                    "function {function}, vote {vote}: P(vote | label) {ours:.5} vs snorkel's {theirs:.5}"
                );
            }
        }
    }
    for (function, (ours, theirs)) in model.accuracies().iter().zip(floats(&theirs["accuracies"])).enumerate() {
        assert!((ours - theirs).abs() < ACCURACY_TOLERANCE, "function {function}: accuracy {ours:.4} vs {theirs:.4}");
    }
    let probabilities = model.predict_proba(&matrix);
    for (row, (ours, theirs)) in probabilities.iter().zip(theirs["probabilities"].as_array().expect("rows")).enumerate()
    {
        for (ours, theirs) in ours.iter().zip(floats(theirs)) {
            assert!((ours - theirs).abs() < PROBABILITY_TOLERANCE, "row {row}: {ours:.4} vs snorkel's {theirs:.4}");
        }
    }
    let ours = accuracy_on_covered(&probabilities, &gold, &matrix);
    let snorkels = theirs["accuracy_on_covered_gold"].as_f64().expect("accuracy");
    eprintln!(
        "matrix completion: accuracy on covered gold {ours:.4} (snorkel {snorkels:.4}); largest mu gap {worst:.2e}"
    );
    assert!(ours >= snorkels, "kiln's {ours:.4} vs snorkel's {snorkels:.4}");
}
