//! A model folder, loaded for prediction.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use kiln_config::ModelSettings;
use kiln_data::LabelMap;
use kiln_data::clean::Cleaner;
use kiln_data::processed::Example;
use kiln_data::tokenize::load_tokenizer;
use kiln_model::batch::{collate, length_sorted_batches};
use kiln_model::bert::load_safetensors;
use kiln_model::{BertClassifier, BertConfig};
use tokenizers::Tokenizer;

/// Texts longer than this many tokens are truncated when the folder does not
/// say (a Hugging Face folder without kiln.toml).
const DEFAULT_MAX_LENGTH: usize = 512;

pub struct Predictor {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub labels: LabelMap,
    /// The settings the model was trained with; absent for a foreign HF folder.
    pub settings: Option<ModelSettings>,
    model: BertClassifier,
    tokenizer: Tokenizer,
    cleaner: Option<Cleaner>,
    token_types: bool,
    device: Device,
}

impl Predictor {
    /// Loads `dir`: config.json, model.safetensors (with a classification head),
    /// tokenizer.json, and the label names from labels.json or config.json's `id2label`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = BertConfig::load(dir)?;
        let labels = load_labels(dir)?;
        let settings_path = dir.join("kiln.toml");
        let settings = settings_path.is_file().then(|| ModelSettings::load(&settings_path)).transpose()?;
        let max_length = settings.as_ref().map_or(DEFAULT_MAX_LENGTH, |s| s.tokenize.max_length);
        let tokenizer = load_tokenizer(dir, max_length.min(config.max_position_embeddings))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            bail!("model folder {} has no model.safetensors", dir.display());
        }
        let mut model = BertClassifier::new(&config, labels.len(), device);
        let report = load_safetensors(&mut model, &weights)?;
        if let Some(shape) = report.replaced_head {
            bail!(
                "{} has a classification head for {} labels, but the folder names {}: the label list does not \
                 belong to these weights",
                weights.display(),
                shape[0],
                labels.len()
            );
        }
        if !report.initialised.is_empty() {
            bail!(
                "{} has no classification head ({} missing): it is a pre-trained encoder, not a fine-tuned \
                 classifier (run `train` first)",
                weights.display(),
                report.initialised.join(", ")
            );
        }
        let cleaner = settings.as_ref().and_then(|s| s.clean.as_ref()).map(Cleaner::new);
        // BERT takes token types, DistilBERT (type_vocab_size 0) does not.
        let token_types = config.type_vocab_size > 0;
        Ok(Self {
            dir: dir.to_owned(),
            config,
            labels,
            settings,
            model,
            tokenizer,
            cleaner,
            token_types,
            device: device.clone(),
        })
    }

    /// Cleans (as in training) and tokenizes `texts`; label ids are 0.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Example>> {
        let cleaned: Vec<String> = texts
            .iter()
            .map(|text| match &self.cleaner {
                Some(cleaner) => cleaner.clean(text).into_owned(),
                None => (*text).to_owned(),
            })
            .collect();
        // The fast variant skips character offsets, which prediction never uses.
        let encodings =
            self.tokenizer.encode_batch_fast(cleaned, true).map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        Ok(encodings
            .into_iter()
            .map(|encoding| Example {
                id: String::new(),
                input_ids: encoding.get_ids().to_vec(),
                token_type_ids: self
                    .token_types
                    .then(|| encoding.get_type_ids().iter().map(|&t| u8::try_from(t).unwrap_or(0)).collect()),
                label_id: 0,
            })
            .collect())
    }

    /// Class probabilities for one batch of examples, row by row, in label-id order.
    pub fn probabilities(&self, examples: &[&Example]) -> Vec<Vec<f32>> {
        if examples.is_empty() {
            return Vec::new();
        }
        let (input, _) = collate(examples, 0, &self.device);
        let probabilities = softmax(self.model.forward(input), 1);
        let flat = probabilities.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        flat.chunks(self.labels.len()).map(<[f32]>::to_vec).collect()
    }

    /// Probabilities for many examples, in batches of `batch_size` grouped by
    /// length (so padding stays small), returned in the input order.
    pub fn probabilities_batched(&self, examples: &[Example], batch_size: usize) -> Vec<Vec<f32>> {
        let lengths: Vec<usize> = examples.iter().map(Example::len).collect();
        let mut out = vec![Vec::new(); examples.len()];
        for chunk in length_sorted_batches(&lengths, batch_size) {
            let rows: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
            for (&index, row) in chunk.iter().zip(self.probabilities(&rows)) {
                out[index] = row;
            }
        }
        out
    }
}

/// kiln's labels.json, else config.json's `id2label`; both, when present, must agree.
fn load_labels(dir: &Path) -> Result<LabelMap> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", config_path.display()))?;
    let from_config: Option<Vec<String>> = config.get("id2label").and_then(|map| {
        let map = map.as_object()?;
        (0..map.len()).map(|id| map.get(&id.to_string()).and_then(|v| v.as_str()).map(str::to_owned)).collect()
    });
    let labels_path = dir.join("labels.json");
    if labels_path.is_file() {
        let labels = LabelMap::load(&labels_path)?;
        if let Some(names) = &from_config
            && names.len() != labels.len()
        {
            bail!(
                "{} lists {} labels but {}'s id2label has {}: the folder is inconsistent",
                labels_path.display(),
                labels.len(),
                config_path.display(),
                names.len()
            );
        }
        return Ok(labels);
    }
    match from_config {
        Some(names) if !names.is_empty() => Ok(LabelMap::from_ordered_names(names)),
        _ => bail!(
            "{} has neither labels.json nor an id2label in config.json: it is not a classification model folder",
            dir.display()
        ),
    }
}
