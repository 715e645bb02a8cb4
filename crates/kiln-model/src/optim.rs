//! The optimizer Hugging Face fine-tuning uses, in burn: AdamW with eps 1e-8 and
//! decoupled weight decay on weights only (biases and LayerNorm scales/shifts
//! are not decayed). burn's own AdamW defaults differ (eps 1e-5, decay 1e-4 on
//! every parameter).

use burn::module::ParamGroup;
use burn::optim::{AdamWConfig, ModuleOptimizer};

/// Parameters HF leaves out of weight decay, by their path in kiln's modules.
pub const NO_DECAY: &str = r"(\.bias|layer_norm\.(gamma|beta))$";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub weight_decay: f32,
    pub epsilon: f32,
    pub beta_1: f32,
    pub beta_2: f32,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self { weight_decay: 0.01, epsilon: 1e-8, beta_1: 0.9, beta_2: 0.999 }
    }
}

impl AdamWSettings {
    fn adamw(&self, weight_decay: f32) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(weight_decay)
    }

    /// AdamW with decay on weights and none on biases and LayerNorm parameters.
    pub fn init(&self) -> ModuleOptimizer {
        let no_decay = ParamGroup::from_regex(NO_DECAY).expect("NO_DECAY is a valid regex. This is a bug.");
        self.adamw(self.weight_decay).init().with_group(no_decay, self.adamw(0.0).build(), None)
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::GradientsParams;

    use super::*;
    use crate::DeviceSpec;
    use crate::bert::BertClassifier;
    use crate::test_support::{batch, floats, tiny};

    /// With zero gradients AdamW only decays: weights shrink by exactly
    /// (1 - lr * decay), biases and LayerNorm parameters do not move.
    #[test]
    fn decay_skips_biases_and_layer_norm() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let model = BertClassifier::new(&tiny(), 2, &device);
        let input = batch(vec![1, 2, 3, 4], vec![1; 4], [1, 4], &device);
        let loss = model.forward(input).sum().mul_scalar(0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);

        let weight = floats(model.classifier.weight.val());
        let bias = floats(model.classifier.bias.as_ref().expect("bias").val());
        let gamma = floats(model.bert.embeddings.layer_norm.gamma.val());
        let query = floats(model.bert.encoder.layer[0].attention.self_attn.query.weight.val());

        let (lr, decay) = (0.1, 0.5);
        let mut optimizer = AdamWSettings { weight_decay: decay, ..AdamWSettings::default() }.init();
        let model = optimizer.step(f64::from(lr), model, grads);

        let scaled = |before: &[f32], after: Vec<f32>| {
            before.iter().zip(after).map(|(b, a)| (b * (1.0 - lr * decay) - a).abs()).fold(0.0, f32::max)
        };
        assert!(scaled(&weight, floats(model.classifier.weight.val())) < 1e-6, "classifier weight decays");
        assert!(scaled(&query, floats(model.bert.encoder.layer[0].attention.self_attn.query.weight.val())) < 1e-6);
        assert_eq!(bias, floats(model.classifier.bias.as_ref().expect("bias").val()), "biases do not decay");
        assert_eq!(gamma, floats(model.bert.embeddings.layer_norm.gamma.val()), "LayerNorm does not decay");
    }
}
