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
#include "elementwise_kernels.cuh"
#include "fastmlp/cuda_elementwise.h"

namespace fastmlp::cuda {

namespace {

using namespace elementwise_impl;
using detail::ceil_div;
using detail::check;
using detail::check_launch;

int grid_for(int64_t n, int threads = kThreads, int64_t max_blocks = 65535) {
    return int(std::min<int64_t>(std::max<int64_t>(ceil_div(n, threads), 1), max_blocks));
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

int mse_forward_partials(int64_t n) {
    // The number of partials depends on n only (deterministic): ~8 elements per thread, <= 1024.
    return int(std::min<int64_t>(std::max<int64_t>(ceil_div(n, kThreads * 8), 1), 1024));
}

void mse_forward_ws(float* loss, double* loss64, const float* pred, const float* target, int64_t n,
                    double* partial, cudaStream_t stream) {
    const int blocks = mse_forward_partials(n);
    if (blocks == 1) {
        mse_forward_kernel<<<1, kThreads, 0, stream>>>(nullptr, loss, loss64, pred, target, n, true);
        check_launch("mse_forward_kernel");
        return;
    }
    mse_forward_kernel<<<blocks, kThreads, 0, stream>>>(partial, nullptr, nullptr, pred, target, n,
                                                        false);
    check_launch("mse_forward_kernel");
    mse_finish_kernel<<<1, kThreads, 0, stream>>>(loss, loss64, partial, blocks, n);
    check_launch("mse_finish_kernel");
}

void mse_forward(float* loss, double* loss64, const float* pred, const float* target, int64_t n,
                 cudaStream_t stream) {
    const int blocks = mse_forward_partials(n);
    detail::Scratch partial(blocks > 1 ? size_t(blocks) * sizeof(double) : 0, stream);
    mse_forward_ws(loss, loss64, pred, target, n, partial.as<double>(), stream);
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

void sgd_step_guarded(const SgdParam* params, int count, int64_t max_n, const SgdOptions& opt,
                      bool first_step, const double* loss, int64_t* stop, int64_t tag,
                      bool allow_nonfinite, cudaStream_t stream) {
    if (count <= 0 || max_n <= 0) return;
    const dim3 grid(unsigned(grid_for(max_n, kThreads, 1024)), unsigned(std::min(count, 65535)));
    sgd_step_guarded_kernel<<<grid, kThreads, 0, stream>>>(params, count, opt, first_step, loss,
                                                           stop, tag, allow_nonfinite);
    check_launch("sgd_step_guarded_kernel");
}

}  // namespace fastmlp::cuda
