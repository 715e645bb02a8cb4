//! The trained model's folder (`artifacts/model/`): a Hugging Face-style
//! folder (`config.json` with the label names, `model.safetensors` under HF key
//! names, the tokenizer files) plus kiln's own `labels.json`, `kiln.toml` (the
//! exact cleaning, tokenizing and training settings) and `manifest.json` (the
//! sha256 of every input and output). Written staged: all or nothing.

use anyhow::{Context, Result};
use kiln_config::{ModelSettings, TokenizeConfig, TrainConfig};
use kiln_core::model_folder::{CONFIG, LABELS, MANIFEST, SETTINGS, TOKENIZER_FILES, WEIGHTS};
use kiln_core::{LabelMap, Manifest, ModelFolder, StagedOutput, Task};
use kiln_model::WithHead;
use kiln_model::bert::save_safetensors;
use serde::Serialize;

use crate::inputs::TrainInputs;
use crate::task::Encoded;

/// What the trained model is: its task and the Hugging Face class it is saved as.
pub struct Kind<'a> {
    pub task: Task,
    pub architecture: &'a str,
}

pub fn write<E: Encoded>(
    mut staged: StagedOutput,
    config: &TrainConfig,
    inputs: &TrainInputs<E>,
    model: &impl WithHead,
    kind: Kind,
    report: &impl Serialize,
) -> Result<()> {
    save_safetensors(model, &staged.stage(WEIGHTS))?;
    staged.write_json(CONFIG, &hf_config(&inputs.pretrained, &kind, &inputs.labels)?)?;
    for name in TOKENIZER_FILES {
        let source = config.model_dir.join(name);
        if source.is_file() {
            staged.copy(&source, name)?;
        }
    }
    staged.write_bytes(LABELS, inputs.labels.to_json().as_bytes())?;

    let tokenize = inputs.tokenize.clone().unwrap_or_else(|| {
        let longest = inputs.train.iter().map(|e| e.input_ids().len()).max().unwrap_or(2);
        tracing::warn!(
            "no tokenize manifest in {}: kiln.toml records max_length {longest} (the longest training example)",
            config.input_dir.display()
        );
        TokenizeConfig { model_dir: config.model_dir.clone(), max_length: longest, ..TokenizeConfig::default() }
    });
    if inputs.clean.is_none() {
        tracing::warn!("no clean manifest found: predict and serve will not clean texts for this model");
    }
    let settings = ModelSettings { task: kind.task, clean: inputs.clean.clone(), tokenize, train: config.clone() };
    staged.write_bytes(SETTINGS, settings.to_toml().as_bytes())?;

    let mut manifest = Manifest::new("train", config, report);
    manifest.inputs = inputs.hashes.clone();
    staged.commit_manifest(MANIFEST, manifest)
}

/// The pre-trained `config.json`, made a `…ForSequenceClassification` (or
/// `…ForTokenClassification`) config with kiln's label names, so transformers
/// loads the folder as it is.
fn hf_config(pretrained: &ModelFolder, kind: &Kind, labels: &LabelMap) -> Result<serde_json::Value> {
    let mut config = pretrained.config().clone();
    let path = pretrained.path(CONFIG);
    let map = config.as_object_mut().with_context(|| format!("{} is not a JSON object", path.display()))?;
    let id2label: serde_json::Map<String, serde_json::Value> =
        labels.labels().iter().enumerate().map(|(id, label)| (id.to_string(), label.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        labels.labels().iter().enumerate().map(|(id, label)| (label.clone(), id.into())).collect();
    map.insert("architectures".into(), serde_json::json!([kind.architecture]));
    map.insert("id2label".into(), id2label.into());
    map.insert("label2id".into(), label2id.into());
    if kind.task == Task::SequenceClassification {
        map.insert("problem_type".into(), "single_label_classification".into());
    }
    map.insert("torch_dtype".into(), "float32".into());
    Ok(config)
}
