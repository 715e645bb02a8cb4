//! How the encoder's linear layers run: fp32, bf16 mixed precision, or
//! dynamic int8 on the CPU (`quantize = "int8"`, kiln-torch-ops on LibTorch's
//! fbgemm kernels).
//!
//! Each linear layer of the encoder carries a [`PackedLinear`] beside its
//! float weights: empty in training (bf16 casts the live weights in each
//! forward, so their gradients flow back to the fp32 master weights, as
//! `torch.autocast` does), or an inference copy packed once at load
//! ([`crate::BertModel::pack_bf16`], [`crate::BertModel::quantize_int8`]). It
//! is never saved (the folder stays fp32 and Hugging Face-compatible), and
//! reaches the LibTorch tensor under burn's through burn's backend-extension API.
#![allow(deprecated)] // burn-tch is the chosen backend until kiln moves off LibTorch (see device.rs).
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::{Autodiff, AutodiffBackend, LibTorch};
use burn::nn::Linear;
use burn::tensor::{FloatDType, Tensor};
use kiln_core::Precision;
use kiln_torch_ops::{Int8Linear, QuantError};

use crate::device::from_libtorch;

/// A linear layer's inference copy, or nothing (the float layer runs).
#[derive(Clone, Debug, Default)]
pub struct PackedLinear(Option<Packed>);

#[derive(Clone, Debug)]
enum Packed {
    Int8(Arc<Int8Linear>),
    /// The weight (`[in, out]`, as burn stores it) and bias, cast to bf16 once.
    Bf16 {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("int8 runs on LibTorch's CPU kernels; this model is on {0}")]
    NotCpu(String),
    #[error("the model's weights are not LibTorch tensors ({0}). This is a bug.")]
    NotLibTorch(String),
    #[error(transparent)]
    Quant(#[from] QuantError),
}

impl PackedLinear {
    /// Quantizes `linear`'s weight (burn stores it `[in, out]`; fbgemm packs `[out, in]`).
    pub(crate) fn int8(linear: &Linear) -> Result<Self, Int8Error> {
        let weight = libtorch(linear.weight.val())?;
        if weight.device() != tch::Device::Cpu {
            return Err(Int8Error::NotCpu(format!("{:?}", weight.device())));
        }
        let bias = linear.bias.as_ref().map(|bias| libtorch(bias.val())).transpose()?;
        Ok(Self(Some(Packed::Int8(Arc::new(Int8Linear::pack(&weight.tr(), bias.as_ref())?)))))
    }

    /// A bf16 copy of `linear`'s weights, for inference (no gradients reach it).
    pub(crate) fn bf16(linear: &Linear) -> Self {
        let weight = bf16(linear.weight.val());
        let bias = linear.bias.as_ref().map(|bias| bf16(bias.val()));
        Self(Some(Packed::Bf16 { weight, bias }))
    }

    pub fn is_int8(&self) -> bool {
        matches!(self.0, Some(Packed::Int8(_)))
    }

    /// `linear` on `input`: in int8 when packed so (fp32 out), else in
    /// `precision` (bf16 out in bf16, from the packed copy when there is one).
    pub(crate) fn forward(&self, linear: &Linear, input: Tensor<3>, precision: Precision) -> Tensor<3> {
        match &self.0 {
            Some(Packed::Int8(int8)) => {
                // Only a model quantized at load, on LibTorch's CPU, gets here, and its
                // shapes are the checkpoint's: a failure is kiln's bug, as a LibTorch
                // error inside burn would be (both reach the panic hook: exit 2).
                let output = libtorch(to_f32(input))
                    .map_err(|e| e.to_string())
                    .and_then(|input| int8.forward(&input).map_err(|e| e.to_string()))
                    .unwrap_or_else(|error| panic!("int8 linear layer failed: {error}. This is a bug."));
                from_libtorch(output)
            }
            Some(Packed::Bf16 { weight, bias }) => {
                over_tokens(input, |rows| addmm(bf16(rows), weight.clone(), bias.clone()))
            }
            None => linear_over_tokens(linear, input, precision),
        }
    }
}

/// `linear` on `[rows, in]` in `precision`: bf16 casts the input and the
/// live weights (so gradients reach the fp32 weights through the casts) and
/// returns bf16.
pub(crate) fn linear_rows(linear: &Linear, input: Tensor<2>, precision: Precision) -> Tensor<2> {
    let weight = for_product(linear.weight.val(), precision);
    let bias = linear.bias.as_ref().map(|bias| for_product(bias.val(), precision));
    addmm(for_product(input, precision), weight, bias)
}

/// [`linear_rows`] on `[batch, seq, in]`, as one `[batch * seq, in]` matmul.
pub(crate) fn linear_over_tokens(linear: &Linear, input: Tensor<3>, precision: Precision) -> Tensor<3> {
    over_tokens(input, |rows| linear_rows(linear, rows, precision))
}

/// The tokens flattened into one `[batch * seq, in]` matrix first: burn's own
/// `Linear` keeps a batched matmul against the broadcast weight when `seq` is
/// a multiple of 32, and on LibTorch that made a training step's backward
/// 2.7x slower at length 32 (`make bench-train`'s step profile: 526 ms, now 188).
fn over_tokens(input: Tensor<3>, rows: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Tensor<3> {
    let [batch, seq, width] = input.dims();
    let output = rows(input.reshape([batch * seq, width]));
    let [_, out] = output.dims();
    output.reshape([batch, seq, out])
}

/// `input @ weight + bias` as one LibTorch `addmm`, which adds the bias before
/// rounding the product to the inputs' dtype, as `torch.nn.Linear` (and so
/// `torch.autocast`) does: a matmul then an add rounds bf16 twice, which put
/// kiln's bf16 encoder as far from autocast's as fp32 is (relative error
/// 8.4e-3; one rounding: 1e-6). Training runs it as one autodiff op with
/// torch's `addmm` backward; tensors not on LibTorch take burn's `linear`.
fn addmm(input: Tensor<2>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<2> {
    let Some(bias) = bias else {
        return burn::tensor::module::linear(input, weight, None);
    };
    if let (Ok(x), Ok(w), Ok(b)) = (
        input.clone().try_into_primitive::<Trained>(),
        weight.clone().try_into_primitive::<Trained>(),
        bias.clone().try_into_primitive::<Trained>(),
    ) {
        let (x_inner, w_inner, b_inner) =
            (Trained::inner(x.clone()), Trained::inner(w.clone()), Trained::inner(b.clone()));
        let output = TchTensor::new(b_inner.tensor.addmm(&x_inner.tensor, &w_inner.tensor));
        let result = match Addmm.prepare::<NoCheckpointing>([x.node(), w.node(), b.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish([x_inner, w_inner], output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        return Tensor::from_primitive::<Trained>(result);
    }
    match (
        crate::device::libtorch(input.clone()),
        crate::device::libtorch(weight.clone()),
        crate::device::libtorch(bias.clone()),
    ) {
        (Ok(x), Ok(w), Ok(b)) => from_libtorch(b.addmm(&x, &w)),
        _ => burn::tensor::module::linear(input, weight, Some(bias)),
    }
}

type Trained = Autodiff<LibTorch>;

#[derive(Debug)]
struct Addmm;

impl Backward<LibTorch, 3> for Addmm {
    /// The input and the weight, in the product's dtype.
    type State = [TchTensor; 2];

    /// torch's: input and weight gradients by the two products, the bias's as
    /// the sum over rows, all in the gradient's dtype.
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node).tensor;
        let [x, w] = ops.state.map(|t| t.tensor);
        let [x_node, w_node, b_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<LibTorch>(node.id, TchTensor::new(grad.mm(&w.tr())));
        }
        if let Some(node) = w_node {
            grads.register::<LibTorch>(node.id, TchTensor::new(x.tr().mm(&grad)));
        }
        if let Some(node) = b_node {
            grads.register::<LibTorch>(node.id, TchTensor::new(grad.sum_dim_intlist([0i64].as_slice(), false, None)));
        }
    }
}

/// `tensor` in bf16 (itself when it already is one).
pub(crate) fn bf16<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    cast(tensor, FloatDType::BF16)
}

/// `tensor` in fp32 (itself when it already is one), as everything but the
/// matrix products runs.
pub(crate) fn to_f32<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    cast(tensor, FloatDType::F32)
}

/// In `precision`'s dtype for a matrix product.
pub(crate) fn for_product<const D: usize>(tensor: Tensor<D>, precision: Precision) -> Tensor<D> {
    match precision {
        Precision::Bf16 => bf16(tensor),
        Precision::Fp32 | Precision::Auto => tensor,
    }
}

/// A cast only where the dtype differs: the autodiff backend records every
/// cast in its graph, even one to the same dtype.
fn cast<const D: usize>(tensor: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if tensor.dtype() == dtype.into() { tensor } else { tensor.cast(dtype) }
}

fn libtorch<const D: usize>(tensor: Tensor<D>) -> Result<tch::Tensor, Int8Error> {
    crate::device::libtorch(tensor).map_err(Int8Error::NotLibTorch)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::DeviceSpec;
    use crate::test_support::{floats, max_abs_diff};

    /// The one-op `addmm` gives burn's `linear` output and gradients (input,
    /// weight, bias) in training, and its output in inference.
    #[test]
    fn addmm_matches_burns_linear_forward_and_backward() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let input = random([5, 7]).require_grad();
        let weight = random([7, 3]).require_grad();
        let bias = Tensor::<1>::random([3], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let upstream = random([5, 3]);
        let run = |ours: bool| {
            let output = if ours {
                addmm(input.clone(), weight.clone(), Some(bias.clone()))
            } else {
                burn::tensor::module::linear(input.clone(), weight.clone(), Some(bias.clone()))
            };
            let grads = (output.clone() * upstream.clone()).sum().backward();
            (
                floats(output),
                floats(input.grad(&grads).expect("input gradient")),
                floats(weight.grad(&grads).expect("weight gradient")),
                floats(bias.grad(&grads).expect("bias gradient")),
            )
        };
        let (ours, burns) = (run(true), run(false));
        for (name, a, b) in [
            ("output", &ours.0, &burns.0),
            ("input", &ours.1, &burns.1),
            ("weight", &ours.2, &burns.2),
            ("bias", &ours.3, &burns.3),
        ] {
            assert!(max_abs_diff(a, b) < 1e-5, "{name} differs by {}", max_abs_diff(a, b));
            assert!(a.iter().any(|v| v.abs() > 1e-3), "{name} is not all zero");
        }
        let plain = DeviceSpec::Cpu.device();
        let [x, w] = [input.inner(), weight.inner()].map(|t| Tensor::<2>::from_data(t.into_data(), &plain));
        let b = Tensor::<1>::from_data(bias.inner().into_data(), &plain);
        assert!(max_abs_diff(&floats(addmm(x, w, Some(b))), &ours.0) < 1e-5, "inference differs");
    }
}
