//! What a model's predictions and data looked like when it was made: the
//! reference every window of its live traffic is compared with. It travels in
//! the model folder (`reference_predictions.json` from `eval`,
//! `data_profile.json` from `profile`), so any copy of the model has it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use kiln_core::calibration::PredictionProfile;
use kiln_core::model_folder::version_name;
use kiln_core::profile::SplitProfile;
use kiln_core::{FileHash, ModelFolder, Split};
use serde::Serialize;

/// One model version's reference.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReference {
    /// The first 12 hex digits of the weights' sha256, as `serve` logs it.
    pub version: String,
    /// Where it was read from.
    pub source: String,
    pub labels: Vec<String>,
    /// `None` for a folder without `reference_predictions.json` (not evaluated
    /// by this kiln): prediction and confidence drift are then not measured.
    #[serde(skip)]
    pub predictions: Option<PredictionProfile>,
    /// The training data profile's reference split; `None` without `data_profile.json`.
    #[serde(skip)]
    pub data: Option<SplitProfile>,
    /// The truncation length the data profile measured with.
    pub max_length: Option<usize>,
    /// When the model was registered (or, for a bare folder, its weights written), Unix ms.
    pub created_ms: Option<u64>,
    /// Every file training read.
    pub training_data: Vec<FileHash>,
}

impl ModelReference {
    /// Reads a model folder's reference; `weights_sha256` when already known (a registry record).
    pub fn load(dir: &Path, weights_sha256: Option<&str>, split: Split) -> Result<Self> {
        let folder = ModelFolder::open(dir)?;
        let weights = folder.weights()?;
        let sha = match weights_sha256 {
            Some(sha) => sha.to_owned(),
            None => kiln_core::output::sha256_file(&weights)?,
        };
        let profile = folder.data_profile()?;
        let max_length = profile.as_ref().map(|p| p.max_length);
        let data = profile.and_then(|mut p| p.splits.remove(split.name()));
        let created_ms = std::fs::metadata(&weights)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        Ok(Self {
            version: version_name(&sha).to_owned(),
            source: dir.display().to_string(),
            labels: folder.labels()?.labels().to_vec(),
            predictions: folder.reference_predictions()?,
            data,
            max_length,
            created_ms,
            training_data: folder.train_manifest().map(|m| m.inputs).unwrap_or_default(),
        })
    }
}

/// The references monitoring knows, by version: the served folder's and every
/// registry version's (a log that spans a promotion holds both).
pub fn load_all(model_dir: &Path, registry_dir: &Path, split: Split) -> Result<BTreeMap<String, ModelReference>> {
    let mut references = BTreeMap::new();
    let registry = kiln_track::registry::Registry::at(registry_dir);
    if registry_dir.join(kiln_core::stages::REGISTRY_DONE).is_file() {
        let index = registry.load().with_context(|| format!("cannot read the registry {}", registry_dir.display()))?;
        for version in &index.versions {
            let dir = registry.version_dir(version.version);
            match ModelReference::load(&dir, Some(&version.weights_sha256), split) {
                Ok(mut reference) => {
                    reference.source = format!("registry {} ({})", version.name(), dir.display());
                    reference.created_ms = Some(version.created_ms);
                    reference.training_data.clone_from(&version.data);
                    references.insert(reference.version.clone(), reference);
                }
                Err(error) => tracing::warn!("registry {}: no reference: {error:#}", version.name()),
            }
        }
    }
    if model_dir.exists() {
        let served = ModelReference::load(model_dir, None, split)
            .with_context(|| format!("cannot read the served model's reference in {}", model_dir.display()))?;
        // The registry's record knows better when the model was made.
        references.entry(served.version.clone()).or_insert(served);
    } else if references.is_empty() {
        anyhow::bail!(
            "no model to compare with: {} does not exist and there is no registry at {} \
             (set monitor.model_dir or monitor.registry_dir)",
            model_dir.display(),
            registry_dir.display()
        );
    }
    Ok(references)
}
