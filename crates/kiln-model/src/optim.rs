//! The optimizer Hugging Face fine-tuning uses, in burn: AdamW with eps 1e-8 and
//! decoupled weight decay on weights only (biases and LayerNorm scales/shifts
//! are not decayed). burn's own AdamW defaults differ (eps 1e-5, decay 1e-4 on
//! every parameter).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

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

/// Scales the gradients of `model` so that their global L2 norm is at most
/// `max_norm`, as torch's `clip_grad_norm_` (and so HF `Trainer`) does; burn's
/// own clipping works per tensor. Returns the norm before clipping (NaN or
/// infinite when the gradients are).
pub fn clip_global_norm<M: Module>(model: &M, mut grads: GradientsParams, max_norm: f64) -> (GradientsParams, f64) {
    struct SquaredNorms<'a> {
        grads: &'a GradientsParams,
        sums: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorms<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                self.sums.push(grad.powi_scalar(2).sum());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
            }
        }
    }

    let mut squared = SquaredNorms { grads: &grads, sums: Vec::new() };
    model.visit(&mut squared);
    if squared.sums.is_empty() {
        return (grads, 0.0);
    }
    let norm = f64::from(Tensor::cat(squared.sums, 0).sum().sqrt().into_scalar::<f32>());
    if max_norm > 0.0 && norm > max_norm {
        model.visit(&mut Scale { grads: &mut grads, factor: max_norm / (norm + 1e-6) });
    }
    (grads, norm)
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

    fn gradient_norm(model: &BertClassifier, grads: &GradientsParams) -> f64 {
        let mut total = 0.0f64;
        let weight = grads.get::<2>(model.classifier.weight.id).expect("classifier grad");
        total += floats(weight).iter().map(|g| f64::from(*g).powi(2)).sum::<f64>();
        let query =
            grads.get::<2>(model.bert.encoder.layer[0].attention.self_attn.query.weight.id).expect("query grad");
        total += floats(query).iter().map(|g| f64::from(*g).powi(2)).sum::<f64>();
        total
    }

    /// Clipping scales every gradient by one factor so the global norm is max_norm.
    #[test]
    fn clipping_scales_all_gradients_by_the_global_norm() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let model = BertClassifier::new(&tiny(), 3, &device);
        let input = batch(vec![1, 2, 3, 4, 5, 6], vec![1; 6], [2, 3], &device);
        let targets = burn::tensor::Tensor::<1, burn::tensor::Int>::from_ints([0, 2], &device);
        let grads = || GradientsParams::from_grads(model.loss(input.clone(), targets.clone()).0.backward(), &model);

        let (unclipped, norm) = clip_global_norm(&model, grads(), f64::INFINITY);
        assert!(norm.is_finite() && norm > 0.0);
        let partial = gradient_norm(&model, &unclipped);
        assert!(partial <= norm * norm * (1.0 + 1e-4), "two tensors' share of the squared norm exceeds the total");

        let limit = norm / 4.0;
        let (clipped, reported) = clip_global_norm(&model, grads(), limit);
        assert!((reported - norm).abs() < 1e-6 * norm, "the norm before clipping is reported");
        let ratio = (gradient_norm(&model, &clipped) / partial).sqrt();
        assert!((ratio - 0.25).abs() < 1e-3, "gradients scaled by {ratio}, expected 0.25");
        let (kept, _) = clip_global_norm(&model, grads(), norm * 2.0);
        assert!((gradient_norm(&model, &kept) - partial).abs() < 1e-6 * partial, "below the limit nothing changes");
    }
}
