// Dynamic int8 linear layers through LibTorch's own quantized ops, as
// torch.ao.quantization.quantize_dynamic runs them: weights quantized once per
// output channel (symmetric qint8) and packed for fbgemm; activations quantized
// per call from their own range. tch binds neither op, so this is the bridge.
//
// Tensors cross as `at::Tensor*`, which is what tch's `C_tensor*` is. Errors are
// returned as a strdup'd message that the caller frees with kiln_free_error (here for
// every bridge file).

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

namespace {

using Packed = c10::intrusive_ptr<LinearPackedParamsBase>;

}  // namespace

extern "C" {

void* kiln_int8_pack(const at::Tensor* weight, const at::Tensor* bias, char** error) {
    try {
        at::Tensor w = weight->detach().to(at::kFloat).contiguous();
        TORCH_CHECK(w.dim() == 2, "an int8 linear layer's weight is [out, in], got ", w.sizes());
        // torch.ao's per-channel symmetric observer, to the digit: scale = absmax /
        // ((127 - -128) / 2), at least float epsilon, zero point 0.
        at::Tensor scales = (w.abs().amax({1}) / 127.5).clamp_min(std::numeric_limits<float>::epsilon()).to(at::kDouble);
        at::Tensor zero_points = at::zeros({w.size(0)}, at::kLong);
        at::Tensor quantized = at::quantize_per_channel(w, scales, zero_points, 0, at::kQInt8);
        std::optional<at::Tensor> b;
        if (bias != nullptr) {
            b = bias->detach().to(at::kFloat).contiguous();
        }
        static auto prepack = c10::Dispatcher::singleton()
                                  .findSchemaOrThrow("quantized::linear_prepack", "")
                                  .typed<Packed(at::Tensor, std::optional<at::Tensor>)>();
        return new Packed(prepack.call(quantized, b));
    } catch (const std::exception& e) {
        *error = strdup(e.what());
        return nullptr;
    }
}

at::Tensor* kiln_int8_linear(void* packed, const at::Tensor* input, bool reduce_range, char** error) {
    try {
        Packed& weights = *static_cast<Packed*>(packed);
        return new at::Tensor(weights->apply_dynamic(input->contiguous(), reduce_range));
    } catch (const std::exception& e) {
        *error = strdup(e.what());
        return nullptr;
    }
}

void kiln_int8_drop(void* packed) { delete static_cast<Packed*>(packed); }

void kiln_free_error(char* error) { free(error); }

}  // extern "C"
