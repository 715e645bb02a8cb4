//! A model folder: what `train` writes, `export` copies, the registry keeps and
//! `eval`, `predict` and `serve` load. It is a Hugging Face folder
//! (`config.json`, `model.safetensors`, tokenizer files) plus kiln's own files.
//! Every file name lives here, and `config.json` is parsed once, on [`ModelFolder::open`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::de::IgnoredAny;

use crate::metrics::EvalMetrics;
use crate::output::{StageManifest, read_manifest};
use crate::{LabelMap, Task};

/// The Hugging Face model config.
pub const CONFIG: &str = "config.json";
/// The weights (Hugging Face key names).
pub const WEIGHTS: &str = "model.safetensors";
/// The exact cleaning, tokenizing and training settings (kiln's `ModelSettings`).
pub const SETTINGS: &str = "kiln.toml";
/// kiln's label list (also `tokenize`'s, beside the processed data).
pub const LABELS: &str = "labels.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
/// A model folder's tokenizer files, copied along wherever the model goes.
pub const TOKENIZER_FILES: [&str; 4] = [TOKENIZER, TOKENIZER_CONFIG, "special_tokens_map.json", "vocab.txt"];
/// `train`'s manifest, in the folder `train` writes.
pub const MANIFEST: &str = crate::Manifest::FILE;
/// `train`'s manifest once the folder is exported (the export has a manifest of its own).
pub const TRAIN_MANIFEST: &str = "train_manifest.json";
/// `eval`'s metrics, copied in by `export` so they travel with the weights.
pub const EVAL_METRICS: &str = "eval_metrics.json";
/// The training data's profile, copied in by `export`: the reference that
/// monitoring compares live traffic with.
pub const DATA_PROFILE: &str = "data_profile.json";
/// What the model's predictions look like on held-out data (`eval`), copied in
/// by `export`: the baseline of prediction and confidence drift.
pub const REFERENCE_PREDICTIONS: &str = "reference_predictions.json";
/// `export`'s manifest: the file it writes last.
pub const EXPORT_MANIFEST: &str = "kiln_export.json";
/// The model card of an export.
pub const MODEL_CARD: &str = "README.md";
/// The files that make a model (beyond the tokenizer's): what `export` and the registry copy.
pub const MODEL_FILES: [&str; 4] = [CONFIG, WEIGHTS, LABELS, SETTINGS];

const DISTILBERT: &str = "distilbert";

/// Hex digits of the weights' sha256 that name a model version (what `serve`
/// reports and logs, and monitoring matches references by).
const VERSION_DIGITS: usize = 12;

/// A model version's name: the start of its weights' sha256, so it changes
/// exactly when the weights do.
pub fn version_name(weights_sha256: &str) -> &str {
    weights_sha256.get(..VERSION_DIGITS).unwrap_or(weights_sha256)
}

/// A model folder with its `config.json` read.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    dir: PathBuf,
    config: serde_json::Value,
}

impl ModelFolder {
    /// Reads `dir/config.json`, which every model folder has.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is {} a model folder?)", path.display(), dir.display()))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        if !config.is_object() {
            bail!("{} is not a JSON object", path.display());
        }
        Ok(Self { dir: dir.to_owned(), config })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of the folder's files (one of this module's names).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `config.json`, as parsed.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    pub fn model_type(&self) -> Option<&str> {
        self.config.get("model_type").and_then(serde_json::Value::as_str)
    }

    /// What the model predicts, from `config.json`'s `architectures`: a
    /// `*ForTokenClassification` tags words, anything else labels texts.
    pub fn task(&self) -> Task {
        let architectures = self.config.get("architectures").and_then(serde_json::Value::as_array);
        let tags_words = architectures.is_some_and(|names| {
            names.iter().any(|n| n.as_str().is_some_and(|n| n.ends_with("ForTokenClassification")))
        });
        if tags_words { Task::TokenClassification } else { Task::SequenceClassification }
    }

    /// Whether the model takes token type ids: BERT does (`type_vocab_size` >
    /// 0, 2 when unset), DistilBERT does not.
    pub fn takes_token_types(&self) -> bool {
        if self.model_type() == Some(DISTILBERT) {
            return false;
        }
        self.config.get("type_vocab_size").is_none_or(|n| n.as_u64().is_some_and(|n| n > 0))
    }

    /// The weights, which must exist.
    pub fn weights(&self) -> Result<PathBuf> {
        let path = self.path(WEIGHTS);
        if !path.is_file() {
            bail!("model folder {} has no {WEIGHTS}", self.dir.display());
        }
        Ok(path)
    }

    /// `kiln.toml`, when the folder was written by kiln.
    pub fn settings_path(&self) -> Option<PathBuf> {
        Some(self.path(SETTINGS)).filter(|path| path.is_file())
    }

    /// The label names: kiln's `labels.json`, else `config.json`'s `id2label`;
    /// when both are there they must have as many labels.
    pub fn labels(&self) -> Result<LabelMap> {
        let from_config = self.id2label();
        let labels_path = self.path(LABELS);
        if labels_path.is_file() {
            let labels = LabelMap::load(&labels_path)?;
            if labels.is_empty() {
                bail!("{} lists no labels: a classifier needs at least one", labels_path.display());
            }
            if let Some(names) = &from_config
                && names.len() != labels.len()
            {
                bail!(
                    "{} lists {} labels but {}'s id2label has {}: the folder is inconsistent",
                    labels_path.display(),
                    labels.len(),
                    self.path(CONFIG).display(),
                    names.len()
                );
            }
            return Ok(labels);
        }
        match from_config {
            Some(names) if !names.is_empty() => Ok(LabelMap::from_ordered_names(names)),
            _ => bail!(
                "{} has neither {LABELS} nor an id2label in {CONFIG}: it is not a classification model folder",
                self.dir.display()
            ),
        }
    }

    /// `config.json`'s `id2label` in id order, when it is complete.
    fn id2label(&self) -> Option<Vec<String>> {
        let map = self.config.get("id2label")?.as_object()?;
        (0..map.len()).map(|id| map.get(&id.to_string()).and_then(|v| v.as_str()).map(str::to_owned)).collect()
    }

    /// `eval`'s metrics that travel with the folder, if any.
    pub fn eval_metrics(&self) -> Result<Option<EvalMetrics>> {
        EvalMetrics::load_if_present(&self.path(EVAL_METRICS))
    }

    /// The training data's profile that travels with the folder, if any.
    pub fn data_profile(&self) -> Result<Option<crate::DataProfile>> {
        crate::output::read_json_if_present(&self.path(DATA_PROFILE), "a kiln profile")
    }

    /// The reference predictions that travel with the folder, if any.
    pub fn reference_predictions(&self) -> Result<Option<crate::calibration::PredictionProfile>> {
        crate::output::read_json_if_present(&self.path(REFERENCE_PREDICTIONS), "a kiln prediction profile")
    }

    /// `train`'s manifest (the hashes of the data it read): `train_manifest.json`
    /// in an export, `manifest.json` in `train`'s own folder.
    pub fn train_manifest_path(&self) -> Option<PathBuf> {
        [TRAIN_MANIFEST, MANIFEST].into_iter().map(|name| self.path(name)).find(|path| path.is_file())
    }

    pub fn train_manifest(&self) -> Option<StageManifest<IgnoredAny>> {
        read_manifest(&self.train_manifest_path()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(config: &str) -> (tempfile::TempDir, ModelFolder) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG), config).expect("write");
        let folder = ModelFolder::open(dir.path()).expect("opens");
        (dir, folder)
    }

    #[test]
    fn token_types_follow_the_model_type_and_type_vocab_size() {
        assert!(folder(r#"{"model_type": "bert", "type_vocab_size": 2}"#).1.takes_token_types());
        assert!(folder(r#"{"model_type": "bert"}"#).1.takes_token_types(), "BERT's default is 2");
        assert!(!folder(r#"{"model_type": "bert", "type_vocab_size": 0}"#).1.takes_token_types());
        assert!(!folder(r#"{"model_type": "distilbert"}"#).1.takes_token_types());
    }

    #[test]
    fn labels_come_from_labels_json_or_id2label_and_must_agree() {
        let (dir, with_id2label) = folder(r#"{"id2label": {"0": "neg", "1": "pos"}}"#);
        assert_eq!(with_id2label.labels().expect("labels").labels(), ["neg", "pos"]);
        std::fs::write(dir.path().join(LABELS), r#"{"labels": ["a", "b", "c"]}"#).expect("write");
        let error = with_id2label.labels().expect_err("3 labels against 2");
        assert!(error.to_string().contains("inconsistent"), "{error}");

        let (_dir, bare) = folder("{}");
        assert!(bare.labels().is_err());
        assert!(bare.weights().is_err());
        assert!(bare.eval_metrics().expect("absent is fine").is_none());
    }

    #[test]
    fn a_missing_or_broken_config_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = ModelFolder::open(dir.path()).expect_err("no config");
        assert!(format!("{error:#}").contains(CONFIG), "{error:#}");
        std::fs::write(dir.path().join(CONFIG), "[1]").expect("write");
        assert!(ModelFolder::open(dir.path()).is_err());
    }
}
