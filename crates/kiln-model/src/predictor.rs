//! A model folder, loaded for prediction: what `eval`, `predict`, `export`
//! and `serve` share. It cleans and tokenizes texts as training did (from the
//! folder's `kiln.toml`), so every consumer predicts the same way.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use kiln_config::ModelSettings;
use kiln_core::prediction_log::InputStats;
use kiln_core::{Bug, Example, LabelMap, ModelFolder};
use kiln_text::clean::Cleaner;
use kiln_text::load_tokenizer;
use tokenizers::Tokenizer;

use crate::batch::{collate, length_sorted_batches};
use crate::bert::load_safetensors;
use crate::{BertClassifier, BertConfig};

/// Texts longer than this many tokens are truncated when the folder does not
/// say (a Hugging Face folder without kiln.toml).
const DEFAULT_MAX_LENGTH: usize = 512;

pub struct Predictor {
    pub folder: ModelFolder,
    pub config: BertConfig,
    pub labels: LabelMap,
    /// The settings the model was trained with; absent for a foreign HF folder.
    pub settings: Option<ModelSettings>,
    model: BertClassifier,
    tokenizer: Tokenizer,
    cleaner: Option<Cleaner>,
    unknown_token: Option<u32>,
    device: Device,
}

impl Predictor {
    /// Loads `dir`: config.json, model.safetensors (with a classification head),
    /// tokenizer.json, and the label names from labels.json or config.json's `id2label`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let folder = ModelFolder::open(dir)?;
        let config = BertConfig::from_folder(&folder)?;
        let labels = folder.labels()?;
        let settings = folder.settings_path().map(|path| ModelSettings::load(&path)).transpose()?;
        let tokenizer = load_tokenizer(dir, max_length(settings.as_ref(), &config))?;
        let weights = folder.weights()?;
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
        let unknown_token = kiln_text::unknown_token_id(&tokenizer);
        Ok(Self { folder, config, labels, settings, model, tokenizer, cleaner, unknown_token, device: device.clone() })
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
        let token_types = self.folder.takes_token_types();
        Ok(encodings
            .into_iter()
            .map(|encoding| Example {
                id: String::new(),
                input_ids: encoding.get_ids().to_vec(),
                token_type_ids: token_types
                    .then(|| encoding.get_type_ids().iter().map(|&t| u8::try_from(t).unwrap_or(0)).collect()),
                label_id: 0,
            })
            .collect())
    }

    /// What the model reads of an encoded text: the numbers monitoring compares
    /// with the training data's profile.
    pub fn input_stats(&self, example: &Example) -> InputStats {
        let tokens = example.input_ids.len();
        let unknown = self.unknown_token.map_or(0, |unk| example.input_ids.iter().filter(|&&id| id == unk).count());
        InputStats {
            tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            truncated: tokens >= self.max_length(),
            unknown_tokens: u32::try_from(unknown).unwrap_or(u32::MAX),
        }
    }

    /// Texts are truncated to this many tokens.
    pub fn max_length(&self) -> usize {
        max_length(self.settings.as_ref(), &self.config)
    }

    /// Class probabilities for one batch of examples, row by row, in label-id order.
    pub fn probabilities(&self, examples: &[&Example]) -> Result<Vec<Vec<f32>>> {
        if examples.is_empty() {
            return Ok(Vec::new());
        }
        let (input, _) = collate(examples, 0, &self.device);
        let probabilities = softmax(self.model.forward(input), 1);
        let flat = probabilities
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|error| Bug::new(format!("cannot read the model's output as f32: {error:?}")))?;
        if flat.len() != examples.len() * self.labels.len() {
            return Err(Bug::new(format!(
                "the model gave {} scores for {} examples of {} labels",
                flat.len(),
                examples.len(),
                self.labels.len()
            ))
            .into());
        }
        Ok(flat.chunks(self.labels.len()).map(<[f32]>::to_vec).collect())
    }

    /// Probabilities for many examples, in batches of `batch_size` grouped by
    /// length (so padding stays small), returned in the input order.
    pub fn probabilities_batched(&self, examples: &[Example], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let lengths: Vec<usize> = examples.iter().map(Example::len).collect();
        let mut out = vec![Vec::new(); examples.len()];
        for chunk in length_sorted_batches(&lengths, batch_size) {
            let rows: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
            for (&index, row) in chunk.iter().zip(self.probabilities(&rows)?) {
                out[index] = row;
            }
        }
        Ok(out)
    }
}

/// The training `max_length` (kiln.toml), else 512, within the model's positions.
fn max_length(settings: Option<&ModelSettings>, config: &BertConfig) -> usize {
    settings.map_or(DEFAULT_MAX_LENGTH, |s| s.tokenize.max_length).min(config.max_position_embeddings)
}
