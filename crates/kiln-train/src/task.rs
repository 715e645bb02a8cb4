//! What the training loop needs of a task: its examples, its model, its loss
//! and its validation. A label per text ([`Sequence`]) and a tag per word
//! ([`Tokens`]) share everything else: batching, the optimizer, the schedule,
//! checkpoints, early stopping and the model folder.

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_config::{ClassWeights, TrainConfig, TrainLoss, WeakTargets};
use kiln_core::entities::{Mode, score};
use kiln_core::scores::Confusion;
use kiln_core::{Example, LabelMap, TaggedExample};
use kiln_model::batch::{collate, collate_tagged, length_sorted_batches};
use kiln_model::loss::{SoftTarget, soft_target_loss, soft_targets};
use kiln_model::token::token_loss;
use kiln_model::{BertClassifier, BertConfig, BertTokenClassifier, WithHead};
use kiln_text::align::sentence_words;

use crate::ValidationMetrics;
use crate::frozen::FrozenPart;

/// Padding id in batches; its value is irrelevant (masked), BERT's [PAD] is 0.
pub(crate) const PAD_ID: u32 = 0;

/// A processed example, as the checks on inputs see it.
pub trait Encoded: Send + Sync {
    fn id(&self) -> &str;
    fn input_ids(&self) -> &[u32];
    fn token_type_ids(&self) -> Option<&[u8]>;
}

impl Encoded for Example {
    fn id(&self) -> &str {
        &self.id
    }

    fn input_ids(&self) -> &[u32] {
        &self.input_ids
    }

    fn token_type_ids(&self) -> Option<&[u8]> {
        self.token_type_ids.as_deref()
    }
}

impl Encoded for TaggedExample {
    fn id(&self) -> &str {
        &self.id
    }

    fn input_ids(&self) -> &[u32] {
        &self.input_ids
    }

    fn token_type_ids(&self) -> Option<&[u8]> {
        self.token_type_ids.as_deref()
    }
}

pub trait TrainTask {
    type Example: Encoded;
    type Model: Module + WithHead;

    /// A processed split, checked against the label list.
    fn read(path: &Path, labels: &LabelMap, labels_path: &Path) -> Result<Vec<Self::Example>>;
    fn new_model(config: &BertConfig, labels: usize, device: &Device) -> Self::Model;
    /// The Hugging Face class the trained folder is saved as.
    fn architecture(config: &BertConfig) -> &'static str;
    /// The mean loss of a batch; `frozen_hidden`, the frozen part's output
    /// for these rows when layers are frozen ([`FrozenPart`]).
    fn loss(
        model: &Self::Model,
        rows: &[&Self::Example],
        frozen_hidden: Option<Tensor<3>>,
        device: &Device,
        class_weights: Option<&[f32]>,
        config: &TrainConfig,
    ) -> Tensor<1>;
    /// Loss, accuracy and macro-F1 of `model` (in validation mode).
    fn validate(
        model: &Self::Model,
        examples: &[Self::Example],
        frozen: Option<&FrozenPart>,
        batch_size: usize,
        device: &Device,
        labels: &LabelMap,
    ) -> ValidationMetrics;
    /// Class weights of the loss (`class_weights = "inverse_frequency"`).
    fn class_weights(mode: ClassWeights, train: &[Self::Example], classes: usize) -> Option<Vec<f32>>;
    /// The group a subsample keeps its share of (`train.data_fraction`): the label, or one group for tagged sentences.
    fn stratum(example: &Self::Example) -> u32;
}

fn focal_gamma(config: &TrainConfig) -> f32 {
    match config.loss {
        TrainLoss::CrossEntropy => 0.0,
        TrainLoss::Focal => config.focal_gamma as f32,
    }
}

/// Inverse-frequency weights, n / (classes * count), as scikit-learn's "balanced".
pub(crate) fn balanced(mode: ClassWeights, labels: impl Iterator<Item = usize>, classes: usize) -> Option<Vec<f32>> {
    match mode {
        ClassWeights::None => None,
        ClassWeights::InverseFrequency => {
            let mut counts = vec![0usize; classes];
            for label in labels {
                counts[label] += 1;
            }
            let n: usize = counts.iter().sum();
            Some(
                counts
                    .iter()
                    .map(|&count| if count == 0 { 0.0 } else { (n as f64 / (classes as f64 * count as f64)) as f32 })
                    .collect(),
            )
        }
    }
}

/// A label per text.
pub struct Sequence;

impl TrainTask for Sequence {
    type Example = Example;

    fn stratum(example: &Example) -> u32 {
        example.label_id
    }
    type Model = BertClassifier;

    fn read(path: &Path, labels: &LabelMap, labels_path: &Path) -> Result<Vec<Example>> {
        let examples = kiln_data::processed::read_examples(path)?;
        kiln_data::processed::check_label_ids(path, &examples, labels, labels_path)?;
        Ok(examples)
    }

    fn new_model(config: &BertConfig, labels: usize, device: &Device) -> BertClassifier {
        BertClassifier::new(config, labels, device)
    }

    fn architecture(config: &BertConfig) -> &'static str {
        config.classification_architecture()
    }

    fn loss(
        model: &BertClassifier,
        rows: &[&Example],
        frozen_hidden: Option<Tensor<3>>,
        device: &Device,
        class_weights: Option<&[f32]>,
        config: &TrainConfig,
    ) -> Tensor<1> {
        let (mut input, targets) = collate(rows, PAD_ID, device);
        input.frozen_hidden = frozen_hidden;
        // Weak labels: the loss against each row's distribution (a gold row in
        // the same batch, as `retrain` mixes them, is its one-hot; with
        // `most_probable`, every row is), each row scaled by its weight.
        let distributions = config.weak_targets == WeakTargets::Distribution;
        if rows.iter().any(|row| (distributions && row.label_probs.is_some()) || row.weight.is_some()) {
            let logits = model.forward(input);
            let [_, classes] = logits.dims();
            let rows: Vec<_> = rows
                .iter()
                .map(|row| SoftTarget {
                    probs: row.label_probs.as_deref().filter(|_| distributions),
                    label: row.label_id,
                    weight: row.weight.unwrap_or(1.0),
                })
                .collect();
            let targets = soft_targets(&rows, classes, device);
            return soft_target_loss(logits, targets, class_weights, focal_gamma(config));
        }
        match config.loss {
            TrainLoss::CrossEntropy => model.weighted_loss(input, targets, class_weights).0,
            TrainLoss::Focal => {
                let logits = model.forward(input);
                let [batch, classes] = logits.dims();
                token_loss(
                    logits.reshape([batch, 1, classes]),
                    targets.reshape([batch, 1]),
                    class_weights,
                    focal_gamma(config),
                )
            }
        }
    }

    fn validate(
        model: &BertClassifier,
        examples: &[Example],
        frozen: Option<&FrozenPart>,
        batch_size: usize,
        device: &Device,
        labels: &LabelMap,
    ) -> ValidationMetrics {
        evaluate_with(model, examples, frozen, batch_size, device, labels.len())
    }

    fn class_weights(mode: ClassWeights, train: &[Example], classes: usize) -> Option<Vec<f32>> {
        balanced(mode, train.iter().map(|e| e.label_id as usize), classes)
    }
}

/// A tag per word: the loss over each word's labelled sub-words, validation
/// by entity-level F1 (conlleval, as seqeval's default) over the words.
pub struct Tokens;

impl TrainTask for Tokens {
    type Example = TaggedExample;

    fn stratum(_: &TaggedExample) -> u32 {
        0
    }
    type Model = BertTokenClassifier;

    fn read(path: &Path, labels: &LabelMap, _labels_path: &Path) -> Result<Vec<TaggedExample>> {
        kiln_data::processed::read_tagged_examples(path, labels)
    }

    fn new_model(config: &BertConfig, labels: usize, device: &Device) -> BertTokenClassifier {
        BertTokenClassifier::new(config, labels, device)
    }

    fn architecture(config: &BertConfig) -> &'static str {
        config.token_classification_architecture()
    }

    fn loss(
        model: &BertTokenClassifier,
        rows: &[&TaggedExample],
        frozen_hidden: Option<Tensor<3>>,
        device: &Device,
        class_weights: Option<&[f32]>,
        config: &TrainConfig,
    ) -> Tensor<1> {
        let (mut input, labels) = collate_tagged(rows, PAD_ID, device);
        input.frozen_hidden = frozen_hidden;
        token_loss(model.forward(input), labels, class_weights, focal_gamma(config))
    }

    /// `accuracy` is word accuracy and `macro_f1` entity-level F1 averaged
    /// over entity types (seqeval's macro average, conlleval mode).
    fn validate(
        model: &BertTokenClassifier,
        examples: &[TaggedExample],
        frozen: Option<&FrozenPart>,
        batch_size: usize,
        device: &Device,
        labels: &LabelMap,
    ) -> ValidationMetrics {
        let lengths: Vec<usize> = examples.iter().map(TaggedExample::len).collect();
        let mut predicted: Vec<Vec<u32>> = vec![Vec::new(); examples.len()];
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in length_sorted_batches(&lengths, batch_size) {
            let rows: Vec<&TaggedExample> = chunk.iter().map(|&i| &examples[i]).collect();
            let (mut input, targets) = collate_tagged(&rows, PAD_ID, device);
            input.frozen_hidden = frozen.and_then(|f| f.validation_batch(&chunk, device));
            let logits = model.forward(input);
            let [_, width, _] = logits.dims();
            loss_sum += f64::from(token_loss(logits.clone(), targets, None, 0.0).into_scalar::<f32>());
            batches += 1;
            let ids = logits.argmax(2).into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
            for (row, &index) in chunk.iter().enumerate() {
                let len = examples[index].len();
                predicted[index] = ids[row * width..row * width + len].iter().map(|&id| id.max(0) as u32).collect();
            }
        }
        let (truth, guess) = word_tags(examples, &predicted, labels);
        let scores = score(&truth, &guess, Mode::Conlleval)
            .expect("word_tags gives each sentence as many predicted tags as true ones. This is a bug.");
        ValidationMetrics {
            loss: loss_sum / batches.max(1) as f64,
            accuracy: scores.token_accuracy,
            macro_f1: scores.macro_avg.f1,
        }
    }

    fn class_weights(mode: ClassWeights, train: &[TaggedExample], classes: usize) -> Option<Vec<f32>> {
        let labelled = train.iter().flat_map(|e| e.labels.iter().filter(|&&l| l >= 0).map(|&l| l as usize));
        balanced(mode, labelled, classes)
    }
}

/// Each sentence's true and predicted tags per word, by name.
pub fn word_tags(
    examples: &[TaggedExample],
    predicted: &[Vec<u32>],
    labels: &LabelMap,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let name = |id: u32| labels.label(id).unwrap_or("O").to_owned();
    sentence_words(examples, predicted)
        .into_iter()
        .map(|sentence| sentence.words.iter().map(|&(_, truth, guess)| (name(truth), name(guess))).unzip())
        .unzip()
}

/// Loss, accuracy and macro-F1 of `model` (in validation mode) on `examples`.
pub fn evaluate(
    model: &BertClassifier,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
    classes: usize,
) -> ValidationMetrics {
    evaluate_with(model, examples, None, batch_size, device, classes)
}

/// [`evaluate`], with the frozen part's output taken from `frozen` where kept.
fn evaluate_with(
    model: &BertClassifier,
    examples: &[Example],
    frozen: Option<&FrozenPart>,
    batch_size: usize,
    device: &Device,
    classes: usize,
) -> ValidationMetrics {
    let lengths: Vec<usize> = examples.iter().map(Example::len).collect();
    let mut confusion = Confusion::new(classes);
    let mut loss_sum = 0.0;
    for chunk in length_sorted_batches(&lengths, batch_size) {
        let rows: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
        let (mut input, targets) = collate(&rows, PAD_ID, device);
        input.frozen_hidden = frozen.and_then(|f| f.validation_batch(&chunk, device));
        let (loss, logits) = model.loss(input, targets);
        loss_sum += f64::from(loss.into_scalar::<f32>()) * rows.len() as f64;
        let predicted = logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
        for (row, predicted) in rows.iter().zip(predicted) {
            confusion.add(row.label_id as usize, usize::try_from(predicted).unwrap_or(0));
        }
    }
    ValidationMetrics {
        loss: loss_sum / examples.len().max(1) as f64,
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
    }
}

#[cfg(test)]
mod tests {
    use kiln_config::ClassWeights;

    use super::*;

    fn example(label_id: u32) -> Example {
        Example {
            id: String::new(),
            input_ids: vec![101, 102],
            token_type_ids: None,
            label_id,
            label_probs: None,
            weight: None,
        }
    }

    fn class_weights(mode: ClassWeights, train: &[Example], classes: usize) -> Option<Vec<f32>> {
        Sequence::class_weights(mode, train, classes)
    }

    /// scikit-learn's compute_class_weight("balanced", classes=[0, 1, 2], y=[0, 0, 0, 1]):
    /// [0.444.., 1.333.., 0] (no examples of class 2: weight 0, never used).
    #[test]
    fn inverse_frequency_weights_are_sklearn_balanced() {
        let train: Vec<Example> = [0, 0, 0, 1].into_iter().map(example).collect();
        let weights = class_weights(ClassWeights::InverseFrequency, &train, 3).expect("weights");
        let expected = [4.0 / 9.0, 4.0 / 3.0, 0.0];
        assert!(weights.iter().zip(expected).all(|(w, e)| (f64::from(*w) - e).abs() < 1e-6), "{weights:?}");
        assert_eq!(class_weights(ClassWeights::None, &train, 3), None);
    }

    /// `most_probable` trains weak rows on their `label`, the plain
    /// cross-entropy; `distribution` on the whole distribution.
    #[test]
    fn weak_targets_pick_the_distribution_or_the_most_probable_label() {
        let device = kiln_model::DeviceSpec::Cpu.device();
        let bert =
            BertConfig { hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0, ..kiln_testing::tiny_bert(8, 2) };
        let model = BertClassifier::new(&bert, 2, &device);
        let gold: Vec<Example> = [1, 0, 1].into_iter().map(example).collect();
        let weak: Vec<Example> = gold
            .iter()
            .zip([[0.4, 0.6], [0.55, 0.45], [0.1, 0.9]])
            .map(|(row, probs)| Example { label_probs: Some(probs.to_vec()), ..row.clone() })
            .collect();
        let loss = |rows: &[Example], weak_targets| {
            let config = TrainConfig { weak_targets, ..TrainConfig::default() };
            let rows: Vec<&Example> = rows.iter().collect();
            Sequence::loss(&model, &rows, None, &device, None, &config).into_scalar::<f32>()
        };
        let hard = loss(&gold, WeakTargets::Distribution);
        let most_probable = loss(&weak, WeakTargets::MostProbable);
        let distribution = loss(&weak, WeakTargets::Distribution);
        assert!((most_probable - hard).abs() < 1e-6, "{most_probable} vs {hard}");
        assert!((distribution - hard).abs() > 1e-3, "{distribution} vs {hard}");
    }
}
