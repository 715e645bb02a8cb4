//! LayerNorm in training as one LibTorch kernel each way. burn's autodiff
//! backend splits LayerNorm into a dozen primitive ops forward (and more
//! backward), each recorded in its graph; burn-tch's native `layer_norm` runs
//! only without autodiff. Here training calls `native_layer_norm` and, in the
//! backward, `native_layer_norm_backward` (through kiln-torch-ops): what
//! torch's autograd runs for `nn.LayerNorm`. Inference, or any tensor not on
//! `Autodiff<LibTorch>`, takes burn's LayerNorm unchanged.
#![allow(deprecated)] // burn-tch is the chosen backend until kiln moves off LibTorch (see device.rs).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::{Autodiff, AutodiffBackend, LibTorch};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;

use kiln_torch_ops::{LayerNormSaved, layer_norm_backward};

type Trained = Autodiff<LibTorch>;

/// `norm` over the last dimension of `input`, with `epsilon` (burn keeps its own private).
pub(crate) fn layer_norm(norm: &LayerNorm, epsilon: f64, input: Tensor<3>) -> Tensor<3> {
    native_layer_norm(norm, epsilon, input.clone()).unwrap_or_else(|| norm.forward(input))
}

/// The native path, or `None` when the tensors are not `Autodiff<LibTorch>` ones.
fn native_layer_norm(norm: &LayerNorm, epsilon: f64, input: Tensor<3>) -> Option<Tensor<3>> {
    let (Ok(x), Ok(gamma), Ok(beta)) = (
        input.try_into_primitive::<Trained>(),
        norm.gamma.val().try_into_primitive::<Trained>(),
        norm.beta.as_ref()?.val().try_into_primitive::<Trained>(),
    ) else {
        return None;
    };
    let (x_inner, gamma_inner, beta_inner) =
        (Trained::inner(x.clone()), Trained::inner(gamma.clone()), Trained::inner(beta.clone()));
    let width = x_inner.tensor.size().last().copied().unwrap_or(0);
    let (output, mean, rstd) =
        x_inner.tensor.native_layer_norm([width], Some(&gamma_inner.tensor), Some(&beta_inner.tensor), epsilon);
    let output = TchTensor::new(output);
    let result = match NativeLayerNorm
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            prep.finish([x_inner, TchTensor::new(mean), TchTensor::new(rstd), gamma_inner, beta_inner], output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Some(Tensor::from_primitive::<Trained>(result))
}

#[derive(Debug)]
struct NativeLayerNorm;

impl Backward<LibTorch, 3> for NativeLayerNorm {
    /// The input, the rows' mean and reciprocal standard deviation, gamma, beta.
    type State = [TchTensor; 5];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let [input, mean, rstd, weight, bias] = ops.state.map(|t| t.tensor);
        let saved = LayerNormSaved { input, mean, rstd, weight, bias };
        let wanted = ops.parents.each_ref().map(Option::is_some);
        // Shapes and dtypes come from the forward just run: a refusal is kiln's bug.
        let gradients =
            layer_norm_backward(&grad.tensor, &saved, wanted).unwrap_or_else(|error| panic!("{error}. This is a bug."));
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let (Some(node), Some(gradient)) = (parent, gradient) {
                grads.register::<LibTorch>(node.id, TchTensor::new(gradient));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::DeviceSpec;
    use crate::test_support::{floats, max_abs_diff};

    /// The native kernels give burn's LayerNorm output and gradients (input,
    /// gamma, beta) under an uneven upstream gradient; inference tensors take
    /// burn's own path.
    #[test]
    fn native_layer_norm_matches_burns_forward_and_backward() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let epsilon = 1e-12;
        let mut norm = LayerNormConfig::new(8).with_epsilon(epsilon).init(&device);
        norm.gamma = Param::from_tensor(Tensor::<1>::random([8], Distribution::Normal(1.0, 0.3), &device));
        norm.beta = Some(Param::from_tensor(Tensor::<1>::random([8], Distribution::Normal(0.0, 0.3), &device)));
        let input = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.5, 2.0), &device).require_grad();
        let upstream = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);

        let run = |native: bool| {
            let output = if native {
                native_layer_norm(&norm, epsilon, input.clone()).expect("training tensors take the native path")
            } else {
                norm.forward(input.clone())
            };
            let grads = (output.clone() * upstream.clone()).sum().backward();
            let beta = norm.beta.as_ref().expect("beta").val();
            let grad = |t: Tensor<1>| floats(t.grad(&grads).expect("a gradient"));
            (floats(output), floats(input.grad(&grads).expect("input gradient")), grad(norm.gamma.val()), grad(beta))
        };
        let (ours, theirs) = (run(true), run(false));
        for (name, a, b) in [
            ("output", &ours.0, &theirs.0),
            ("input", &ours.1, &theirs.1),
            ("gamma", &ours.2, &theirs.2),
            ("beta", &ours.3, &theirs.3),
        ] {
            assert!(max_abs_diff(a, b) < 1e-5, "{name} differs by {}", max_abs_diff(a, b));
            assert!(a.iter().any(|v| v.abs() > 1e-3), "{name} is not all zero");
        }
        let plain = DeviceSpec::Cpu.device();
        let inference = LayerNormConfig::new(8).init(&plain);
        assert!(native_layer_norm(&inference, 1e-5, Tensor::<3>::zeros([1, 2, 8], &plain)).is_none());
    }
}
