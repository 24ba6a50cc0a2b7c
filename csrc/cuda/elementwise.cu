// fastmlp CUDA elementwise kernels and reductions: bias, ReLU, MSE, SGD.
// Contract: csrc/include/fastmlp/cuda_elementwise.h. llm.c style: <op>_forward/_backward kernels,
// outputs first, a shape comment on each. Elementwise kernels are grid-stride loops; reductions
// are fixed-order trees in double (no atomics), so results are deterministic.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "cuda_check.cuh"
#include "fastmlp/cuda_elementwise.h"

namespace fastmlp::cuda {

namespace {

using detail::ceil_div;
using detail::check;
using detail::check_launch;

constexpr int kThreads = 256;

int grid_for(int64_t n, int threads = kThreads, int64_t max_blocks = 65535) {
    return int(std::min<int64_t>(std::max<int64_t>(ceil_div(n, threads), 1), max_blocks));
}

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

// torch.optim.SGD on element i (same expression order as the CPU kernel).
__device__ __forceinline__ void sgd_update(float* param, const float* grad, float* buf, int64_t i,
                                           const SgdOptions& o, bool first_step) {
    float g = o.maximize ? -grad[i] : grad[i];
    if (o.weight_decay != 0.0f) g += o.weight_decay * param[i];
    if (o.momentum != 0.0f) {
        const float b = first_step ? g : o.momentum * buf[i] + (1.0f - o.dampening) * g;
        buf[i] = b;
        g = o.nesterov ? g + o.momentum * b : b;
    }
    param[i] -= o.lr * g;
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

}  // namespace

void bias_forward(float* out, const float* inp, const float* bias, int64_t B, int64_t C,
                  cudaStream_t stream) {
    if (B <= 0 || C <= 0) return;
    const dim3 grid(unsigned(ceil_div(C, kThreads)), unsigned(std::min<int64_t>(B, 65535)));
    bias_forward_kernel<<<grid, kThreads, 0, stream>>>(out, inp, bias, B, C);
    check_launch("bias_forward_kernel");
}

void bias_backward(float* dbias, const float* dout, int64_t B, int64_t C, bool accumulate,
                   cudaStream_t stream) {
    if (C <= 0) return;
    const dim3 block(kBiasCols, kBiasRows);
    bias_backward_kernel<<<unsigned(ceil_div(C, kBiasCols)), block, 0, stream>>>(dbias, dout, B, C,
                                                                                 accumulate);
    check_launch("bias_backward_kernel");
}

void relu_forward(float* out, const float* inp, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    relu_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, inp, n);
    check_launch("relu_forward_kernel");
}

void relu_backward(float* dinp, const float* dout, const float* out, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    relu_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(dinp, dout, out, n);
    check_launch("relu_backward_kernel");
}

void mse_forward(float* loss, double* loss64, const float* pred, const float* target, int64_t n,
                 cudaStream_t stream) {
    // The number of partials depends on n only (deterministic): ~8 elements per thread, <= 1024.
    const int blocks = int(std::min<int64_t>(std::max<int64_t>(ceil_div(n, kThreads * 8), 1), 1024));
    if (blocks == 1) {
        mse_forward_kernel<<<1, kThreads, 0, stream>>>(nullptr, loss, loss64, pred, target, n, true);
        check_launch("mse_forward_kernel");
        return;
    }
    detail::Scratch partial(size_t(blocks) * sizeof(double), stream);
    mse_forward_kernel<<<blocks, kThreads, 0, stream>>>(partial.as<double>(), nullptr, nullptr, pred,
                                                        target, n, false);
    check_launch("mse_forward_kernel");
    mse_finish_kernel<<<1, kThreads, 0, stream>>>(loss, loss64, partial.as<double>(), blocks, n);
    check_launch("mse_finish_kernel");
}

void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float scale,
                  cudaStream_t stream) {
    if (n <= 0) return;
    mse_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(dpred, pred, target, n, scale);
    check_launch("mse_backward_kernel");
}

void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n,
              const SgdOptions& opt, bool first_step, cudaStream_t stream) {
    if (n <= 0) return;
    sgd_step_kernel<<<grid_for(n), kThreads, 0, stream>>>(param, grad, momentum_buf, n, opt,
                                                          first_step);
    check_launch("sgd_step_kernel");
}

void sgd_step_many(const SgdParam* params, int count, int64_t max_n, const SgdOptions& opt,
                   bool first_step, cudaStream_t stream) {
    if (count <= 0 || max_n <= 0) return;
    const dim3 grid(unsigned(grid_for(max_n, kThreads, 1024)), unsigned(std::min(count, 65535)));
    sgd_step_many_kernel<<<grid, kThreads, 0, stream>>>(params, count, opt, first_step);
    check_launch("sgd_step_many_kernel");
}

void sgd_step_list(const SgdParam* host_params, int count, const SgdOptions& opt, bool first_step,
                   cudaStream_t stream) {
    if (count <= 0) return;
    int64_t max_n = 0;
    for (int i = 0; i < count; ++i) max_n = std::max(max_n, host_params[i].n);
    if (max_n <= 0) return;
    const size_t bytes = size_t(count) * sizeof(SgdParam);
    detail::Scratch table(bytes, stream);
    // Pageable source: the runtime stages it before returning, so host_params may go away after.
    check(cudaMemcpyAsync(table.as<void>(), host_params, bytes, cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (sgd descriptors)");
    sgd_step_many(table.as<SgdParam>(), count, max_n, opt, first_step, stream);
}

}  // namespace fastmlp::cuda
