// The device code of fastmlp's CUDA elementwise kernels and reductions (see elementwise.cu), kept
// apart from the host wrappers so that tests/cuda can run it on the CPU (cuda_emulation.h).
#pragma once
#include <cstdint>

#include "fastmlp/cuda_elementwise.h"  // SgdOptions, SgdParam
#include "fastmlp/optimizer.h"          // sgd_step_scalar: the SGD rule

namespace fastmlp::cuda::elementwise_impl {

constexpr int kThreads = 256;

// Sum of v over the block, in a fixed tree order; the result is valid in thread 0.
template <int THREADS>
__device__ double block_sum(double v, double* sm) {
    sm[threadIdx.x] = v;
    __syncthreads();
#pragma unroll
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) sm[threadIdx.x] += sm[threadIdx.x + s];
        __syncthreads();
    }
    return sm[0];
}

// out (B,C) = inp (B,C) + bias (C). grid.x over columns, grid.y (strided) over rows.
__global__ void bias_forward_kernel(float* out, const float* inp, const float* bias, int64_t B,
                                    int64_t C) {
    const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const float b = bias[c];
    for (int64_t r = blockIdx.y; r < B; r += gridDim.y) out[r * C + c] = inp[r * C + c] + b;
}

// dbias (C) = column sums of dout (B,C). Block (32 columns x 16 row lanes): lane ty sums rows
// ty, ty+16, ... in double, then the 16 partials are added in order.
constexpr int kBiasCols = 32, kBiasRows = 16;
__global__ void bias_backward_kernel(float* dbias, const float* dout, int64_t B, int64_t C,
                                     bool accumulate) {
    __shared__ double part[kBiasRows][kBiasCols + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = int64_t(blockIdx.x) * kBiasCols + tx;
    double s = 0.0;
    if (c < C)
        for (int64_t r = ty; r < B; r += kBiasRows) s += double(dout[r * C + c]);
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < C) {
        double total = 0.0;
        for (int i = 0; i < kBiasRows; ++i) total += part[i][tx];
        dbias[c] = accumulate ? float(double(dbias[c]) + total) : float(total);
    }
}

// out (n) = relu(inp (n)), NaN stays NaN.
__global__ void relu_forward_kernel(float* out, const float* inp, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const float v = inp[i];
        out[i] = v > 0.0f ? v : (v != v ? v : 0.0f);
    }
}

// dinp (n) = dout (n) * (out (n) > 0).
__global__ void relu_backward_kernel(float* dinp, const float* dout, const float* out, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

// First pass of the MSE: partial (gridDim.x) = per-block sums of (pred - target)^2 over a
// grid-stride walk of pred (n), target (n), in double. With final set (one block), it writes the
// mean into *loss / *loss64 instead.
__global__ void mse_forward_kernel(double* partial, float* loss, double* loss64, const float* pred,
                                   const float* target, int64_t n, bool final) {
    __shared__ double sm[kThreads];
    double s = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const double d = double(pred[i]) - double(target[i]);
        s += d * d;
    }
    const double total = block_sum<kThreads>(s, sm);
    if (threadIdx.x != 0) return;
    if (!final) {
        partial[blockIdx.x] = total;
    } else {
        const double mean = total / double(n);  // n == 0: 0/0 = NaN, as torch's empty mean
        *loss = float(mean);
        if (loss64) *loss64 = mean;
    }
}

// Second pass: *loss = sum of partial (count), in order of a fixed tree, / n.
__global__ void mse_finish_kernel(float* loss, double* loss64, const double* partial, int count,
                                  int64_t n) {
    __shared__ double sm[kThreads];
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += kThreads) s += partial[i];
    const double total = block_sum<kThreads>(s, sm);
    if (threadIdx.x == 0) {
        const double mean = total / double(n);
        *loss = float(mean);
        if (loss64) *loss64 = mean;
    }
}

// dpred (n) = scale * (pred (n) - target (n)).
__global__ void mse_backward_kernel(float* dpred, const float* pred, const float* target,
                                    int64_t n, float scale) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        dpred[i] = scale * (pred[i] - target[i]);
}

// torch.optim.SGD on element i: optimizer.h's sgd_step_scalar, the rule the CPU kernels run.
// buf may be null when momentum == 0 (the rule never touches it then).
__device__ __forceinline__ void sgd_update(float* param, const float* grad, float* buf, int64_t i,
                                           const SgdOptions& o, bool first_step) {
    float unused = 0.0f;
    float& b = buf ? buf[i] : unused;
    sgd_step_scalar(param[i], grad[i], b, o, first_step);
}

// param (n) -= lr * step(grad (n), buf (n)).
__global__ void sgd_step_kernel(float* param, const float* grad, float* buf, int64_t n,
                                const SgdOptions o, bool first_step) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        sgd_update(param, grad, buf, i, o, first_step);
}

// The same for params (count) descriptors: blockIdx.y (strided) picks the parameter.
__global__ void sgd_step_many_kernel(const SgdParam* params, int count, const SgdOptions o,
                                     bool first_step) {
    for (int q = blockIdx.y; q < count; q += gridDim.y) {
        const SgdParam p = params[q];
        for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n;
             i += int64_t(gridDim.x) * blockDim.x)
            sgd_update(p.param, p.grad, p.buf, i, o, first_step);
    }
}

// sgd_step_many_kernel guarded by a device flag, for training loops that never wait for the host:
// nothing happens when *stop is set (an earlier batch stopped training); when the batch loss
// *loss is not finite and !allow_nonfinite, *stop = tag (> 0) instead of a step. Every block
// decides from the same two values, so the step is all or nothing.
__global__ void sgd_step_guarded_kernel(const SgdParam* params, int count, const SgdOptions o,
                                        bool first_step, const double* loss, int64_t* stop,
                                        int64_t tag, bool allow_nonfinite) {
    if (*stop) return;
    const double l = *loss;
    if (!allow_nonfinite && !(l - l == 0.0)) {  // NaN or +-inf (x - x is 0 exactly when finite)
        if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *stop = tag;
        return;
    }
    for (int q = blockIdx.y; q < count; q += gridDim.y) {
        const SgdParam p = params[q];
        for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n;
             i += int64_t(gridDim.x) * blockDim.x)
            sgd_update(p.param, p.grad, p.buf, i, o, first_step);
    }
}

}  // namespace fastmlp::cuda::elementwise_impl
