//! Test support shared by kiln's crates, and never part of a release build (a
//! dev-dependency only): a small classifier folder for the tests of crates that
//! load models (`export`, `serve`), random weights, so fast to make, in the
//! shape of a fine-tuned model folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_core::model_folder::{CONFIG, TOKENIZER_FILES, WEIGHTS};
use kiln_model::bert::save_safetensors;
use kiln_model::{BertClassifier, BertConfig, BertTokenClassifier, DeviceSpec};

/// A BERT with MiniLM's vocabulary (so the real tokenizer fits), 2 layers of
/// `hidden` units and `heads` heads, 64 positions: fast to make and to run.
pub fn tiny_bert(hidden: usize, heads: usize) -> BertConfig {
    BertConfig {
        model_type: "bert".into(),
        vocab_size: 30522,
        hidden_size: hidden,
        num_hidden_layers: 2,
        num_attention_heads: heads,
        intermediate_size: 2 * hidden,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        classifier_dropout: None,
        pad_token_id: None,
    }
}

/// The MiniLM folder `make setup` installs; its tokenizer is the folder's.
pub fn pretrained_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/pretrained/all-MiniLM-L6-v2")
}

/// Writes a random 2-layer BERT with MiniLM's vocabulary and tokenizer, a head
/// for `labels`, and HF's id2label, into `dir`. `seed` picks the weights.
pub fn classifier_folder(dir: &Path, labels: &[&str], seed: u64) -> Result<()> {
    model_folder(dir, labels, seed, "BertForSequenceClassification", |config| {
        save_safetensors(&BertClassifier::new(config, labels.len(), &DeviceSpec::Cpu.device()), &dir.join(WEIGHTS))
    })
}

/// As [`classifier_folder`], with a token-classification head: `labels` are
/// IOB2 tags, and `config.json` names `BertForTokenClassification`.
pub fn tagger_folder(dir: &Path, labels: &[&str], seed: u64) -> Result<()> {
    model_folder(dir, labels, seed, "BertForTokenClassification", |config| {
        let model = BertTokenClassifier::new(config, labels.len(), &DeviceSpec::Cpu.device());
        save_safetensors(&model, &dir.join(WEIGHTS))
    })
}

fn model_folder(
    dir: &Path,
    labels: &[&str],
    seed: u64,
    architecture: &str,
    save: impl FnOnce(&BertConfig) -> Result<(), kiln_model::ModelError>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = tiny_bert(32, 4);
    // LibTorch's generator is global: seeding it here makes `save`'s random weights repeatable.
    DeviceSpec::Cpu.device().seed(seed);
    save(&config)?;
    let mut json = serde_json::to_value(&config)?;
    json["architectures"] = serde_json::json!([architecture]);
    let id2label: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(id, label)| (id.to_string(), serde_json::Value::from(*label))).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(id, label)| ((*label).to_owned(), serde_json::Value::from(id))).collect();
    json["id2label"] = id2label.into();
    json["label2id"] = label2id.into();
    std::fs::write(dir.join(CONFIG), json.to_string())?;
    let pretrained = pretrained_dir();
    for name in TOKENIZER_FILES {
        std::fs::copy(pretrained.join(name), dir.join(name))
            .with_context(|| format!("no {} in {} (run `make setup`)", name, pretrained.display()))?;
    }
    Ok(())
}

/// `scripts/checks/<script>` run by the Python with transformers and torch that
/// `scripts/setup.sh reference` installs (`make test` does), offline, as the
/// reference checks run; missing is a broken set-up, not a reason to skip.
pub fn reference_script(script: &str) -> std::process::Command {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = repo.join(".venv-ref/bin/python");
    let usable = std::process::Command::new(&python)
        .args(["-c", "import transformers, torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(usable, "no Python with transformers at {}: run `scripts/setup.sh reference`", python.display());
    let mut command = std::process::Command::new(python);
    command.arg(repo.join("scripts/checks").join(script)).env("HF_HUB_OFFLINE", "1").env("TRANSFORMERS_OFFLINE", "1");
    command
}

/// Reports a figure a test measured (a difference against a reference, a
/// failure count): test output is captured, so besides stderr it is appended
/// to the file `$KILN_TEST_FIGURES` names, which `make test` prints before its
/// closing line.
pub fn figure(line: &str) {
    eprintln!("{line}");
    append_to("KILN_TEST_FIGURES", line);
}

/// Appends `line` to the file the environment variable `variable` names, if set.
fn append_to(variable: &str, line: &str) {
    if let Some(path) = std::env::var_os(variable) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()));
        if let Err(error) = appended {
            eprintln!("cannot append to {}: {error}", Path::new(&path).display());
        }
    }
}

/// Why `scripts/setup.sh` could not install `tool` on this machine (not
/// root, no apt), or `None` when it did. Only a tool the set-up recorded as
/// uninstallable lets a test skip; one it installed but that is missing is a
/// broken set-up, and the test fails.
pub fn unavailable(tool: &str) -> Option<String> {
    let marker = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/unavailable").join(tool);
    std::fs::read_to_string(marker).ok().map(|why| why.trim().to_owned())
}

/// Records that `test` did not run, and why: cargo counts a test that
/// returns as passed, so `make test`'s closing line moves each one recorded
/// in `$KILN_TEST_SKIPS` from passed to skipped.
pub fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    append_to("KILN_TEST_SKIPS", &format!("{test}: {why}"));
}

/// The largest absolute difference between two equally long sequences.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
