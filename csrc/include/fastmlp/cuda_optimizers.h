// fastmlp CUDA optimizer steps: every parameter of a group in ONE launch (the CUDA twin of
// optimizers.h). The rules are optimizer.h's per-element functions, the same code the CPU runs.
// Kernels assume valid input (the _cuda bindings check it). Element-wise: deterministic.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastmlp/optimizer.h"

namespace fastmlp::cuda {

// One parameter of a multi-tensor step: its arrays (n floats each; state slots s0..s2 as
// optimizer.h's table, null where the kind/options do not use them) and the scalars of its step
// (optim_coeffs(options, step count after this step), computed on the host).
struct OptimParam {
    float* param;
    const float* grad;
    float* s0;
    float* s1;
    float* s2;
    int64_t n;
    OptimCoeffs c;
};

// `count` parameters in ONE launch. `params` is a DEVICE array of descriptors; max_n is the
// largest n among them (sizes the grid).
void optim_step_many(const OptimParam* params, int count, int64_t max_n, Optim kind,
                     cudaStream_t stream);

// optim_step_many from a HOST array of descriptors: copies them to stream-ordered scratch memory
// first (the copy and the launch are both on `stream`; nothing waits for the device).
void optim_step_list(const OptimParam* host_params, int count, Optim kind, cudaStream_t stream);

}  // namespace fastmlp::cuda
