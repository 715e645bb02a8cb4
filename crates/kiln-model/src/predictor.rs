//! A model folder, loaded for prediction: what `eval`, `predict`, `export`
//! and `serve` share. It cleans and tokenizes texts as training did (from the
//! folder's `kiln.toml`), so every consumer predicts the same way.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use kiln_config::ModelSettings;
use kiln_core::entities::Aggregation;
use kiln_core::prediction_log::InputStats;
use kiln_core::{Bug, Example, LabelMap, ModelFolder, Precision, Quantize, TaggedExample, Task};
use kiln_text::aggregate::{Entity, aggregate_windows};
use kiln_text::clean::{Cleaner, WordCleaner};
use kiln_text::load_tokenizer;
use tokenizers::Tokenizer;

use crate::batch::{collate, length_sorted_batches, tagged_input};
use crate::bert::{WithHead, load_safetensors_copy};
use crate::{BertClassifier, BertConfig, BertTokenClassifier};

/// Texts longer than this many tokens are truncated when the folder does not
/// say (a Hugging Face folder without kiln.toml).
const DEFAULT_MAX_LENGTH: usize = 512;

pub struct Predictor {
    pub folder: ModelFolder,
    pub config: BertConfig,
    /// sha256 of the weights as loaded (read once, into memory).
    pub weights_sha256: String,
    pub labels: LabelMap,
    /// The settings the model was trained with; absent for a foreign HF folder.
    pub settings: Option<ModelSettings>,
    head: Head,
    tokenizer: Tokenizer,
    /// Training's cleaning, for the model's task; none for a foreign HF folder.
    cleaner: Option<TextCleaner>,
    unknown_token: Option<u32>,
    device: Device,
    quantize: Quantize,
    precision: Precision,
}

impl Predictor {
    /// Loads `dir`: config.json, model.safetensors (with a classification head
    /// of the task `config.json`'s `architectures` names), tokenizer.json, and
    /// the label names from labels.json or config.json's `id2label`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let folder = ModelFolder::open(dir)?;
        let config = BertConfig::from_folder(&folder)?;
        let labels = folder.labels()?;
        let settings = folder.settings_path().map(|path| ModelSettings::load(&path)).transpose()?;
        let max_length = max_length(settings.as_ref(), &config);
        let mut tokenizer = load_tokenizer(dir, max_length)?;
        if folder.task() == Task::TokenClassification {
            // A long text is read in overlapping windows, as training read long sentences.
            kiln_text::read_in_windows(&mut tokenizer, max_length, window_overlap(settings.as_ref(), max_length))?;
        }
        let weights = folder.weights()?;
        // Outside input: the dimensions must fit the weights before any tensor is allocated.
        config.check_fits(&folder.path(kiln_core::model_folder::CONFIG), &weights)?;
        let clean = settings.as_ref().and_then(|s| s.clean.as_ref());
        let (head, cleaner, weights_sha256) = match folder.task() {
            Task::SequenceClassification => {
                let (model, sha256) =
                    with_weights(BertClassifier::new(&config, labels.len(), device), &weights, &labels)?;
                (Head::Sequence(model), clean.map(|c| TextCleaner::Texts(Cleaner::new(c))), sha256)
            }
            Task::TokenClassification => {
                let (model, sha256) =
                    with_weights(BertTokenClassifier::new(&config, labels.len(), device), &weights, &labels)?;
                (Head::Tokens(model), clean.map(|c| TextCleaner::Words(WordCleaner::new(c))), sha256)
            }
        };
        let unknown_token = kiln_text::unknown_token_id(&tokenizer);
        Ok(Self {
            folder,
            config,
            weights_sha256,
            labels,
            settings,
            head,
            tokenizer,
            cleaner,
            unknown_token,
            device: device.clone(),
            quantize: Quantize::None,
            precision: Precision::Fp32,
        })
    }

    /// Runs the encoder in int8 from now on (`Quantize::Int8`, CPU only); the
    /// folder on disk is untouched. `Quantize::None` on an fp32 model does nothing.
    pub fn quantize(&mut self, quantize: Quantize) -> Result<()> {
        match (quantize, self.quantize) {
            (Quantize::None, Quantize::None) | (Quantize::Int8, Quantize::Int8) => {}
            (Quantize::Int8, Quantize::None) if self.precision == Precision::Bf16 => {
                bail!("a bf16 model cannot be quantized: choose one of quantize = \"int8\" and precision = \"bf16\"")
            }
            (Quantize::Int8, Quantize::None) => {
                let dir = self.folder.dir().display().to_string();
                self.encoder_mut().quantize_int8().with_context(|| format!("cannot quantize {dir}"))?;
                self.quantize = Quantize::Int8;
            }
            (Quantize::None, Quantize::Int8) => bail!("an int8 model cannot go back to fp32: load the folder again"),
        }
        Ok(())
    }

    /// How the encoder runs: `none` (fp32, as trained) or `int8`.
    pub fn quantization(&self) -> Quantize {
        self.quantize
    }

    /// Runs the matrix products in `precision` from now on: a device's
    /// `precision` setting made concrete ([`crate::device::precision`]). bf16
    /// packs a bf16 copy of the encoder's linear layers once; the folder on
    /// disk is untouched.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        match (precision, self.precision) {
            (Precision::Auto, _) => bail!("precision `auto` must be resolved for the device first. This is a bug."),
            (wanted, current) if wanted == current => {}
            (Precision::Bf16, _) if self.quantize == Quantize::Int8 => {
                bail!("an int8 model cannot run in bf16: choose one of quantize = \"int8\" and precision = \"bf16\"")
            }
            (Precision::Bf16, _) => {
                self.encoder_mut().pack_bf16();
                self.precision = Precision::Bf16;
            }
            (Precision::Fp32, _) => bail!("a bf16 model cannot go back to fp32: load the folder again"),
        }
        Ok(())
    }

    /// The dtype of the matrix products: fp32 (also under int8's fp32 parts) or bf16.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn encoder_mut(&mut self) -> &mut crate::BertModel {
        match &mut self.head {
            Head::Sequence(model) => &mut model.bert,
            Head::Tokens(model) => &mut model.bert,
        }
    }

    /// A label per text, or a tag per word.
    pub fn task(&self) -> Task {
        match self.head {
            Head::Sequence(_) => Task::SequenceClassification,
            Head::Tokens(_) => Task::TokenClassification,
        }
    }

    /// The Hugging Face class of the loaded model.
    pub fn architecture(&self) -> &'static str {
        match self.head {
            Head::Sequence(_) => self.config.classification_architecture(),
            Head::Tokens(_) => self.config.token_classification_architecture(),
        }
    }

    /// Cleans (as in training) and tokenizes `texts`; label ids are 0.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Example>> {
        let cleaned: Vec<String> = texts
            .iter()
            .map(|text| match &self.cleaner {
                Some(TextCleaner::Texts(cleaner)) => cleaner.clean(text).into_owned(),
                _ => (*text).to_owned(),
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
                label_probs: None,
                weight: None,
            })
            .collect())
    }

    /// What the model reads of an encoded text: the numbers monitoring compares
    /// with the training data's profile.
    pub fn input_stats(&self, example: &Example) -> InputStats {
        self.input_stats_of(&example.input_ids)
    }

    fn input_stats_of(&self, input_ids: &[u32]) -> InputStats {
        let tokens = input_ids.len();
        let unknown = self.unknown_token.map_or(0, |unk| input_ids.iter().filter(|&&id| id == unk).count());
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
        let Head::Sequence(model) = &self.head else {
            return Err(WrongTask { wanted: Task::SequenceClassification, found: self.task() }.into());
        };
        let (input, _) = collate(examples, 0, &self.device);
        let probabilities = softmax(model.forward(input), 1);
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
        by_length(examples, Example::len, batch_size, |batch| self.probabilities(batch))
    }

    /// Tag probabilities per sub-word of each row (`[row][sub-word][label]`,
    /// each row as long as its input), in label-id order.
    pub fn tag_probabilities(&self, rows: &[&TaggedExample]) -> Result<Vec<Vec<Vec<f32>>>> {
        let Head::Tokens(model) = &self.head else {
            return Err(WrongTask { wanted: Task::TokenClassification, found: self.task() }.into());
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let input = tagged_input(rows, 0, &self.device);
        let probabilities = softmax(model.forward(input), 2);
        let [_, width, labels] = probabilities.dims();
        let flat = probabilities
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|error| Bug::new(format!("cannot read the model's output as f32: {error:?}")))?;
        if labels != self.labels.len() || flat.len() != rows.len() * width * labels {
            return Err(Bug::new(format!(
                "the model gave {} scores for {} rows of {width} sub-words and {} labels",
                flat.len(),
                rows.len(),
                self.labels.len()
            ))
            .into());
        }
        Ok(rows
            .iter()
            .enumerate()
            .map(|(row, example)| {
                (0..example.len()).map(|at| flat[(row * width + at) * labels..][..labels].to_vec()).collect()
            })
            .collect())
    }

    /// [`Predictor::tag_probabilities`] for many rows, in batches of
    /// `batch_size` grouped by length, returned in the input order.
    pub fn tag_probabilities_batched(&self, rows: &[TaggedExample], batch_size: usize) -> Result<Vec<Vec<Vec<f32>>>> {
        by_length(rows, TaggedExample::len, batch_size, |batch| self.tag_probabilities(batch))
    }

    /// The predicted tag of every word of sentences already split into words
    /// (and cleaned, as `clean` writes them): read in windows and scored at
    /// each word's first sub-word where it has the most context, as `eval`
    /// scores them. A word the tokenizer turns into nothing is `O`.
    pub fn word_tags<W: AsRef<[S]>, S: AsRef<str>>(
        &self,
        sentences: &[W],
        batch_size: usize,
    ) -> Result<Vec<Vec<String>>> {
        let max_length = self.max_length();
        let aligner = kiln_text::align::Aligner::new(
            &self.tokenizer,
            &self.labels,
            max_length,
            kiln_config::LongSentences::Window,
            window_overlap(self.settings.as_ref(), max_length),
            false,
        )?;
        let token_types = self.folder.takes_token_types();
        let mut rows = Vec::new();
        let mut windows_of = Vec::with_capacity(sentences.len());
        for (id, words) in sentences.iter().enumerate() {
            let aligned = aligner.align(words.as_ref(), None)?;
            windows_of.push(aligned.windows.len());
            rows.extend(aligned.windows.into_iter().map(|window| TaggedExample {
                id: id.to_string(),
                window: window.index,
                input_ids: window.input_ids,
                token_type_ids: token_types.then_some(window.token_type_ids),
                labels: window.labels,
                word_ids: window.word_ids,
            }));
        }
        let probabilities = self.tag_probabilities_batched(&rows, batch_size)?;
        let mut start = 0;
        Ok(sentences
            .iter()
            .zip(windows_of)
            .map(|(words, count)| {
                let windows = &rows[start..start + count];
                let word_ids: Vec<&[i32]> = windows.iter().map(|w| w.word_ids.as_slice()).collect();
                let guesses: Vec<Vec<usize>> = probabilities[start..start + count]
                    .iter()
                    .map(|window| window.iter().map(|p| kiln_core::scores::argmax(p)).collect())
                    .collect();
                start += count;
                kiln_text::align::word_predictions(&word_ids, &guesses, words.as_ref().len())
                    .into_iter()
                    .map(|guess| guess.and_then(|id| self.labels.label(id as u32)).unwrap_or("O").to_owned())
                    .collect()
            })
            .collect())
    }

    /// The entities of raw texts, grouped as transformers' token-classification
    /// pipeline groups them (`strategy`), with character offsets into each raw
    /// text. Each text is cleaned word by word as training cleaned its
    /// sentences; where cleaning changed the text, an entity's `word` is the
    /// raw text it covers.
    pub fn entities(&self, texts: &[&str], strategy: Aggregation, batch_size: usize) -> Result<Vec<Vec<Entity>>> {
        let (encoded, inputs) = self.encode_tagged(texts)?;
        let mut probabilities = self.tag_probabilities_batched(&inputs, batch_size)?.into_iter();
        Ok(encoded
            .iter()
            .zip(texts)
            .map(|(text, raw)| {
                let windows: Vec<_> = probabilities.by_ref().take(text.window_count()).collect();
                text.entities(self, &windows, raw, strategy)
            })
            .collect())
    }

    /// Texts cleaned word by word and tokenized with character offsets, for
    /// [`Predictor::entities`]: each text's encoding and its model inputs, a
    /// row per window ([`EncodedText::windows`]), in order.
    pub fn encode_tagged(&self, texts: &[&str]) -> Result<(Vec<EncodedText>, Vec<TaggedExample>)> {
        let cleaned: Vec<kiln_text::clean::CleanedText> = texts
            .iter()
            .map(|text| match &self.cleaner {
                Some(TextCleaner::Words(cleaner)) => cleaner.clean_text(text),
                _ => kiln_text::clean::CleanedText::unchanged(text),
            })
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch_char_offsets(cleaned.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), true)
            .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
        let token_types = self.folder.takes_token_types();
        let inputs = encodings
            .iter()
            .flat_map(|encoding| std::iter::once(encoding).chain(encoding.get_overflowing()))
            .map(|encoding| TaggedExample {
                id: String::new(),
                window: 0,
                input_ids: encoding.get_ids().to_vec(),
                token_type_ids: token_types
                    .then(|| encoding.get_type_ids().iter().map(|&t| u8::try_from(t).unwrap_or(0)).collect()),
                labels: vec![0; encoding.len()],
                word_ids: Vec::new(),
            })
            .collect();
        let encoded =
            cleaned.into_iter().zip(encodings).map(|(cleaned, encoding)| EncodedText { cleaned, encoding }).collect();
        Ok((encoded, inputs))
    }

    /// What the model reads of a tokenized text (see [`Predictor::input_stats`]),
    /// summed over its windows; `truncated` says it filled the first one.
    pub fn tagged_input_stats(&self, text: &EncodedText) -> InputStats {
        let windows = text.windows();
        let mut stats = self.input_stats_of(windows[0].get_ids());
        for window in &windows[1..] {
            let more = self.input_stats_of(window.get_ids());
            stats.tokens = stats.tokens.saturating_add(more.tokens);
            stats.unknown_tokens = stats.unknown_tokens.saturating_add(more.unknown_tokens);
        }
        stats
    }
}

/// How far a tagger's windows over a long text overlap: training's
/// `window_overlap`, at most half a window, with room for the special tokens
/// (a tiny max_length).
fn window_overlap(settings: Option<&ModelSettings>, max_length: usize) -> usize {
    let overlap =
        settings.map_or_else(|| kiln_config::TokenizeConfig::default().window_overlap, |s| s.tokenize.window_overlap);
    overlap.min(max_length / 2).min(max_length.saturating_sub(3))
}

/// The training `max_length` (kiln.toml), else 512, within the model's positions.
fn max_length(settings: Option<&ModelSettings>, config: &BertConfig) -> usize {
    settings.map_or(DEFAULT_MAX_LENGTH, |s| s.tokenize.max_length).min(config.max_position_embeddings)
}

/// `predict` over `rows` in batches of `batch_size` grouped by length (so
/// padding stays small), its outputs returned in the input order.
fn by_length<R, O: Default + Clone>(
    rows: &[R],
    len: impl Fn(&R) -> usize,
    batch_size: usize,
    predict: impl Fn(&[&R]) -> Result<Vec<O>>,
) -> Result<Vec<O>> {
    let lengths: Vec<usize> = rows.iter().map(len).collect();
    let mut out = vec![O::default(); rows.len()];
    for chunk in length_sorted_batches(&lengths, batch_size) {
        let batch: Vec<&R> = chunk.iter().map(|&i| &rows[i]).collect();
        for (&index, output) in chunk.iter().zip(predict(&batch)?) {
            out[index] = output;
        }
    }
    Ok(out)
}

/// Training's cleaning: of whole texts (a label per text), or word by word
/// (a tag per word, so no word moves).
enum TextCleaner {
    Texts(Cleaner),
    Words(WordCleaner),
}

/// The loaded model and its head.
enum Head {
    Sequence(BertClassifier),
    Tokens(BertTokenClassifier),
}

/// A call for one task on a model of the other.
#[derive(Debug, thiserror::Error)]
#[error("this model does {found}, not {wanted}")]
pub struct WrongTask {
    pub wanted: Task,
    pub found: Task,
}

/// `model` with the folder's weights, which must hold a head for `labels`,
/// and the sha256 of the bytes it was loaded from.
fn with_weights<M: WithHead>(mut model: M, weights: &Path, labels: &LabelMap) -> Result<(M, String)> {
    let (report, sha256) = load_safetensors_copy(&mut model, weights)?;
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
    Ok((model, sha256))
}

/// A raw text as the token model reads it: cleaned word by word, then
/// tokenized with character offsets into the cleaned text.
pub struct EncodedText {
    pub cleaned: kiln_text::clean::CleanedText,
    pub encoding: tokenizers::Encoding,
}

impl EncodedText {
    /// The windows the model reads: the encoding, then those a text longer
    /// than `max_length` overflows into (overlapping by the training's `window_overlap`).
    pub fn windows(&self) -> Vec<&tokenizers::Encoding> {
        std::iter::once(&self.encoding).chain(self.encoding.get_overflowing()).collect()
    }

    /// How many [`Self::windows`]: the model's rows for this text.
    pub fn window_count(&self) -> usize {
        1 + self.encoding.get_overflowing().len()
    }

    /// Entities from this text's sub-word probabilities (a table per
    /// window), with offsets (and, where cleaning changed the text, words)
    /// of the raw text.
    pub fn entities(
        &self,
        predictor: &Predictor,
        probabilities: &[Vec<Vec<f32>>],
        raw: &str,
        strategy: Aggregation,
    ) -> Vec<Entity> {
        let mut entities = aggregate_windows(
            &self.cleaned.text,
            &self.windows(),
            probabilities,
            &predictor.labels,
            &predictor.tokenizer,
            strategy,
        );
        if self.cleaned.changed {
            let chars: Vec<char> = raw.chars().collect();
            for entity in &mut entities {
                let (start, end) = self.cleaned.raw_range(entity.start, entity.end);
                entity.start = start.min(chars.len());
                entity.end = end.min(chars.len());
                entity.word = chars[entity.start..entity.end].iter().collect();
            }
        }
        entities
    }
}
