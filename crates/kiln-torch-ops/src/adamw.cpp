// One AdamW step for one parameter through LibTorch's fused kernel, the one
// torch.optim.AdamW(fused=True) runs: a single pass over the parameter, its
// gradient and both moments, where burn's AdamW makes about fourteen (one
// tensor op each). tch does not bind `_fused_adamw_`, hence this bridge.
//
// The parameter and the moments are updated in place when nothing else holds
// them (their tensor and storage are referenced once), else on a copy, so a
// model snapshot sharing a weight's storage never changes under the caller.

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>

namespace {

at::Tensor unshared(const at::Tensor& tensor) {
    // One handle (the caller's) on one tensor that alone uses its storage.
    if (tensor.use_count() == 1 && tensor.storage().use_count() == 1 && tensor.is_contiguous()) {
        return tensor;
    }
    return tensor.clone(at::MemoryFormat::Contiguous);
}

}  // namespace

extern "C" {

// On success returns 0 and sets the three outputs to fresh heap tensors (the
// updated parameter and moments); on failure returns 1 and a strdup'd message.
int kiln_adamw_step(const at::Tensor* param, const at::Tensor* grad, const at::Tensor* exp_avg,
                    const at::Tensor* exp_avg_sq, double step, double lr, double beta1, double beta2,
                    double weight_decay, double eps, at::Tensor** param_out, at::Tensor** exp_avg_out,
                    at::Tensor** exp_avg_sq_out, char** error) {
    try {
        // The kernel trusts its lists: a gradient or moment of another shape would
        // be read past its end, so check here.
        for (const at::Tensor* t : {grad, exp_avg, exp_avg_sq}) {
            TORCH_CHECK(t->sizes() == param->sizes(), "a tensor of shape ", t->sizes(), " for a parameter of shape ",
                        param->sizes());
            TORCH_CHECK(t->scalar_type() == param->scalar_type() && t->device() == param->device(),
                        "the gradient and moments must have the parameter's dtype and device");
        }
        at::Tensor p = unshared(*param);
        at::Tensor m = unshared(*exp_avg);
        at::Tensor v = unshared(*exp_avg_sq);
        at::Tensor g = grad->contiguous();
        at::Tensor state_step = at::full({}, step, p.options().dtype(at::kFloat));
        at::_fused_adamw_({p}, {g}, {m}, {v}, {}, {state_step}, lr, beta1, beta2, weight_decay, eps,
                          /*amsgrad=*/false, /*maximize=*/false, std::nullopt, std::nullopt);
        *param_out = new at::Tensor(std::move(p));
        *exp_avg_out = new at::Tensor(std::move(m));
        *exp_avg_sq_out = new at::Tensor(std::move(v));
        return 0;
    } catch (const std::exception& e) {
        *error = strdup(e.what());
        return 1;
    }
}

}  // extern "C"
