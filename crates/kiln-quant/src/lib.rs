//! Dynamic int8 linear layers for CPU inference, on LibTorch's fbgemm kernels.
//!
//! [`Int8Linear::pack`] quantizes a float weight once, per output channel, and
//! packs it for fbgemm; [`Int8Linear::forward`] quantizes each input from its
//! own range, multiplies in int8 with int32 accumulation and returns floats.
//! That is exactly `torch.ao.quantization.quantize_dynamic` with per-channel
//! weights, run by the same LibTorch ops, so kiln's int8 model is the one a
//! PyTorch user would get. tch does not bind these ops (they live in the
//! `quantized::` operator namespace, not ATen's), hence the small C++ bridge.
//! The only crate in kiln with `unsafe`: the calls into it, each with its reason.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};
use std::ptr::{self, NonNull};

use tch::Tensor;

unsafe extern "C" {
    fn kiln_quant_pack(weight: *const c_void, bias: *const c_void, error: *mut *mut c_char) -> *mut c_void;
    fn kiln_quant_linear(
        packed: *mut c_void,
        input: *const c_void,
        reduce_range: bool,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn kiln_quant_drop(packed: *mut c_void);
    fn kiln_quant_free_error(error: *mut c_char);
}

/// LibTorch refused to quantize or run a layer.
#[derive(Debug, thiserror::Error)]
#[error("int8 linear layer: {0}")]
pub struct QuantError(String);

/// A linear layer's weight in int8, packed for fbgemm, with its float bias.
pub struct Int8Linear {
    packed: NonNull<c_void>,
    in_features: i64,
    out_features: i64,
}

// SAFETY: the packed weight is written once by `pack` and only read after;
// fbgemm's dynamic linear reads it from several threads at once in PyTorch too.
unsafe impl Send for Int8Linear {}
unsafe impl Sync for Int8Linear {}

impl std::fmt::Debug for Int8Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Int8Linear({} -> {})", self.in_features, self.out_features)
    }
}

impl Int8Linear {
    /// Quantizes `weight` (`[out, in]`, as PyTorch stores it) per output channel.
    pub fn pack(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self, QuantError> {
        let [out_features, in_features] = weight.size()[..] else {
            return Err(QuantError(format!("a weight is [out, in], got {:?}", weight.size())));
        };
        let mut error = ptr::null_mut();
        let bias = bias.map_or(ptr::null(), |b| b.as_ptr().cast());
        // SAFETY: both tensors outlive the call, and tch's C_tensor is an at::Tensor*.
        let packed = unsafe { kiln_quant_pack(weight.as_ptr().cast(), bias, &mut error) };
        let packed = NonNull::new(packed).ok_or_else(|| take_error(error))?;
        Ok(Self { packed, in_features, out_features })
    }

    /// `input @ weightᵀ + bias` over the last dimension of `input` (any rank >= 2).
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, QuantError> {
        let mut error = ptr::null_mut();
        // reduce_range as torch.ao's dynamic Linear sets it: 7-bit activations keep
        // AVX2's 16-bit pairwise sums from saturating on CPUs without VNNI.
        // SAFETY: `packed` came from kiln_quant_pack and lives as long as `self`.
        let output = unsafe { kiln_quant_linear(self.packed.as_ptr(), input.as_ptr().cast(), true, &mut error) };
        if output.is_null() {
            return Err(take_error(error));
        }
        // SAFETY: the bridge returns a fresh heap at::Tensor that we now own.
        Ok(unsafe { Tensor::from_ptr(output.cast()) })
    }

    pub fn in_features(&self) -> i64 {
        self.in_features
    }

    pub fn out_features(&self) -> i64 {
        self.out_features
    }
}

impl Drop for Int8Linear {
    fn drop(&mut self) {
        // SAFETY: `packed` came from kiln_quant_pack and is dropped once.
        unsafe { kiln_quant_drop(self.packed.as_ptr()) }
    }
}

fn take_error(error: *mut c_char) -> QuantError {
    if error.is_null() {
        return QuantError("LibTorch failed without a message".to_owned());
    }
    // SAFETY: the bridge sets `error` to a NUL-terminated strdup'd string.
    let text = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { kiln_quant_free_error(error) };
    QuantError(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
        let diff: f64 = (got - want).norm().double_value(&[]);
        diff / want.norm().double_value(&[])
    }

    #[test]
    fn int8_matches_float_within_quantization_error() {
        tch::manual_seed(7);
        let weight = Tensor::randn([96, 64], (Kind::Float, Device::Cpu)) * 0.05;
        let bias = Tensor::randn([96], (Kind::Float, Device::Cpu));
        let input = Tensor::randn([3, 5, 64], (Kind::Float, Device::Cpu));
        let layer = Int8Linear::pack(&weight, Some(&bias)).expect("packs");
        let got = layer.forward(&input).expect("runs");
        let want = input.linear(&weight, Some(&bias));
        assert_eq!(got.size(), vec![3, 5, 96]);
        // 7-bit activations and 8-bit weights: about 1% relative error, not more.
        let error = relative_error(&got, &want);
        assert!(error < 0.02, "relative error {error}");
        assert!(error > 0.0, "int8 should not be bit-identical to fp32");
    }

    #[test]
    fn a_weight_that_is_not_a_matrix_is_an_error() {
        let weight = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let error = Int8Linear::pack(&weight, None).expect_err("rank 1");
        assert!(error.to_string().contains("[out, in]"), "{error}");
    }

    #[test]
    fn a_mismatched_input_is_an_error_not_a_crash() {
        let layer = Int8Linear::pack(&Tensor::ones([4, 8], (Kind::Float, Device::Cpu)), None).expect("packs");
        let error = layer.forward(&Tensor::ones([2, 5], (Kind::Float, Device::Cpu))).expect_err("8 != 5");
        assert!(!error.to_string().is_empty());
    }
}
