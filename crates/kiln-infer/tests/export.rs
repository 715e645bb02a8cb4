//! `export` on a small classifier folder: the files, the refusals, and the
//! round trip through Python transformers (when a Python with transformers is
//! available: `.venv-ref`, made by scripts/reference_env.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_config::ExportConfig;
use kiln_infer::Predictor;
use kiln_model::DeviceSpec;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn classifier_folder(dir: &Path) {
    kiln_infer::testing::classifier_folder(dir, &["billing", "cards", "transfers"], 3)
        .expect("a classifier folder (MiniLM's tokenizer comes from `make setup`)");
}

fn export_config(root: &Path) -> ExportConfig {
    ExportConfig {
        model_dir: root.join("model"),
        output_dir: root.join("export"),
        eval_metrics: root.join("no-eval.json"),
        force: false,
    }
}

#[test]
fn exports_a_folder_and_refuses_to_overwrite_or_export_broken_ones() {
    let root = tempfile::tempdir().expect("tempdir");
    classifier_folder(&root.path().join("model"));
    let config = export_config(root.path());
    kiln_infer::export::run(&config).expect("exports");
    let out = &config.output_dir;
    for file in
        ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json", "README.md"]
    {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    let card = std::fs::read_to_string(out.join("README.md")).expect("card");
    assert!(card.contains("pipeline_tag: text-classification") && card.contains("`transfers`"), "{card}");
    assert!(card.contains("Intended use"));

    let error = kiln_infer::export::run(&config).expect_err("exists");
    assert!(error.to_string().contains("--force"), "{error}");
    std::fs::write(out.join("stale.txt"), "from an older export").expect("write");
    kiln_infer::export::run(&ExportConfig { force: true, ..config.clone() }).expect("forced");
    assert!(!out.join("stale.txt").exists(), "--force replaces the folder whole");

    // A label list that does not match the weights' head.
    std::fs::write(root.path().join("model/labels.json"), r#"{"labels": ["a", "b"]}"#).expect("labels");
    let broken = ExportConfig { output_dir: root.path().join("broken"), ..config.clone() };
    let message = format!("{:#}", kiln_infer::export::run(&broken).expect_err("mismatch"));
    assert!(message.contains("labels"), "{message}");
    std::fs::remove_file(root.path().join("model/labels.json")).expect("remove");
    // No weights.
    std::fs::remove_file(root.path().join("model/model.safetensors")).expect("remove");
    let message = format!("{:#}", kiln_infer::export::run(&broken).expect_err("no weights"));
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(!broken.output_dir.exists(), "a refused export writes nothing");
}

fn reference_python() -> Option<PathBuf> {
    let python = repo().join(".venv-ref/bin/python");
    let usable =
        Command::new(&python).args(["-c", "import transformers, torch"]).output().is_ok_and(|o| o.status.success());
    if usable {
        Some(python)
    } else {
        eprintln!("SKIPPED: no Python with transformers at {} (scripts/reference_env.sh makes it)", python.display());
        None
    }
}

/// transformers' AutoModelForSequenceClassification loads the export, and gives
/// the probabilities kiln gives, within 1e-4.
#[test]
fn transformers_loads_the_export_and_agrees_with_kiln() {
    let Some(python) = reference_python() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    classifier_folder(&root.path().join("model"));
    let config = export_config(root.path());
    kiln_infer::export::run(&config).expect("exports");

    let texts = ["I am still waiting on my card?", "how do i top up", "Is there a fee for sending money abroad?"];
    let output = Command::new(python)
        .arg(repo().join("scripts/check_export.py"))
        .arg(&config.output_dir)
        .args(texts)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(theirs["labels"], serde_json::json!(["billing", "cards", "transfers"]));

    let predictor = Predictor::load(&config.output_dir, &DeviceSpec::Cpu.device()).expect("kiln loads the export");
    let examples = predictor.encode(&texts).expect("encodes");
    let ours = predictor.probabilities_batched(&examples, 8);
    let mut max_diff = 0.0f64;
    for (row, probabilities) in ours.iter().enumerate() {
        for (class, p) in probabilities.iter().enumerate() {
            let reference = theirs["probabilities"][row][class].as_f64().expect("number");
            max_diff = max_diff.max((f64::from(*p) - reference).abs());
        }
    }
    eprintln!("export round trip: max abs probability difference {max_diff:.2e}");
    assert!(max_diff <= 1e-4, "kiln and transformers differ by {max_diff}");
}
