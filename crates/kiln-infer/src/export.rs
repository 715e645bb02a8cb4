//! `export`: the trained model as a Hugging Face folder
//! (`AutoModelForSequenceClassification.from_pretrained` loads it as it is),
//! with a model card. Built in a temporary folder beside the target and moved
//! into place whole; an existing export is replaced only with `force`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln_config::ExportConfig;
use kiln_data::output::{FileHash, Manifest, swap_dir_into_place};
use kiln_data::tokenize::{LABELS, TOKENIZER_FILES};
use kiln_model::DeviceSpec;

use crate::Predictor;

pub const MODEL_CARD: &str = "README.md";
pub const MANIFEST: &str = "kiln_export.json";
/// `eval`'s metrics, copied in so they travel with the weights (`serve` shows them).
pub const EVAL_METRICS: &str = "eval_metrics.json";
/// `train`'s manifest (the hashes of the data it read), copied in for the same reason.
pub const TRAIN_MANIFEST: &str = "train_manifest.json";
/// Files of kiln's model folder that travel with the export (beyond the tokenizer's).
pub const MODEL_FILES: [&str; 4] = ["config.json", "model.safetensors", LABELS, "kiln.toml"];

pub fn run(config: &ExportConfig) -> Result<Vec<FileHash>> {
    let target = &config.output_dir;
    let occupied = std::fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some());
    if occupied && !config.force {
        bail!("{} already exists and is not empty: pass --force to replace it", target.display());
    }
    // Loading the folder is the check: config, weights with a head, labels, tokenizer.
    let predictor = Predictor::load(&config.model_dir, &DeviceSpec::Cpu.device())?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-export-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;

    // Each file is hashed once: the copy has the source's sha256. Training's
    // manifest and eval's metrics travel with the weights, renamed.
    let metrics = read_eval_metrics(config)?;
    let model_files = MODEL_FILES.iter().chain(&TOKENIZER_FILES).map(|name| (config.model_dir.join(name), *name));
    let records =
        [(config.model_dir.join("manifest.json"), TRAIN_MANIFEST), (config.eval_metrics.clone(), EVAL_METRICS)];
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for (source, name) in model_files.chain(records) {
        if source.is_file() {
            std::fs::copy(&source, staging.path().join(name))
                .with_context(|| format!("cannot copy {}", source.display()))?;
            let hash = FileHash::of(&source)?;
            outputs.push(FileHash { path: target.join(name).display().to_string(), sha256: hash.sha256.clone() });
            if MODEL_FILES.contains(&name) {
                inputs.push(hash);
            }
        }
    }
    let card = model_card(config, &predictor, metrics.as_ref())?;
    std::fs::write(staging.path().join(MODEL_CARD), &card).context("cannot write the model card")?;
    let mut manifest = Manifest::new("export", config, &serde_json::json!({ "labels": predictor.labels.len() }));
    manifest.inputs = inputs;
    manifest.outputs = outputs.clone();
    let manifest_json = serde_json::to_string_pretty(&manifest).context("manifest")?;
    std::fs::write(staging.path().join(MANIFEST), manifest_json).context("cannot write the export manifest")?;
    swap_dir_into_place(&staging.keep(), target)?;
    Ok(outputs)
}

/// The model card: what the model is, what it was trained on and with, how good
/// it is, and how to use it.
fn read_eval_metrics(config: &ExportConfig) -> Result<Option<serde_json::Value>> {
    std::fs::read_to_string(&config.eval_metrics)
        .ok()
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .with_context(|| format!("{} is not valid JSON", config.eval_metrics.display()))
}

fn model_card(config: &ExportConfig, predictor: &Predictor, metrics: Option<&serde_json::Value>) -> Result<String> {
    let labels = predictor.labels.labels();
    let train_manifest: Option<serde_json::Value> = std::fs::read_to_string(config.model_dir.join("manifest.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());

    let mut card = String::new();
    let _ = writeln!(card, "---\nlibrary_name: transformers\npipeline_tag: text-classification\ntags:\n- kiln");
    if let Some(m) = metrics {
        let _ = writeln!(
            card,
            "model-index:\n- name: {}\n  results:\n  - task:\n      type: text-classification",
            folder_name(&config.output_dir)
        );
        let _ = writeln!(
            card,
            "    metrics:\n    - type: accuracy\n      value: {}\n    - type: f1\n      name: macro F1\n      value: {}",
            m["accuracy"], m["macro_f1"]
        );
    }
    let _ = writeln!(card, "---\n\n# {}\n", folder_name(&config.output_dir));
    let _ = writeln!(
        card,
        "A {} text classifier ({} layers, hidden size {}) fine-tuned by [kiln](https://github.com/kiln-ml/kiln) \
         to predict {} labels.\n",
        predictor.config.classification_architecture(),
        predictor.config.num_hidden_layers,
        predictor.config.hidden_size,
        labels.len()
    );
    let _ = writeln!(card, "## Labels\n\n{}\n", labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "));

    let _ = writeln!(card, "## Evaluation\n");
    match metrics {
        Some(m) => {
            let _ =
                writeln!(card, "On the `{}` split ({} examples):\n", m["split"].as_str().unwrap_or("?"), m["examples"]);
            let _ = writeln!(card, "| metric | value |\n|---|---|");
            for key in ["accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "loss"] {
                if let Some(value) = m[key].as_f64() {
                    let _ = writeln!(card, "| {key} | {value:.4} |");
                }
            }
            let _ = writeln!(card);
        }
        None => {
            let _ = writeln!(card, "Not evaluated yet (run `eval` before `export` to include its metrics).\n");
        }
    }

    let _ = writeln!(card, "## Training data and inputs\n\nsha256 of every file training read:\n");
    if let Some(inputs) = train_manifest.as_ref().and_then(|m| m["inputs"].as_array()) {
        for input in inputs {
            let _ = writeln!(
                card,
                "- `{}`: `{}`",
                input["path"].as_str().unwrap_or("?"),
                input["sha256"].as_str().unwrap_or("?")
            );
        }
    }
    if let Some(settings) = &predictor.settings {
        let _ = writeln!(
            card,
            "\n## Training configuration\n\nThe exact cleaning, tokenization and training settings (`kiln.toml`):\n\n```toml\n{}```\n",
            settings.to_toml()
        );
    }
    let _ = writeln!(
        card,
        "## Intended use and limitations\n\nClassifies short texts like those it was trained on into the labels above. \
         It has seen only its training data: texts from another domain, language or label set will be classified \
         with unwarranted confidence. Check the per-class figures from `eval` before relying on a rare class, and \
         keep a human in the loop for decisions that matter.\n"
    );
    let _ = writeln!(
        card,
        "## How to use\n\n```python\nfrom transformers import pipeline\nclassifier = pipeline(\"text-classification\", model=\"path/to/this/folder\")\nprint(classifier(\"I am still waiting on my card?\"))\n```\n\nWith kiln: `serve --model-dir path/to/this/folder` \
         (kiln applies the same text cleaning as in training, from `kiln.toml`)."
    );
    Ok(card)
}

fn folder_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "kiln-model".into(), |n| n.to_string_lossy().into_owned())
}
