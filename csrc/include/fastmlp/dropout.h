// fastmlp dropout masks: the one home of the counter-based uniform the fused trainers draw their
// keep-masks from (CPU csrc/cpu/mlp_fit.cpp, CUDA csrc/cuda/mlp_fit_kernels.cuh), so both draw
// identical masks. __host__ __device__ under nvcc (FASTMLP_HD from activation.h).
//
// u(seed, step, layer, index) in [0, 1) is a hash of its four arguments (24 random bits), so a
// mask does not depend on the thread count or on the order elements are visited in. Element i of
// layer l's (B, out) output at global optimizer step `step` is kept when u >= p, and then scaled
// by 1 / (1 - p) (0 when p == 1), as torch.nn.Dropout in training mode.
#pragma once
#include <cstdint>

#include "fastmlp/activation.h"  // FASTMLP_HD

namespace fastmlp {

FASTMLP_HD uint64_t dropout_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

FASTMLP_HD float dropout_uniform(uint64_t seed, int64_t step, int64_t layer, int64_t index) {
    uint64_t k = dropout_mix64(seed + 0x9E3779B97F4A7C15ull * uint64_t(step + 1));
    k = dropout_mix64(k ^ (0xD1B54A32D192ED03ull * uint64_t(layer + 1)));
    k = dropout_mix64(k + uint64_t(index) * 0x9E3779B97F4A7C15ull);
    return float(k >> 40) * (1.0f / 16777216.0f);  // 24 random bits
}

// The scale a kept element gets: 1 / (1 - p), 0 for p >= 1 (everything dropped).
FASTMLP_HD float dropout_keep_scale(float p) { return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p); }

}  // namespace fastmlp
