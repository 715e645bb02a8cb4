//! The model being served, and what `/v1/model` says about it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::tensor::Device;
use kiln_core::{EvalMetrics, ModelFolder, Precision, Quantize, Task};
use kiln_model::Predictor;
use serde::Serialize;
use utoipa::ToSchema;

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
    /// `sequence_classification` (a label per text) or `token_classification` (entities).
    #[schema(value_type = String)]
    pub task: Task,
    pub architecture: String,
    /// Label names, in the order of the model's outputs.
    pub labels: Vec<String>,
    /// Texts are truncated to this many tokens.
    pub max_length: usize,
    /// `none` (fp32, as trained) or `int8` (the encoder's linear layers
    /// quantized at load, `serve --quantize int8`); the weights file is fp32 either way.
    #[schema(value_type = String)]
    pub quantize: Quantize,
    /// The dtype of the matrix products: `fp32`, or `bf16` (`serve --precision`;
    /// the weights file stays fp32).
    #[schema(value_type = String)]
    pub precision: Precision,
    pub weights_sha256: String,
    /// sha256 of each file training read, from the folder's training manifest (empty when absent).
    pub training_inputs: Vec<TrainingInput>,
    /// `eval`'s metrics that came with the folder, when it has them.
    #[schema(value_type = Option<Object>)]
    pub eval_metrics: Option<EvalMetrics>,
    /// The temperature of the model's calibration (from its
    /// `reference_predictions.json`); logged predictions carry the calibrated top probability.
    pub calibration_temperature: Option<f64>,
    /// When this server loaded the model (RFC 3339).
    pub loaded_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrainingInput {
    pub path: String,
    pub sha256: String,
}

impl ModelInfo {
    /// The entity types a token-classification model finds (its labels
    /// without `B-`/`I-`, in label order); empty for a text classifier.
    pub fn entity_types(&self) -> Vec<String> {
        if self.task != Task::TokenClassification {
            return Vec::new();
        }
        let mut types: Vec<String> = Vec::new();
        for label in &self.labels {
            if let Some(kind) = kiln_core::entities::entity_type(label)
                && !types.iter().any(|t| t == kind)
            {
                types.push(kind.to_owned());
            }
        }
        types
    }
}

impl ServedModel {
    /// Loads and checks a model folder (see [`Predictor::load`]) and describes it.
    pub fn load(dir: &Path, device: &Device, quantize: Quantize, precision: Precision) -> Result<Self> {
        let mut predictor = Predictor::load(dir, device)?;
        predictor.quantize(quantize)?;
        predictor.set_precision(precision)?;
        let folder = &predictor.folder;
        // The bytes that were loaded, not the file as it may be by now.
        let weights_sha256 = predictor.weights_sha256.clone();
        let max_length = predictor.max_length();
        let info = ModelInfo {
            name: dir
                .canonicalize()
                .unwrap_or_else(|_| dir.to_owned())
                .file_name()
                .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned()),
            dir: dir.display().to_string(),
            version: kiln_core::model_folder::version_name(&weights_sha256).to_owned(),
            task: predictor.task(),
            architecture: predictor.architecture().to_owned(),
            labels: predictor.labels.labels().to_vec(),
            max_length,
            quantize: predictor.quantization(),
            precision: predictor.precision(),
            weights_sha256,
            training_inputs: training_inputs(folder),
            eval_metrics: folder.eval_metrics()?,
            calibration_temperature: folder.reference_predictions()?.map(|reference| reference.temperature),
            loaded_at: crate::log::now(),
        };
        Ok(Self { predictor, info: Arc::new(info) })
    }
}

/// sha256 of each file training read, from the folder's training manifest.
fn training_inputs(folder: &ModelFolder) -> Vec<TrainingInput> {
    let inputs = folder.train_manifest().map(|manifest| manifest.inputs).unwrap_or_default();
    inputs.into_iter().map(|input| TrainingInput { path: input.path, sha256: input.sha256 }).collect()
}
