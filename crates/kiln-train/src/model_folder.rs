//! The trained model's folder (`artifacts/model/`): a Hugging Face-style
//! folder (`config.json` with the label names, `model.safetensors` under HF key
//! names, the tokenizer files) plus kiln's own `labels.json`, `kiln.toml` (the
//! exact cleaning, tokenizing and training settings) and `manifest.json` (the
//! sha256 of every input and output). Written staged: all or nothing.

use anyhow::{Context, Result};
use kiln_config::{ModelSettings, TokenizeConfig, TrainConfig};
use kiln_core::model_folder::{CONFIG, LABELS, MANIFEST, SETTINGS, TOKENIZER_FILES, WEIGHTS};
use kiln_core::{LabelMap, Manifest, ModelFolder, StagedOutput};
use kiln_model::BertClassifier;
use kiln_model::bert::save_safetensors;
use serde::Serialize;

use crate::inputs::TrainInputs;

pub fn write(
    mut staged: StagedOutput,
    config: &TrainConfig,
    inputs: &TrainInputs,
    model: &BertClassifier,
    report: &impl Serialize,
) -> Result<()> {
    save_safetensors(model, &staged.stage(WEIGHTS))?;
    let architecture = inputs.model.classification_architecture();
    staged.write_json(CONFIG, &hf_config(&inputs.pretrained, architecture, &inputs.labels)?)?;
    for name in TOKENIZER_FILES {
        let source = config.model_dir.join(name);
        if source.is_file() {
            staged.copy(&source, name)?;
        }
    }
    staged.write_bytes(LABELS, inputs.labels.to_json().as_bytes())?;

    let tokenize = inputs.tokenize.clone().unwrap_or_else(|| {
        let longest = inputs.train.iter().map(|e| e.len()).max().unwrap_or(2);
        tracing::warn!(
            "no tokenize manifest in {}: kiln.toml records max_length {longest} (the longest training example)",
            config.input_dir.display()
        );
        TokenizeConfig { model_dir: config.model_dir.clone(), max_length: longest, ..TokenizeConfig::default() }
    });
    if inputs.clean.is_none() {
        tracing::warn!("no clean manifest found: predict and serve will not clean texts for this model");
    }
    let settings = ModelSettings { clean: inputs.clean.clone(), tokenize, train: config.clone() };
    staged.write_bytes(SETTINGS, settings.to_toml().as_bytes())?;

    let mut manifest = Manifest::new("train", config, report);
    manifest.inputs = inputs.hashes.clone();
    manifest.outputs = staged.hashes()?;
    staged.commit(MANIFEST, &manifest)
}

/// The pre-trained `config.json`, made a `…ForSequenceClassification` config
/// with kiln's label names, so transformers loads the folder as it is.
fn hf_config(pretrained: &ModelFolder, architecture: &str, labels: &LabelMap) -> Result<serde_json::Value> {
    let mut config = pretrained.config().clone();
    let path = pretrained.path(CONFIG);
    let map = config.as_object_mut().with_context(|| format!("{} is not a JSON object", path.display()))?;
    let id2label: serde_json::Map<String, serde_json::Value> =
        labels.labels().iter().enumerate().map(|(id, label)| (id.to_string(), label.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        labels.labels().iter().enumerate().map(|(id, label)| (label.clone(), id.into())).collect();
    map.insert("architectures".into(), serde_json::json!([architecture]));
    map.insert("id2label".into(), id2label.into());
    map.insert("label2id".into(), label2id.into());
    map.insert("problem_type".into(), "single_label_classification".into());
    map.insert("torch_dtype".into(), "float32".into());
    Ok(config)
}
