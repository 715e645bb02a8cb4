//! The one place that picks kiln's compute backend.
//!
//! Everything else asks for a [`burn::tensor::Device`] through [`DeviceSpec`], so
//! moving from LibTorch (burn-tch, deprecated upstream) to burn's pure-Rust `flex`
//! or its CubeCL `cuda` backend is a change to this file alone, and to the three
//! users of LibTorch's own kernels: `int8.rs` (fp32 would keep working without
//! it), `optim.rs`'s fused AdamW (burn's AdamW would do) and `layer_norm.rs`
//! (which falls back to burn's LayerNorm by itself).

use std::fmt;
use std::str::FromStr;

#[allow(deprecated)] // burn-tch is the chosen backend until kiln moves off LibTorch.
use burn::backend::{LibTorch, libtorch::TchTensor};
use burn::tensor::{Device, Tensor};
use kiln_core::Precision;
use kiln_core::precision::PrecisionError;

/// Which device a stage runs on, as written in configs and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA when LibTorch sees a GPU, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("unknown device '{0}': expected cpu, cuda, cuda:N or auto")]
    Unknown(String),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(text.to_owned())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl DeviceSpec {
    /// The burn device this spec names. `Auto` resolves to CUDA only when a GPU is
    /// actually usable, so the same config runs on a laptop and a workstation.
    #[allow(deprecated)] // burn-tch is the chosen backend until kiln moves off LibTorch.
    pub fn device(self) -> Device {
        match self.resolve() {
            Self::Cuda(index) => Device::libtorch_cuda(index),
            Self::Cpu | Self::Auto => Device::libtorch(),
        }
    }

    /// `Auto` made concrete; explicit choices are kept as they are.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if cuda_available() => Self::Cuda(0),
            Self::Auto => Self::Cpu,
            explicit => explicit,
        }
    }
}

/// A stage's `device` and `threads` settings applied: the thread count set, the
/// device parsed.
pub fn configure(device: &str, threads: usize) -> Result<DeviceSpec, DeviceError> {
    set_threads(threads);
    device.parse()
}

/// Sets LibTorch's CPU (OpenMP) thread count (0 keeps LibTorch's choice: all
/// cores), and keeps the memory its tensors free for reuse
/// ([`kiln_torch_ops::reuse_freed_memory`]): every stage that runs a model calls this first.
pub fn set_threads(threads: usize) {
    kiln_torch_ops::reuse_freed_memory();
    if threads > 0 {
        tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
    }
}

/// LibTorch's CPU thread count on the calling thread.
pub fn threads() -> usize {
    usize::try_from(tch::get_num_threads()).unwrap_or(1)
}

/// A server's CPU threads: LibTorch's parallel kernels run on its inference
/// thread only; every other thread (start-up, model loading, a reload while
/// serving) runs its LibTorch work serially.
///
/// Why: libgomp gives each thread that runs a parallel kernel a pool of
/// helpers, and once there are more of those than cores every helper sleeps
/// as soon as its kernel ends, so each of a forward pass's few hundred kernels
/// wakes its helpers again through the OS. On a 2-core VM a one-text request
/// took 14.8 ms (fp32) and 10.7 ms (int8) that way, 7.0 and 2.9 ms with one
/// pool. (Running one-text batches serially instead was slower: 10.3 and 3.3 ms.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceThreads {
    threads: usize,
}

impl InferenceThreads {
    /// After [`configure`], on the thread that called it: keeps its count for
    /// the inference thread and makes one thread the default of every other
    /// (the caller's now, new ones through LibTorch's own per-thread start-up).
    pub fn reserve() -> Self {
        let threads = threads();
        // Without a per-thread count (LibTorch's OpenMP runtime not found),
        // every thread keeps the configured one, as before.
        if kiln_torch_ops::set_local_threads(threads).is_some() {
            tch::set_num_threads(1);
        }
        Self { threads }
    }

    /// On the inference thread, before its first batch: gives it the count.
    pub fn take(self) {
        kiln_torch_ops::set_local_threads(self.threads);
    }

    /// The count the inference thread runs on.
    pub fn count(self) -> usize {
        self.threads
    }
}

/// Whether `spec`'s device multiplies bf16 matrices fast: a CPU with AVX-512
/// BF16 or AMX (oneDNN's bf16 kernels; elsewhere LibTorch emulates bf16,
/// slower than fp32), a GPU with compute capability 8.0 or later.
pub fn fast_bf16(spec: DeviceSpec) -> bool {
    if kiln_core::test_hooks::hide_bf16() {
        return false;
    }
    match spec.resolve() {
        DeviceSpec::Cuda(_) => kiln_torch_ops::cuda_bf16(),
        DeviceSpec::Cpu | DeviceSpec::Auto => {
            let cpu = kiln_torch_ops::cpu_bf16();
            cpu.avx512_bf16 || cpu.amx
        }
    }
}

/// A stage's `precision` setting made concrete for `spec`'s device: `auto`
/// resolved, an explicit `bf16` refused where the device has no fast bf16.
pub fn precision(requested: Precision, spec: DeviceSpec) -> Result<Precision, PrecisionError> {
    let spec = spec.resolve();
    let device = match spec {
        DeviceSpec::Cuda(index) => format!("cuda:{index}"),
        DeviceSpec::Cpu | DeviceSpec::Auto => "this CPU".to_owned(),
    };
    requested.resolve(|| fast_bf16(spec), &device)
}

/// An inference stage's `precision` made concrete: as [`precision`], except
/// that `auto` gives way to int8 (whose non-quantized parts run in fp32).
pub fn inference_precision(
    requested: Precision,
    quantize: kiln_core::Quantize,
    spec: DeviceSpec,
) -> Result<Precision, PrecisionError> {
    if quantize == kiln_core::Quantize::Int8 && requested == Precision::Auto {
        return Ok(Precision::Fp32);
    }
    precision(requested, spec)
}

/// Whether LibTorch was built with CUDA and sees at least one GPU.
pub fn cuda_available() -> bool {
    tch::Cuda::is_available()
}

/// The LibTorch tensor under a burn tensor, for the kernels burn does not reach
/// (kiln-torch-ops). Fails only if the backend is not burn-tch.
#[allow(deprecated)] // burn-tch is the chosen backend until kiln moves off LibTorch.
pub(crate) fn libtorch<const D: usize>(tensor: Tensor<D>) -> Result<tch::Tensor, String> {
    tensor.try_into_primitive::<LibTorch>().map(|primitive| primitive.tensor).map_err(|error| format!("{error:?}"))
}

/// A LibTorch tensor back as a burn tensor.
#[allow(deprecated)]
pub(crate) fn from_libtorch<const D: usize>(tensor: tch::Tensor) -> Tensor<D> {
    Tensor::from_primitive::<LibTorch>(TchTensor::new(tensor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    #[test]
    fn parses_every_spelling_the_cli_accepts() {
        assert_eq!("auto".parse(), Ok(DeviceSpec::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!("tpu".parse::<DeviceSpec>(), Err(DeviceError::Unknown("tpu".into())));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(1).to_string().parse(), Ok(DeviceSpec::Cuda(1)));
    }

    /// The workspace links and runs LibTorch: a real matmul on the LibTorch CPU device.
    #[test]
    fn libtorch_cpu_matmul_runs() {
        let device = DeviceSpec::Cpu.device();
        let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        let b = Tensor::<2>::from_floats([[5.0, 6.0], [7.0, 8.0]], &device);
        let product = a.matmul(b).into_data().try_to_vec::<f32>().expect("f32 data");
        assert_eq!(product, vec![19.0, 22.0, 43.0, 50.0]);
    }
}
