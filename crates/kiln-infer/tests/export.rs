//! `export` on a small classifier folder: the files, the refusals, and the
//! round trip through Python transformers (`.venv-ref`, which `make test`
//! installs with `scripts/setup.sh reference`).

use std::path::Path;

use kiln_config::ExportConfig;
use kiln_model::DeviceSpec;
use kiln_model::Predictor;

/// Tokens a text is truncated to in the tests' kiln.toml: short, so long texts are cut.
const MAX_LENGTH: usize = 16;

/// A small classifier folder, trained (as kiln.toml says) with the default
/// `[clean]` rules and texts truncated to [`MAX_LENGTH`] tokens.
fn classifier_folder(dir: &Path) {
    kiln_testing::classifier_folder(dir, &["billing", "cards", "transfers"], 3)
        .expect("a classifier folder (MiniLM's tokenizer comes from `make setup`)");
    let settings = format!("[clean]\n\n[tokenize]\nmax_length = {MAX_LENGTH}\n\n[train]\n");
    std::fs::write(dir.join("kiln.toml"), settings).expect("kiln.toml");
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn export_config(root: &Path) -> ExportConfig {
    ExportConfig {
        model_dir: root.join("model"),
        output_dir: root.join("export"),
        eval_metrics: root.join("no-eval.json"),
        reference_predictions: root.join("no-reference.json"),
        data_profile: root.join("no-profile.json"),
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
    assert!(card.contains("def kiln_clean(text):") && card.contains("`strip_urls`"), "{card}");
    // transformers and the tokenizers library truncate where kiln does, and pad only when asked.
    assert_eq!(json_file(&out.join("tokenizer_config.json"))["model_max_length"], MAX_LENGTH);
    let tokenizer = json_file(&out.join("tokenizer.json"));
    assert_eq!(tokenizer["truncation"]["max_length"], MAX_LENGTH);
    assert!(tokenizer["padding"].is_null(), "{}", tokenizer["padding"]);

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

/// The reference Python with transformers, which `make test` installs
/// (`scripts/setup.sh reference`): missing is a broken set-up, not a skip.
/// The training data's profile and the reference predictions travel with the
/// export (so with every registry version); one that is not a profile is
/// refused before anything is written.
#[test]
fn the_monitoring_references_travel_with_the_export() {
    let root = tempfile::tempdir().expect("tempdir");
    classifier_folder(&root.path().join("model"));
    let mut profile = kiln_core::DataProfile { source: "data/interim".into(), max_length: 16, ..Default::default() };
    profile.splits.insert("train".into(), kiln_core::profile::SplitProfile { rows: 3, ..Default::default() });
    let path = root.path().join("profile.json");
    std::fs::write(&path, serde_json::to_string(&profile).expect("json")).expect("write");
    let names = ["negative".to_owned(), "positive".into()];
    let reference = kiln_core::calibration::PredictionProfile::of(
        "validation",
        &names,
        &[vec![0.9, 0.1], vec![0.2, 0.8], vec![0.6, 0.4]],
        &[0, 1, 1],
        0.5,
    );
    let reference_path = root.path().join("reference.json");
    std::fs::write(&reference_path, serde_json::to_string(&reference).expect("json")).expect("write");
    let config = ExportConfig {
        data_profile: path.clone(),
        reference_predictions: reference_path,
        ..export_config(root.path())
    };
    kiln_infer::export::run(&config).expect("exports");
    let folder = kiln_core::ModelFolder::open(&config.output_dir).expect("folder");
    assert_eq!(folder.data_profile().expect("reads"), Some(profile));
    assert_eq!(folder.reference_predictions().expect("reads"), Some(reference));

    std::fs::write(&path, "{\"rows\": 3}").expect("write");
    let config = ExportConfig { output_dir: root.path().join("export2"), ..config };
    let error = format!("{:#}", kiln_infer::export::run(&config).expect_err("not a profile"));
    assert!(error.contains("profile.json") && error.contains("not a kiln profile"), "{error}");
    assert!(!config.output_dir.exists());
}

/// transformers' AutoModelForSequenceClassification loads the export and gives
/// the probabilities kiln gives, within 1e-4: on a text longer than the
/// training `max_length` (both truncate it the same), and on a noisy text that
/// kiln cleans, after the model card's `kiln_clean`.
#[test]
fn transformers_loads_the_export_and_agrees_with_kiln() {
    let mut check = kiln_testing::reference_script("check_export.py");
    let root = tempfile::tempdir().expect("tempdir");
    classifier_folder(&root.path().join("model"));
    let config = export_config(root.path());
    kiln_infer::export::run(&config).expect("exports");

    let long = "I ordered a new card three weeks ago, it still has not arrived, the tracking page says nothing \
                and nobody answers the phone when I call, so what should I do now?";
    let noisy = "<b>Card</b> blocked &amp; stuck?? see https://example.com/help @support #urgent\u{200b}  thanks";
    let texts = ["I am still waiting on my card?", "how do i top up", long, noisy];
    let output = check.arg("--clean-with-card").arg(&config.output_dir).args(texts).output().expect("python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(theirs["labels"], serde_json::json!(["billing", "cards", "transfers"]));

    let predictor = Predictor::load(&config.output_dir, &DeviceSpec::Cpu.device()).expect("kiln loads the export");
    let examples = predictor.encode(&texts).expect("encodes");
    assert_eq!(examples[2].len(), MAX_LENGTH, "the long text is truncated");
    assert_eq!(theirs["lengths"][2], MAX_LENGTH, "transformers truncates it at the same length");
    assert_eq!(theirs["cleaned"][3], "Card blocked & stuck?? see urgent thanks", "the card's cleaning");
    let ours = predictor.probabilities_batched(&examples, 8).expect("predicts");
    let mut max_diff = 0.0f64;
    for (row, probabilities) in ours.iter().enumerate() {
        for (class, p) in probabilities.iter().enumerate() {
            let reference = theirs["probabilities"][row][class].as_f64().expect("number");
            max_diff = max_diff.max((f64::from(*p) - reference).abs());
        }
    }
    kiln_testing::figure(&format!(
        "export round trip through transformers ({} texts, a truncated long one and a cleaned noisy one): max abs \
         probability difference {max_diff:.2e}",
        texts.len()
    ));
    assert!(max_diff <= 1e-4, "kiln and transformers differ by {max_diff}");
}
