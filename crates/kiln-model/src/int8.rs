//! `quantize = "int8"`: the encoder's linear layers run as dynamic int8 on the
//! CPU (kiln-torch-ops, LibTorch's fbgemm kernels), the rest in fp32.
//!
//! Each linear layer of the encoder carries an [`Int8Twin`] beside its float
//! weights. It is empty unless [`crate::BertModel::quantize_int8`] packed it, is
//! never saved (the folder stays fp32 and Hugging Face-compatible), and reaches
//! the LibTorch tensor under burn's through burn's backend-extension API.
use std::sync::Arc;

use burn::nn::Linear;
use burn::tensor::Tensor;
use kiln_torch_ops::{Int8Linear, QuantError};

use crate::device::from_libtorch;

/// A linear layer's int8 copy, or nothing (the float layer runs).
#[derive(Clone, Debug, Default)]
pub struct Int8Twin(Option<Arc<Int8Linear>>);

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("int8 runs on LibTorch's CPU kernels; this model is on {0}")]
    NotCpu(String),
    #[error("the model's weights are not LibTorch tensors ({0}). This is a bug.")]
    NotLibTorch(String),
    #[error(transparent)]
    Quant(#[from] QuantError),
}

impl Int8Twin {
    /// Quantizes `linear`'s weight (burn stores it `[in, out]`; fbgemm packs `[out, in]`).
    pub(crate) fn pack(linear: &Linear) -> Result<Self, Int8Error> {
        let weight = libtorch(linear.weight.val())?;
        if weight.device() != tch::Device::Cpu {
            return Err(Int8Error::NotCpu(format!("{:?}", weight.device())));
        }
        let bias = linear.bias.as_ref().map(|bias| libtorch(bias.val())).transpose()?;
        Ok(Self(Some(Arc::new(Int8Linear::pack(&weight.tr(), bias.as_ref())?))))
    }

    pub fn is_packed(&self) -> bool {
        self.0.is_some()
    }

    /// `linear` on `input`, in int8 when packed.
    pub(crate) fn forward(&self, linear: &Linear, input: Tensor<3>) -> Tensor<3> {
        let Some(int8) = &self.0 else {
            return linear_over_tokens(linear, input);
        };
        // Only a model quantized at load, on LibTorch's CPU, gets here, and its
        // shapes are the checkpoint's: a failure is kiln's bug, as a LibTorch
        // error inside burn would be (both reach the panic hook: exit 2).
        let output = libtorch(input)
            .map_err(|e| e.to_string())
            .and_then(|input| int8.forward(&input).map_err(|e| e.to_string()))
            .unwrap_or_else(|error| panic!("int8 linear layer failed: {error}. This is a bug."));
        from_libtorch(output)
    }
}

/// `linear` on `[batch, seq, in]` as one `[batch * seq, in]` matmul. burn's own
/// `Linear` keeps a batched matmul against the broadcast weight when `seq` is a
/// multiple of 32, and on LibTorch that made a training step's backward 2.7x
/// slower at length 32 (`make bench-train`'s step profile: 526 ms, now 188).
pub(crate) fn linear_over_tokens(linear: &Linear, input: Tensor<3>) -> Tensor<3> {
    let [batch, seq, width] = input.dims();
    let output = linear.forward(input.reshape([batch * seq, width]));
    let [_, out] = output.dims();
    output.reshape([batch, seq, out])
}

fn libtorch<const D: usize>(tensor: Tensor<D>) -> Result<tch::Tensor, Int8Error> {
    crate::device::libtorch(tensor).map_err(Int8Error::NotLibTorch)
}
