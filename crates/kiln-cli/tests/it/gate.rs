//! `gate` with real models in a real registry: the holdout's labels are one
//! model's own predictions, so that model is perfect on it and the other is
//! measurably worse. The worse challenger is refused and stays a candidate;
//! the better one is promoted; both decisions land in the registry record.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_core::StagedOutput;
use kiln_core::scores::argmax;
use kiln_data::schema::TextTable;
use kiln_model::{DeviceSpec, Predictor};
use kiln_track::registry::{Registry, Stage};

const LABELS: [&str; 3] = ["billing", "cards", "transfers"];

/// 90 varied texts.
fn texts() -> Vec<String> {
    let subjects = ["my card", "the transfer", "a refund", "the bill", "my account", "an exchange rate"];
    let asks = ["where is", "why was", "how do I cancel", "can you explain", "I never got"];
    let mut texts = Vec::new();
    for (i, subject) in subjects.iter().cycle().take(90).enumerate() {
        texts.push(format!("{} {subject} from order {}?", asks[i % asks.len()], i * 7));
    }
    texts
}

fn predictions(dir: &Path, texts: &[String]) -> Vec<String> {
    let predictor = Predictor::load(dir, &DeviceSpec::Cpu.device()).expect("loads");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let examples = predictor.encode(&refs).expect("encodes");
    let rows = predictor.probabilities_batched(&examples, 16).expect("predicts");
    rows.iter().map(|p| predictor.labels.labels()[argmax(p)].clone()).collect()
}

/// A holdout whose true labels are `labels`.
fn holdout(dir: &Path, name: &str, texts: &[String], labels: Vec<String>) -> PathBuf {
    let table = TextTable {
        ids: (0..texts.len()).map(|i| i.to_string()).collect(),
        texts: texts.to_vec(),
        labels,
        ..TextTable::default()
    };
    let mut staged = StagedOutput::new(dir).expect("staging");
    table.write(&mut staged, name).expect("writes");
    let manifest = kiln_core::Manifest::new("test", &(), &());
    staged.commit(&format!("{name}.manifest.json"), &manifest).expect("commits");
    dir.join(name)
}

fn gate(root: &Path, holdout: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gate"))
        .current_dir(root)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("KILN_CONFIG")
        .args(["--quiet", "--registry-dir", "registry", "--device", "cpu", "--threads", "1", "--runs-dir", "runs"])
        .args(["--margin", "0", "--bootstrap-resamples", "200", "--min-class-support", "5"])
        .arg("--holdout")
        .arg(holdout)
        .output()
        .expect("gate runs")
}

/// A registry under `root` with v1 (production) and v2 (a candidate), two
/// random models that answer [`texts`] differently somewhere.
struct TwoModels {
    texts: Vec<String>,
    by_first: Vec<String>,
    by_second: Vec<String>,
    registry: Registry,
}

fn two_models(root: &Path) -> TwoModels {
    let (first, second) = (root.join("export-1"), root.join("export-2"));
    kiln_testing::classifier_folder(&first, &LABELS, 1).expect("v1");
    let texts = texts();
    let by_first = predictions(&first, &texts);
    // Tiny random models barely look at the text: take the first seed whose
    // model answers differently from v1's somewhere.
    let by_second = (2..20)
        .find_map(|seed| {
            kiln_testing::classifier_folder(&second, &LABELS, seed).expect("v2");
            let by_second = predictions(&second, &texts);
            (by_second != by_first).then_some(by_second)
        })
        .expect("a random model that disagrees with v1");
    let registry = Registry::at(&root.join("registry"));
    registry.add(&first, true).expect("v1, production");
    registry.add(&second, true).expect("v2, a candidate");
    TwoModels { texts, by_first, by_second, registry }
}

#[test]
fn a_worse_challenger_is_refused_and_a_better_one_promoted() {
    let root = tempfile::tempdir().expect("tempdir");
    let TwoModels { texts, by_first, by_second, registry } = two_models(root.path());
    let disagreements = by_first.iter().zip(&by_second).filter(|(a, b)| a != b).count();

    // Labelled as v1 sees them: v2 (the challenger) is worse, refused, left a candidate.
    let against_challenger = holdout(&root.path().join("holdout"), "v1_truth.parquet", &texts, by_first);
    let refused = gate(root.path(), &against_challenger);
    assert!(refused.status.success(), "a refusal is an answer: {}", String::from_utf8_lossy(&refused.stderr));
    let index = registry.load().expect("index");
    let v2 = index.get(2).expect("v2");
    assert_eq!((index.get(1).map(|v| v.stage), v2.stage), (Some(Stage::Production), Stage::Candidate));
    let decision = v2.gate.as_ref().expect("the decision is on v2's record");
    assert!(!decision.promote);
    assert_eq!((decision.champion, decision.challenger, decision.rows), (Some(1), 2, 90));
    assert_eq!(decision.champion_value, Some(1.0), "v1 is right on its own labels");
    assert_eq!((decision.only_champion_right, decision.only_challenger_right), (disagreements, 0));
    assert!(decision.mcnemar_p.is_some_and(|p| p <= 1.0) && decision.reasons.iter().any(|r| r.contains("macro_f1")));
    let written: kiln_core::gate::GateDecision = serde_json::from_slice(
        &std::fs::read(root.path().join("artifacts/gate/decision.json")).expect("decision.json"),
    )
    .expect("JSON");
    assert_eq!(&written, decision);

    // Labelled as v2 sees them: v2 is better, promoted, and the link follows.
    let for_challenger = holdout(&root.path().join("holdout"), "v2_truth.parquet", &texts, by_second);
    let promoted = gate(root.path(), &for_challenger);
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stderr));
    let index = registry.load().expect("index");
    assert_eq!(index.production().map(|v| v.version), Some(2));
    assert!(index.get(2).and_then(|v| v.gate.as_ref()).is_some_and(|d| d.promote && d.challenger_value == 1.0));
    assert_eq!(std::fs::read_link(registry.production_dir()).expect("link"), Path::new("v2"));
    let runs = kiln_track::list(&root.path().join("runs")).expect("run records");
    assert_eq!(runs.iter().filter(|r| r.stage == "gate").count(), 2);
    assert!(runs.iter().any(|r| r.tags.get("decision").is_some_and(|d| d == "refuse")));
}

/// Predictions made before the gate ran (`retrain`'s eval scored the test
/// split with the challenger's weights) stand in for scoring, for the texts
/// they have, and only for the model whose weights made them.
#[test]
fn known_predictions_stand_in_only_for_the_weights_that_made_them() {
    use kiln_infer::gate::{KnownPredictions, run_with};
    let root = tempfile::tempdir().expect("tempdir");
    let TwoModels { texts, by_first, by_second, registry } = two_models(root.path());
    let v2_weights = registry.load().expect("index").get(2).expect("v2").weights_sha256.clone();
    // Labelled as v1 sees them: scored for real, v2 is wrong wherever it disagrees.
    let truth = holdout(&root.path().join("holdout"), "v1_truth.parquet", &texts, by_first.clone());
    let config = kiln_config::GateConfig {
        holdout: vec![truth],
        registry_dir: Some(root.path().join("registry")),
        device: "cpu".into(),
        threads: 1,
        bootstrap_resamples: 50,
        min_class_support: 5,
        promote: false,
        output_dir: root.path().join("gate"),
        ..kiln_config::GateConfig::default()
    };
    let judge = |known: &[KnownPredictions]| {
        run_with(&config, &kiln_config::RegistryConfig::default(), &kiln_core::Progress::hidden(), known)
            .expect("the gate decides")
    };
    let scored = judge(&[]);
    let wrong = by_first.iter().zip(&by_second).filter(|(a, b)| a != b).count();
    assert_eq!((scored.only_champion_right, scored.only_challenger_right), (wrong, 0));

    // "v2 predicted v1's labels" for half the rows where it did not: those
    // are taken as known (right), the others are still scored (wrong).
    let disagree: Vec<usize> = (0..texts.len()).filter(|&i| by_first[i] != by_second[i]).collect();
    let half: std::collections::HashMap<String, String> =
        disagree[..disagree.len().div_ceil(2)].iter().map(|&i| (texts[i].clone(), by_first[i].clone())).collect();
    let known = KnownPredictions { weights_sha256: v2_weights, by_text: half.clone() };
    let taken = judge(&[known]);
    assert_eq!((taken.only_champion_right, taken.rows), (wrong - half.len(), 90));
    // Made by other weights: not used.
    let other = KnownPredictions { weights_sha256: "0".repeat(64), by_text: half };
    let ignored = judge(&[other]);
    assert_eq!((ignored.only_champion_right, ignored.challenger_value), (wrong, scored.challenger_value));
}
