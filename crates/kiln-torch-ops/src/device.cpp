// What the device's bf16 matrix products run on, as LibTorch itself sees it:
// its CPU feature checks (cpuinfo) and its CUDA hooks, which a CPU-only
// LibTorch answers with "no GPU".

#include <ATen/cpu/Utils.h>
#include <ATen/detail/CUDAHooksInterface.h>

extern "C" {

// Bit 0: AVX-512 BF16 instructions; bit 1: AMX tiles (initialised for this
// process when present, as oneDNN needs before its AMX kernels run).
int kiln_cpu_bf16_features() {
    int features = 0;
    if (at::cpu::is_avx512_bf16_supported()) {
        features |= 1;
    }
    if (at::cpu::is_amx_tile_supported() && at::cpu::init_amx()) {
        features |= 2;
    }
    return features;
}

// 1 when the current CUDA device has bf16 tensor cores (compute capability
// 8.0 or later), 0 otherwise, or without CUDA.
int kiln_cuda_bf16() {
    try {
        const auto& hooks = at::detail::getCUDAHooks();
        return hooks.hasCUDA() && hooks.supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

}  // extern "C"
