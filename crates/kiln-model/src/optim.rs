//! The optimizer Hugging Face fine-tuning uses: AdamW with eps 1e-8 and
//! decoupled weight decay on weights only (biases and LayerNorm scales/shifts
//! are not decayed). burn's own AdamW defaults differ (eps 1e-5, decay 1e-4 on
//! every parameter).
//!
//! The update itself is LibTorch's fused AdamW kernel ([`FusedAdamW`]): one
//! pass over each parameter where burn's AdamW runs about fourteen tensor ops,
//! which made the optimizer 40% of a training step on the CPU. Its state is
//! burn's `AdamWState`, so checkpoints read and write as before.
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use kiln_torch_ops::{AdamWStep, fused_adamw};

use crate::device::from_libtorch;

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
    fn adamw(&self, weight_decay: f32) -> FusedAdamW {
        FusedAdamW { settings: Self { weight_decay, ..*self } }
    }

    /// AdamW with decay on weights and none on biases and LayerNorm parameters.
    pub fn init(&self) -> ModuleOptimizer {
        let no_decay = ParamGroup::from_regex(NO_DECAY).expect("NO_DECAY is a valid regex. This is a bug.");
        ModuleOptimizer::from(self.adamw(self.weight_decay)).with_group(no_decay, self.adamw(0.0), None)
    }
}

/// AdamW through LibTorch's `_fused_adamw_`, the kernel of
/// `torch.optim.AdamW(fused=True)`: the same update as burn's `AdamW` (bias-
/// corrected moments, eps added to the corrected root, decoupled decay), with
/// the same state.
#[derive(Debug, Clone)]
pub struct FusedAdamW {
    settings: AdamWSettings,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let param = libtorch(tensor);
        let (time, exp_avg, exp_avg_sq) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (momentum.time + 1, libtorch(momentum.moment_1), libtorch(momentum.moment_2))
            }
            None => (1, param.zeros_like(), param.zeros_like()),
        };
        let AdamWSettings { weight_decay, epsilon, beta_1, beta_2 } = self.settings;
        let step = AdamWStep {
            step: time as u64,
            lr,
            beta_1: f64::from(beta_1),
            beta_2: f64::from(beta_2),
            weight_decay: f64::from(weight_decay),
            epsilon: f64::from(epsilon),
        };
        // Shapes, dtypes and devices come from the model itself: a refusal is kiln's bug.
        let (param, exp_avg, exp_avg_sq) = fused_adamw(param, &libtorch(grad), exp_avg, exp_avg_sq, &step)
            .unwrap_or_else(|error| panic!("{error}. This is a bug."));
        let momentum = AdaptiveMomentumState::new(time, from_libtorch(exp_avg), from_libtorch(exp_avg_sq));
        (from_libtorch(param), Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// The LibTorch tensor under a parameter, its gradient or its moments.
fn libtorch<const D: usize>(tensor: Tensor<D>) -> tch::Tensor {
    crate::device::libtorch(tensor)
        .unwrap_or_else(|error| panic!("a parameter is not a LibTorch tensor ({error}). This is a bug."))
}

/// Scales the gradients of `model` so that their global L2 norm is at most
/// `max_norm`, as torch's `clip_grad_norm_` (and so HF `Trainer`) does; burn's
/// own clipping works per tensor. Returns the norm before clipping (NaN or
/// infinite when the gradients are).
pub fn clip_global_norm<M: Module>(model: &M, mut grads: GradientsParams, max_norm: f64) -> (GradientsParams, f64) {
    // One pass per gradient (LibTorch's norm), not burn's square-then-sum.
    struct Norms<'a> {
        grads: &'a GradientsParams,
        norms: Vec<tch::Tensor>,
    }
    impl ModuleVisitor for Norms<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                self.norms.push(libtorch(grad).norm());
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

    let mut norms = Norms { grads: &grads, norms: Vec::new() };
    model.visit(&mut norms);
    if norms.norms.is_empty() {
        return (grads, 0.0);
    }
    let norm = tch::Tensor::stack(&norms.norms, 0).norm().double_value(&[]);
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
    use crate::test_support::{batch, floats, max_abs_diff, tiny};

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

    /// The fused kernel takes the steps burn's own AdamW took before it (same
    /// groups, same settings), through warm-up of the moments; and the model it
    /// started from, which shares its weights' storage, is left as it was.
    #[test]
    fn fused_adamw_takes_burns_adamw_steps() {
        use burn::optim::AdamWConfig;

        let device = DeviceSpec::Cpu.device().autodiff();
        let start = BertClassifier::new(&tiny(), 3, &device);
        let before = floats(start.bert.encoder.layer[0].attention.self_attn.query.weight.val());
        let input = batch(vec![1, 2, 3, 4, 5, 6], vec![1; 6], [2, 3], &device);
        let targets = burn::tensor::Tensor::<1, burn::tensor::Int>::from_ints([0, 2], &device);
        let settings = AdamWSettings { weight_decay: 0.1, ..AdamWSettings::default() };
        let burns = |decay: f32| AdamWConfig::new().with_epsilon(settings.epsilon).with_weight_decay(decay);
        let no_decay = ParamGroup::from_regex(NO_DECAY).expect("regex");
        let mut reference = burns(settings.weight_decay).init().with_group(no_decay, burns(0.0).build(), None);
        let mut fused = settings.init();

        let (mut ours, mut theirs) = (start.clone(), start.clone());
        for _ in 0..3 {
            let grads = GradientsParams::from_grads(ours.loss(input.clone(), targets.clone()).0.backward(), &ours);
            ours = fused.step(1e-2, ours, grads);
            let grads = GradientsParams::from_grads(theirs.loss(input.clone(), targets.clone()).0.backward(), &theirs);
            theirs = reference.step(1e-2, theirs, grads);
        }
        let pairs = [
            (ours.classifier.weight.val(), theirs.classifier.weight.val()),
            (
                ours.bert.encoder.layer[0].attention.self_attn.query.weight.val(),
                theirs.bert.encoder.layer[0].attention.self_attn.query.weight.val(),
            ),
            (ours.bert.embeddings.word_embeddings.weight.val(), theirs.bert.embeddings.word_embeddings.weight.val()),
        ];
        for (a, b) in pairs {
            let difference = max_abs_diff(&floats(a), &floats(b));
            assert!(difference < 1e-6, "fused and burn's AdamW differ by {difference}");
        }
        let gamma = |m: &BertClassifier| floats(m.bert.embeddings.layer_norm.gamma.val());
        assert!(max_abs_diff(&gamma(&ours), &gamma(&theirs)) < 1e-6, "the no-decay group matches too");
        let query = floats(ours.bert.encoder.layer[0].attention.self_attn.query.weight.val());
        assert!(max_abs_diff(&query, &before) > 1e-3, "three steps moved the weights");
        let kept = floats(start.bert.encoder.layer[0].attention.self_attn.query.weight.val());
        assert_eq!(kept, before, "the starting model, sharing the weights' storage, did not change");
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
