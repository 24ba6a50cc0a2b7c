// fastmlp CUDA activation kernels: the same semantics as activations.h (read it) on device
// pointers, each launched on `stream` (nullptr = the legacy default stream). Nothing here
// synchronises the device. The numeric rules are activation.h's scalar functions (the CPU's
// generic path), so CPU and GPU agree to float32 rounding of the device math library.
// Kernels assume valid input (the bindings check it). CUDA errors throw std::runtime_error.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastmlp/activation.h"

namespace fastmlp::cuda {

// out (n) = f(z). out may equal z.
void act_forward(float* out, const float* z, int64_t n, ActParams p, cudaStream_t stream);

// dz (n) = dy * f'(z): z read when act_backward_needs_input(p.kind), else y = f(z).
void act_backward(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                  ActParams p, cudaStream_t stream);

// Row-wise softmax (log = false) / log_softmax over cols of x (rows, cols).
void softmax_forward(float* out, const float* x, int64_t rows, int64_t cols, bool log,
                     cudaStream_t stream);
void softmax_backward(float* dx, const float* g, const float* y, int64_t rows, int64_t cols,
                      bool log, cudaStream_t stream);

}  // namespace fastmlp::cuda
