//! The model being served, and what `/v1/model` says about it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use burn::tensor::Device;
use kiln_data::output::read_manifest;
use kiln_infer::Predictor;
use kiln_infer::export::{EVAL_METRICS, TRAIN_MANIFEST};
use serde::Serialize;
use serde::de::IgnoredAny;
use utoipa::ToSchema;

/// Hex digits of the weights' sha256 that name a model version.
const VERSION_DIGITS: usize = 12;

pub struct ServedModel {
    pub predictor: Predictor,
    pub info: Arc<ModelInfo>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInfo {
    /// The model folder's name.
    pub name: String,
    pub dir: String,
    /// The first 12 hex digits of the weights' sha256: it changes exactly when the weights do.
    pub version: String,
    pub architecture: String,
    /// Label names, in the order of the model's outputs.
    pub labels: Vec<String>,
    /// Texts are truncated to this many tokens.
    pub max_length: usize,
    pub weights_sha256: String,
    /// sha256 of each file training read, from the folder's training manifest (empty when absent).
    pub training_inputs: Vec<TrainingInput>,
    /// `eval`'s metrics that came with the folder, when it has them.
    #[schema(value_type = Option<Object>)]
    pub eval_metrics: Option<serde_json::Value>,
    /// When this server loaded the model (RFC 3339).
    pub loaded_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrainingInput {
    pub path: String,
    pub sha256: String,
}

impl ServedModel {
    /// Loads and checks a model folder (see [`Predictor::load`]) and describes it.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let predictor = Predictor::load(dir, device)?;
        let weights_sha256 = kiln_data::output::sha256_file(&dir.join("model.safetensors"))?;
        let max_length = predictor
            .settings
            .as_ref()
            .map_or(predictor.config.max_position_embeddings, |s| s.tokenize.max_length)
            .min(predictor.config.max_position_embeddings);
        let info = ModelInfo {
            name: dir
                .canonicalize()
                .unwrap_or_else(|_| dir.to_owned())
                .file_name()
                .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()),
            dir: dir.display().to_string(),
            version: weights_sha256[..VERSION_DIGITS].to_owned(),
            architecture: predictor.config.classification_architecture().to_owned(),
            labels: predictor.labels.labels().to_vec(),
            max_length,
            weights_sha256,
            training_inputs: training_inputs(dir),
            eval_metrics: read_json(&dir.join(EVAL_METRICS))?,
            loaded_at: crate::log::now(),
        };
        Ok(Self { predictor, info: Arc::new(info) })
    }
}

/// An export keeps training's manifest as `train_manifest.json`; `train`'s own
/// folder has it as `manifest.json`.
fn training_inputs(dir: &Path) -> Vec<TrainingInput> {
    [TRAIN_MANIFEST, "manifest.json"]
        .iter()
        .find_map(|name| read_manifest::<IgnoredAny>(&dir.join(name)))
        .map(|manifest| {
            manifest.inputs.into_iter().map(|input| TrainingInput { path: input.path, sha256: input.sha256 }).collect()
        })
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).map(Some).with_context(|| format!("{} is not valid JSON", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
