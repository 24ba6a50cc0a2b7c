// fastmlp CUDA activation kernels: element-wise activations (activation.h rules) and row-wise
// softmax / log_softmax. Contract: csrc/include/fastmlp/cuda_activations.h. Device code in
// activations_kernels.cuh (run on the CPU by tests/cuda/activations_emulator.cpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "activations_kernels.cuh"
#include "cuda_check.cuh"
#include "fastmlp/cuda_activations.h"

namespace fastmlp::cuda {

namespace {

using namespace activations_impl;
using detail::ceil_div;
using detail::check_launch;

int grid_for(int64_t n, int threads = kThreads, int64_t max_blocks = 65535) {
    return int(std::min<int64_t>(std::max<int64_t>(ceil_div(n, threads), 1), max_blocks));
}

}  // namespace

void act_forward(float* out, const float* z, int64_t n, ActParams p, cudaStream_t stream) {
    if (n <= 0) return;
    act_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, z, n, p);
    check_launch("act_forward_kernel");
}

void act_backward(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                  ActParams p, cudaStream_t stream) {
    if (n <= 0) return;
    act_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(dz, dy, z, y, n, p);
    check_launch("act_backward_kernel");
}

void softmax_forward(float* out, const float* x, int64_t rows, int64_t cols, bool log,
                     cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    const unsigned grid = unsigned(std::min<int64_t>(rows, 65535));
    softmax_forward_kernel<<<grid, kRowThreads, 0, stream>>>(out, x, rows, cols, log);
    check_launch("softmax_forward_kernel");
}

void softmax_backward(float* dx, const float* g, const float* y, int64_t rows, int64_t cols,
                      bool log, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    const unsigned grid = unsigned(std::min<int64_t>(rows, 65535));
    softmax_backward_kernel<<<grid, kRowThreads, 0, stream>>>(dx, g, y, rows, cols, log);
    check_launch("softmax_backward_kernel");
}

}  // namespace fastmlp::cuda
