//! A small classifier folder for the tests of crates that load models
//! (`export`, `serve`): random weights, so fast to make, in the shape of a
//! fine-tuned model folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_model::bert::save_safetensors;
use kiln_model::{BertClassifier, BertConfig, DeviceSpec};

/// The MiniLM folder `make setup` installs; its tokenizer is the folder's.
pub fn pretrained_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/pretrained/all-MiniLM-L6-v2")
}

/// Writes a random 2-layer BERT with MiniLM's vocabulary and tokenizer, a head
/// for `labels`, and HF's id2label, into `dir`. `seed` picks the weights.
pub fn classifier_folder(dir: &Path, labels: &[&str], seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = BertConfig {
        model_type: "bert".into(),
        vocab_size: 30522,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        classifier_dropout: None,
    };
    let device = DeviceSpec::Cpu.device();
    device.seed(seed);
    save_safetensors(&BertClassifier::new(&config, labels.len(), &device), &dir.join("model.safetensors"))?;
    let mut json = serde_json::to_value(&config)?;
    json["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    let id2label: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(id, label)| (id.to_string(), serde_json::Value::from(*label))).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(id, label)| ((*label).to_owned(), serde_json::Value::from(id))).collect();
    json["id2label"] = id2label.into();
    json["label2id"] = label2id.into();
    std::fs::write(dir.join("config.json"), json.to_string())?;
    let pretrained = pretrained_dir();
    for name in kiln_data::tokenize::TOKENIZER_FILES {
        std::fs::copy(pretrained.join(name), dir.join(name))
            .with_context(|| format!("no {} in {} (run `make setup`)", name, pretrained.display()))?;
    }
    Ok(())
}
