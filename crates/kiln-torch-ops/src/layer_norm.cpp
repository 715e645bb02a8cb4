// The backward of LayerNorm over the last dimension, LibTorch's own kernel
// (what torch's autograd runs for nn.LayerNorm). tch binds the forward,
// native_layer_norm, but not this.

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>

extern "C" {

// Returns 0 and the gradients of the input, weight and bias (each only where
// `wanted` says so; the others come back null), or 1 and a strdup'd message.
int kiln_layer_norm_backward(const at::Tensor* grad_out, const at::Tensor* input, const at::Tensor* mean,
                             const at::Tensor* rstd, const at::Tensor* weight, const at::Tensor* bias,
                             bool want_input, bool want_weight, bool want_bias, at::Tensor** grad_input,
                             at::Tensor** grad_weight, at::Tensor** grad_bias, char** error) {
    try {
        std::array<bool, 3> mask = {want_input, want_weight, want_bias};
        auto [gi, gw, gb] = at::native_layer_norm_backward(grad_out->contiguous(), input->contiguous(),
                                                           {input->size(-1)}, *mean, *rstd, *weight, *bias, mask);
        *grad_input = want_input ? new at::Tensor(std::move(gi)) : nullptr;
        *grad_weight = want_weight ? new at::Tensor(std::move(gw)) : nullptr;
        *grad_bias = want_bias ? new at::Tensor(std::move(gb)) : nullptr;
        return 0;
    } catch (const std::exception& e) {
        *error = strdup(e.what());
        return 1;
    }
}

}  // extern "C"
