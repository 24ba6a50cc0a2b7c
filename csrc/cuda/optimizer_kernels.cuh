// The device code of fastmlp's CUDA optimizer steps (see optimizers.cu), kept apart from the host
// wrappers so that tests/cuda can run it on the CPU (cuda_emulation.h).
#pragma once
#include <cstdint>

#include "fastmlp/cuda_optimizers.h"  // OptimParam; optimizer.h's rules

namespace fastmlp::cuda::optimizer_impl {

constexpr int kThreads = 256;

// params (count) descriptors: blockIdx.y (strided) picks the parameter, a grid-stride loop over
// blockIdx.x/threadIdx.x its elements; each element runs optimizer.h's rule for `kind`. Unused
// state slots (null) read and write a per-thread dummy instead.
__global__ void optim_step_many_kernel(const OptimParam* params, int count, Optim kind) {
    for (int q = blockIdx.y; q < count; q += gridDim.y) {
        const OptimParam p = params[q];
        for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n;
             i += int64_t(gridDim.x) * blockDim.x) {
            float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f;
            float& s0 = p.s0 ? p.s0[i] : d0;
            float& s1 = p.s1 ? p.s1[i] : d1;
            float& s2 = p.s2 ? p.s2[i] : d2;
            optim_step_scalar(kind, p.param[i], p.grad[i], s0, s1, s2, p.c);
        }
    }
}

}  // namespace fastmlp::cuda::optimizer_impl
