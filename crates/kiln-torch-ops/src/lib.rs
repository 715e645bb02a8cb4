//! LibTorch operators that tch does not bind, through a small C++ bridge:
//! dynamic int8 linear layers for CPU inference (fbgemm), the fused AdamW step
//! ([`fused_adamw`]) that `torch.optim.AdamW(fused=True)` runs, LayerNorm's
//! backward ([`layer_norm_backward`]) for kiln-model's native LayerNorm;
//! whether the CPU ([`cpu_bf16`]) or GPU ([`cuda_bf16`]) multiplies bf16 fast;
//! and two process settings: [`reuse_freed_memory`], the allocator setting LibTorch's
//! CPU tensors want, and [`set_local_threads`], a thread count for one thread.
//!
//! ## int8
//!
//! [`Int8Linear::pack`] quantizes a float weight once, per output channel, and
//! packs it for fbgemm; [`Int8Linear::forward`] quantizes each input from its
//! own range, multiplies in int8 with int32 accumulation and returns floats.
//! That is exactly `torch.ao.quantization.quantize_dynamic` with per-channel
//! weights, run by the same LibTorch ops, so kiln's int8 model is the one a
//! PyTorch user would get. tch does not bind these ops (they live in the
//! `quantized::` operator namespace, not ATen's).
//!
//! The only crate in kiln with `unsafe`: the calls into the bridge, each with its reason.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::{self, NonNull};

use tch::Tensor;

unsafe extern "C" {
    fn kiln_int8_pack(weight: *const c_void, bias: *const c_void, error: *mut *mut c_char) -> *mut c_void;
    fn kiln_int8_linear(
        packed: *mut c_void,
        input: *const c_void,
        reduce_range: bool,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn kiln_int8_drop(packed: *mut c_void);
    #[allow(clippy::too_many_arguments)]
    fn kiln_adamw_step(
        param: *const c_void,
        grad: *const c_void,
        exp_avg: *const c_void,
        exp_avg_sq: *const c_void,
        step: f64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        param_out: *mut *mut c_void,
        exp_avg_out: *mut *mut c_void,
        exp_avg_sq_out: *mut *mut c_void,
        error: *mut *mut c_char,
    ) -> c_int;
    fn kiln_free_error(error: *mut c_char);
    fn kiln_set_local_threads(threads: c_int) -> c_int;
    fn kiln_cpu_bf16_features() -> c_int;
    fn kiln_cuda_bf16() -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn kiln_layer_norm_backward(
        grad_out: *const c_void,
        input: *const c_void,
        mean: *const c_void,
        rstd: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        want_input: bool,
        want_weight: bool,
        want_bias: bool,
        grad_input: *mut *mut c_void,
        grad_weight: *mut *mut c_void,
        grad_bias: *mut *mut c_void,
        error: *mut *mut c_char,
    ) -> c_int;
}

/// LibTorch refused to quantize or run a layer.
#[derive(Debug, thiserror::Error)]
#[error("int8 linear layer: {0}")]
pub struct QuantError(String);

/// Keeps memory that LibTorch's CPU tensors free for the next ones. LibTorch
/// allocates them with glibc's malloc, which by default hands anything above a
/// few hundred KiB its own fresh mmap: zeroed page by page on first touch,
/// unmapped on free, again for every activation of every step. Served from the
/// heap instead and not trimmed back, a training step on MiniLM took 13% less
/// time (225 -> 196 ms, batch 32 x 16) and an int8 batch 34% less, at the
/// same peak RSS. The threshold stops at 32 MiB (glibc's ceiling), and the
/// word embeddings' dense gradient (30,522 x 384 floats, 47 MB) still got a
/// fresh mmap every step: 9% of a bf16 step in `perf` was the kernel clearing
/// its pages. With mmap off altogether every block comes from the heap: a bf16
/// step 7% faster (178.5 -> 166.8 ms, interleaved runs), fp32 3%, same peak RSS.
/// Process-wide; call once, before the model runs. A no-op off glibc.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's thresholds; any values are valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// Sets how many CPU threads LibTorch's kernels (its own and MKL's) use when
/// called from this thread, and from this thread only; returns the count it
/// replaces, or `None` if LibTorch's OpenMP runtime was not found (then
/// nothing changed). `at::set_num_threads` sets the process-wide default as
/// well, so it cannot keep one thread parallel and the others serial, which
/// is what a server wants (kiln-model's `device::InferenceThreads` says why).
pub fn set_local_threads(threads: usize) -> Option<usize> {
    let threads = c_int::try_from(threads.max(1)).unwrap_or(c_int::MAX);
    // SAFETY: the bridge only sets thread-local counts (OpenMP's and MKL's).
    let previous = unsafe { kiln_set_local_threads(threads) };
    usize::try_from(previous).ok()
}

/// The CPU's bf16 matrix-product instructions, as LibTorch's own checks see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuBf16 {
    /// AVX-512 BF16: bf16 dot products at twice fp32's rate.
    pub avx512_bf16: bool,
    /// AMX tiles: bf16 matrix products at many times fp32's rate.
    pub amx: bool,
}

/// What this CPU offers bf16 matrix products (oneDNN picks its kernels from the same).
pub fn cpu_bf16() -> CpuBf16 {
    // SAFETY: reads CPU features through cpuinfo; enabling AMX is a permission
    // request to the kernel for this process (arch_prctl), nothing else.
    let features = unsafe { kiln_cpu_bf16_features() };
    CpuBf16 { avx512_bf16: features & 1 != 0, amx: features & 2 != 0 }
}

/// Whether the current CUDA device has bf16 tensor cores (compute capability
/// 8.0 or later); false without CUDA.
pub fn cuda_bf16() -> bool {
    // SAFETY: a query of LibTorch's CUDA hooks; exceptions are caught in the bridge.
    unsafe { kiln_cuda_bf16() == 1 }
}

/// LibTorch refused a fused AdamW step (mismatched shapes, dtypes or devices).
#[derive(Debug, thiserror::Error)]
#[error("fused AdamW step: {0}")]
pub struct AdamWError(String);

/// One AdamW step's settings, as `torch.optim.AdamW` names them; `step` counts
/// from 1 and sets the bias corrections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub step: u64,
    pub lr: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub weight_decay: f64,
    pub epsilon: f64,
}

/// One AdamW step of `param` with `grad`, in one pass of LibTorch's fused
/// kernel; returns the parameter and the two moments after it. The inputs are
/// taken by value: when nothing else holds them they are updated in place,
/// else copies are (a snapshot sharing their storage keeps its values).
pub fn fused_adamw(
    param: Tensor,
    grad: &Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    settings: &AdamWStep,
) -> Result<(Tensor, Tensor, Tensor), AdamWError> {
    let (mut param_out, mut exp_avg_out, mut exp_avg_sq_out) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    let mut error = ptr::null_mut();
    // SAFETY: the four tensors outlive the call (C_tensor is an at::Tensor*); on
    // success the bridge sets the three outputs to fresh heap tensors.
    let failed = unsafe {
        kiln_adamw_step(
            param.as_ptr().cast(),
            grad.as_ptr().cast(),
            exp_avg.as_ptr().cast(),
            exp_avg_sq.as_ptr().cast(),
            settings.step as f64,
            settings.lr,
            settings.beta_1,
            settings.beta_2,
            settings.weight_decay,
            settings.epsilon,
            &mut param_out,
            &mut exp_avg_out,
            &mut exp_avg_sq_out,
            &mut error,
        )
    };
    drop((param, exp_avg, exp_avg_sq));
    if failed != 0 {
        return Err(AdamWError(take_message(error)));
    }
    // SAFETY: each is a fresh heap at::Tensor that we now own.
    Ok(unsafe {
        (
            Tensor::from_ptr(param_out.cast()),
            Tensor::from_ptr(exp_avg_out.cast()),
            Tensor::from_ptr(exp_avg_sq_out.cast()),
        )
    })
}

/// What `native_layer_norm` saved for its backward: the input, and the mean
/// and reciprocal standard deviation of each row.
#[derive(Debug)]
pub struct LayerNormSaved {
    pub input: Tensor,
    pub mean: Tensor,
    pub rstd: Tensor,
    pub weight: Tensor,
    pub bias: Tensor,
}

/// LibTorch refused a LayerNorm backward.
#[derive(Debug, thiserror::Error)]
#[error("LayerNorm backward: {0}")]
pub struct LayerNormError(String);

/// Gradients of LayerNorm over the last dimension with respect to its input,
/// weight and bias, each computed only when `wanted`: LibTorch's
/// `native_layer_norm_backward`, which tch does not bind.
pub fn layer_norm_backward(
    grad_out: &Tensor,
    saved: &LayerNormSaved,
    wanted: [bool; 3],
) -> Result<[Option<Tensor>; 3], LayerNormError> {
    let mut out = [ptr::null_mut(); 3];
    let mut error = ptr::null_mut();
    let [gi, gw, gb] = &mut out;
    // SAFETY: every tensor outlives the call; the bridge sets each wanted output
    // to a fresh heap at::Tensor and the others to null.
    let failed = unsafe {
        kiln_layer_norm_backward(
            grad_out.as_ptr().cast(),
            saved.input.as_ptr().cast(),
            saved.mean.as_ptr().cast(),
            saved.rstd.as_ptr().cast(),
            saved.weight.as_ptr().cast(),
            saved.bias.as_ptr().cast(),
            wanted[0],
            wanted[1],
            wanted[2],
            gi,
            gw,
            gb,
            &mut error,
        )
    };
    if failed != 0 {
        return Err(LayerNormError(take_message(error)));
    }
    // SAFETY: non-null outputs are fresh heap tensors that we now own.
    Ok(out.map(|tensor| (!tensor.is_null()).then(|| unsafe { Tensor::from_ptr(tensor.cast()) })))
}

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
        let packed = unsafe { kiln_int8_pack(weight.as_ptr().cast(), bias, &mut error) };
        let packed = NonNull::new(packed).ok_or_else(|| QuantError(take_message(error)))?;
        Ok(Self { packed, in_features, out_features })
    }

    /// `input @ weightᵀ + bias` over the last dimension of `input` (any rank >= 2).
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, QuantError> {
        let mut error = ptr::null_mut();
        // reduce_range as torch.ao's dynamic Linear sets it: 7-bit activations keep
        // AVX2's 16-bit pairwise sums from saturating on CPUs without VNNI.
        // SAFETY: `packed` came from kiln_int8_pack and lives as long as `self`.
        let output = unsafe { kiln_int8_linear(self.packed.as_ptr(), input.as_ptr().cast(), true, &mut error) };
        if output.is_null() {
            return Err(QuantError(take_message(error)));
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
        // SAFETY: `packed` came from kiln_int8_pack and is dropped once.
        unsafe { kiln_int8_drop(self.packed.as_ptr()) }
    }
}

fn take_message(error: *mut c_char) -> String {
    if error.is_null() {
        return "LibTorch failed without a message".to_owned();
    }
    // SAFETY: the bridge sets `error` to a NUL-terminated strdup'd string.
    let text = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { kiln_free_error(error) };
    text
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

    fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Two steps of the fused kernel against AdamW written out in tensor ops,
    /// as torch's single-tensor AdamW computes it.
    #[test]
    fn fused_adamw_is_adamw() {
        tch::manual_seed(11);
        let options = (Kind::Float, Device::Cpu);
        let start = Tensor::randn([7, 5], options);
        let grads = [Tensor::randn([7, 5], options), Tensor::randn([7, 5], options)];
        let (lr, beta_1, beta_2, weight_decay, epsilon) = (1e-2, 0.9, 0.999, 0.1, 1e-8);

        let (mut param, mut m, mut v) = (start.copy(), start.zeros_like(), start.zeros_like());
        for (step, grad) in grads.iter().enumerate() {
            let settings = AdamWStep { step: step as u64 + 1, lr, beta_1, beta_2, weight_decay, epsilon };
            (param, m, v) = fused_adamw(param, grad, m, v, &settings).expect("steps");
        }

        let (mut want, mut want_m, mut want_v) = (start.copy(), start.zeros_like(), start.zeros_like());
        for (step, grad) in grads.iter().enumerate() {
            let t = step as i32 + 1;
            want = &want * (1.0 - lr * weight_decay);
            want_m = &want_m * beta_1 + grad * (1.0 - beta_1);
            want_v = &want_v * beta_2 + grad * grad * (1.0 - beta_2);
            let corrected_m = &want_m / (1.0 - beta_1.powi(t));
            let corrected_v = &want_v / (1.0 - beta_2.powi(t));
            want = &want - corrected_m / (corrected_v.sqrt() + epsilon) * lr;
        }
        assert!(max_difference(&param, &want) < 1e-6, "parameter off by {}", max_difference(&param, &want));
        assert!(max_difference(&m, &want_m) < 1e-6);
        assert!(max_difference(&v, &want_v) < 1e-6);
        assert!(max_difference(&param, &start) > 1e-3, "the step moved the parameter");
    }

    /// A parameter whose storage something else holds (a model snapshot) is
    /// updated on a copy; one held by nothing else is updated in place.
    #[test]
    fn shared_tensors_are_copied_unshared_ones_updated_in_place() {
        let options = (Kind::Float, Device::Cpu);
        let settings = AdamWStep { step: 1, lr: 0.1, beta_1: 0.9, beta_2: 0.999, weight_decay: 0.0, epsilon: 1e-8 };
        let param = Tensor::ones([4], options);
        let snapshot = param.shallow_clone();
        let grad = Tensor::ones([4], options);
        let (updated, _, _) =
            fused_adamw(param, &grad, grad.zeros_like(), grad.zeros_like(), &settings).expect("steps");
        assert_eq!(snapshot.double_value(&[0]), 1.0, "the snapshot kept its value");
        assert!((updated.double_value(&[0]) - 0.9).abs() < 1e-6, "lr 0.1 times a unit step");

        let param = Tensor::ones([4], options);
        let address = param.data_ptr();
        let (updated, _, _) =
            fused_adamw(param, &grad, grad.zeros_like(), grad.zeros_like(), &settings).expect("steps");
        assert_eq!(updated.data_ptr(), address, "no copy when nothing else holds the parameter");
    }

    #[test]
    fn a_gradient_of_another_shape_is_an_error_not_a_crash() {
        let options = (Kind::Float, Device::Cpu);
        let settings = AdamWStep { step: 1, lr: 0.1, beta_1: 0.9, beta_2: 0.999, weight_decay: 0.0, epsilon: 1e-8 };
        let param = Tensor::ones([4], options);
        let error =
            fused_adamw(param.copy(), &Tensor::ones([3], options), param.zeros_like(), param.zeros_like(), &settings)
                .expect_err("4 != 3");
        assert!(error.to_string().starts_with("fused AdamW step"), "{error}");
    }

    /// After the call a 4 MiB tensor comes from the heap, not from an mmap of
    /// its own (glibc counts those in `hblks`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_is_reused_not_unmapped() {
        reuse_freed_memory();
        // SAFETY: mallinfo2 only reads glibc's counters.
        let mapped = || unsafe { libc::mallinfo2() }.hblks;
        let before = mapped();
        let tensor = Tensor::ones([1 << 20], (Kind::Float, Device::Cpu));
        // <=: another test may free an mmap made before the call meanwhile.
        assert!(mapped() <= before, "a 4 MiB tensor got an mmap of its own");
        drop(tensor);
    }

    /// The count applies to the thread that set it: LibTorch on that thread
    /// reports it, and a thread started afterwards still gets the process's.
    #[test]
    fn local_thread_count_stays_on_its_thread() {
        tch::set_num_threads(2);
        let (local, replaced) = std::thread::spawn(|| {
            let replaced = set_local_threads(1);
            (tch::get_num_threads(), replaced)
        })
        .join()
        .expect("the thread ran");
        assert_eq!((local, replaced), (1, Some(2)));
        let fresh = std::thread::spawn(tch::get_num_threads).join().expect("the thread ran");
        assert_eq!(fresh, 2, "a new thread takes the process-wide count");
        // Back up again on the same thread.
        let restored = std::thread::spawn(|| {
            set_local_threads(1);
            set_local_threads(2);
            tch::get_num_threads()
        })
        .join()
        .expect("the thread ran");
        assert_eq!(restored, 2);
    }
}
