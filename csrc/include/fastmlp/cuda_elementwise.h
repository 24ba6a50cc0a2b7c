// fastmlp CUDA elementwise kernels and reductions (bias, ReLU, MSE, SGD): the same semantics as
// elementwise.h (read it), on device pointers, each launched on `stream` (nullptr = the legacy
// default stream). Nothing here synchronises the device; results stay on the device.
// Reductions are deterministic: fixed-order trees in double, no float atomics.
// Kernels assume valid input (the bindings check it). CUDA errors throw std::runtime_error.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastmlp/elementwise.h"  // SgdOptions

namespace fastmlp::cuda {

// out (B,C) = inp (B,C) + bias (C) per row. out may equal inp.
void bias_forward(float* out, const float* inp, const float* bias, int64_t B, int64_t C,
                  cudaStream_t stream);

// dbias (C) = column sum of dout (B,C), in double, fixed order. accumulate: += instead of =.
void bias_backward(float* dbias, const float* dout, int64_t B, int64_t C, bool accumulate,
                   cudaStream_t stream);

// out (n) = max(inp, 0), NaN stays NaN. out may equal inp.
void relu_forward(float* out, const float* inp, int64_t n, cudaStream_t stream);

// dinp (n) = dout * (out > 0). dinp may equal dout.
void relu_backward(float* dinp, const float* dout, const float* out, int64_t n, cudaStream_t stream);

// *loss (a device float, and *loss64 a device double when not null) = mean over n of
// (pred - target)^2, accumulated in double in a fixed order. n == 0 gives NaN.
void mse_forward(float* loss, double* loss64, const float* pred, const float* target, int64_t n,
                 cudaStream_t stream);

// The number of double partial sums mse_forward uses for n elements (1: none, one block).
int mse_forward_partials(int64_t n);

// mse_forward with caller-provided scratch: partial holds mse_forward_partials(n) doubles (it may
// be null when that is 1). Allocates nothing.
void mse_forward_ws(float* loss, double* loss64, const float* pred, const float* target, int64_t n,
                    double* partial, cudaStream_t stream);

// dpred (n) = scale * (pred - target). dpred may equal pred.
void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float scale,
                  cudaStream_t stream);

// One parameter of an SGD step (see SgdParam below). buf may be null only when momentum == 0.
struct SgdParam {
    float* param;
    const float* grad;
    float* buf;
    int64_t n;
};

// One torch.optim.SGD step of one parameter (elementwise.h sgd_step), in place.
void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n,
              const SgdOptions& opt, bool first_step, cudaStream_t stream);

// The same step for `count` parameters in ONE launch. `params` is a DEVICE array of `count`
// descriptors; max_n is the largest n among them (sizes the grid).
void sgd_step_many(const SgdParam* params, int count, int64_t max_n, const SgdOptions& opt,
                   bool first_step, cudaStream_t stream);

// sgd_step_many from a HOST array of descriptors: copies them to stream-ordered scratch memory
// (cudaMallocAsync) and launches once. The host array may be freed when this returns.
void sgd_step_list(const SgdParam* host_params, int count, const SgdOptions& opt, bool first_step,
                   cudaStream_t stream);

// sgd_step_many guarded by device memory, for loops that never wait for the host: skipped when
// *stop != 0; when *loss (a device double, the batch loss) is NaN/inf and !allow_nonfinite, sets
// *stop = tag (> 0) instead of stepping. Otherwise exactly sgd_step_many.
void sgd_step_guarded(const SgdParam* params, int count, int64_t max_n, const SgdOptions& opt,
                      bool first_step, const double* loss, int64_t* stop, int64_t tag,
                      bool allow_nonfinite, cudaStream_t stream);

}  // namespace fastmlp::cuda
