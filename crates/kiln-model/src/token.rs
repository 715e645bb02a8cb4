//! Token classification: a label per sub-word, shaped like Hugging Face's
//! `BertForTokenClassification` / `DistilBertForTokenClassification`
//! (dropout and a linear layer over every hidden state, no pooler), so its
//! checkpoints load and save by their key names. The loss skips the positions
//! `tokenize` marked -100, and can weight classes and focus on hard tokens
//! (focal loss) for rare entity types.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::bert::{BertConfig, BertInput, BertModel, WithHead};

/// The label of a position the loss skips (special tokens, later sub-words).
pub const IGNORED: i64 = -100;

#[derive(Module, Debug)]
pub struct BertTokenClassifier {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertTokenClassifier {
    pub fn new(config: &BertConfig, num_labels: usize, device: &Device) -> Self {
        Self {
            bert: config.init(device),
            dropout: DropoutConfig::new(config.classifier_dropout.unwrap_or(config.hidden_dropout_prob)).init(),
            classifier: LinearConfig::new(config.hidden_size, num_labels).init(device),
        }
    }

    /// Logits, `[batch, seq, num_labels]`.
    pub fn forward(&self, input: BertInput) -> Tensor<3> {
        let hidden = self.bert.encode(input);
        crate::linear::to_f32(crate::linear::linear_over_tokens(
            &self.classifier,
            self.dropout.forward(hidden),
            self.bert.precision,
        ))
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }
}

impl WithHead for BertTokenClassifier {
    fn encoder(&self) -> &BertModel {
        &self.bert
    }

    fn encoder_mut(&mut self) -> &mut BertModel {
        &mut self.bert
    }

    fn classifier(&self) -> &Linear {
        &self.classifier
    }

    fn uses_pooler(&self) -> bool {
        false
    }
}

/// The mean loss over the positions whose label is not [`IGNORED`]:
/// cross-entropy when `focal_gamma` is 0, focal loss `-(1 - p)^gamma ln p`
/// otherwise (Lin et al. 2017), each position weighted by its class's weight
/// when given and the mean taken over those weights, as torch's
/// `CrossEntropyLoss(weight=..., ignore_index=-100)` does. burn's own
/// cross-entropy has neither an ignore index nor a focal term.
pub fn token_loss(
    logits: Tensor<3>,
    labels: Tensor<2, Int>,
    class_weights: Option<&[f32]>,
    focal_gamma: f32,
) -> Tensor<1> {
    let [batch, seq, classes] = logits.dims();
    let device = logits.device();
    let log_probs = log_softmax(logits.reshape([batch * seq, classes]), 1);
    let labels = labels.reshape([batch * seq]);
    let kept = labels.clone().not_equal_elem(IGNORED);
    // Ignored positions gather class 0 and are then weighted 0.
    let targets = labels.clone().mask_fill(kept.clone().bool_not(), 0);
    let log_p = log_probs.gather(1, targets.clone().reshape([batch * seq, 1])).reshape([batch * seq]);
    let mut weight = kept.float();
    if let Some(weights) = class_weights {
        let table = Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [weights.len()]), &device);
        weight = weight * table.select(0, targets);
    }
    let per_position = if focal_gamma == 0.0 {
        log_p.neg()
    } else {
        (log_p.clone().exp().neg() + 1.0).powf_scalar(focal_gamma) * log_p.neg()
    };
    // At least one kept position per batch: `tokenize` labels every word's first sub-word.
    (per_position * weight.clone()).sum() / weight.sum().clamp_min(1e-12)
}

#[cfg(test)]
mod tests {
    use burn::optim::{AdamWConfig, GradientsParams};

    use super::*;
    use crate::DeviceSpec;
    use crate::test_support::{batch, floats, tiny};

    fn labels(values: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    #[test]
    fn logits_per_token_and_ignored_positions_cost_nothing() {
        let device = DeviceSpec::Cpu.device();
        let model = BertTokenClassifier::new(&tiny(), 5, &device);
        let input = batch((0..12).map(|i| i % 40).collect(), vec![1; 12], [2, 6], &device);
        let logits = model.forward(input);
        assert_eq!(logits.dims(), [2, 6, 5]);
        let all = labels(vec![1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2], [2, 6], &device);
        let some = labels(vec![IGNORED, 2, IGNORED, 4, 0, IGNORED, IGNORED, 3, 4, 0, 1, IGNORED], [2, 6], &device);
        let with_all = floats(token_loss(logits.clone(), all, None, 0.0))[0];
        let with_some = floats(token_loss(logits.clone(), some.clone(), None, 0.0))[0];
        assert!((with_all - with_some).abs() > 1e-6, "ignoring positions changes the mean");
        // Changing a label under IGNORED changes nothing.
        let other = labels(vec![IGNORED, 2, IGNORED, 4, 0, IGNORED, IGNORED, 3, 4, 0, 1, IGNORED], [2, 6], &device);
        assert_eq!(floats(token_loss(logits.clone(), other, None, 0.0)), vec![with_some]);
        // Focal loss weighs every position less than cross-entropy does.
        let focal = floats(token_loss(logits, some, None, 2.0))[0];
        assert!(focal < with_some && focal > 0.0, "focal {focal} vs cross-entropy {with_some}");
    }

    #[test]
    fn a_small_tagging_set_is_overfitted() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let mut model = BertTokenClassifier::new(&tiny(), 3, &device);
        let mut optimizer = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).init();
        // Each token's label is a function of the token: a tagger must learn it.
        let ids: Vec<i64> = (0..8 * 6).map(|i| 1 + (i * 7) % 39).collect();
        let targets: Vec<i64> =
            ids.iter().enumerate().map(|(i, id)| if i % 6 == 0 { IGNORED } else { id % 3 }).collect();
        let input = batch(ids, vec![1; 48], [8, 6], &device);
        let target = labels(targets.clone(), [8, 6], &device);
        for _ in 0..120 {
            let loss = token_loss(model.forward(input.clone()), target.clone(), Some(&[1.0, 2.0, 1.0]), 1.0);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(3e-3, model, grads);
        }
        let predicted = model.forward(input).argmax(2).into_data().try_to_vec::<i64>().expect("ids");
        let scored: Vec<(i64, i64)> = predicted.into_iter().zip(targets).filter(|(_, t)| *t != IGNORED).collect();
        let correct = scored.iter().filter(|(p, t)| p == t).count();
        assert_eq!(correct, scored.len(), "tagged {correct}/{}", scored.len());
    }
}
