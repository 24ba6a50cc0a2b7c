// Internal interface between the activation driver (activations.cpp) and its per-ISA kernels
// (activations_{avx2,avx512}.cpp over activations_simd.h; the generic ones are the scalar rules
// of activation.h, in activations.cpp). Not part of the public API. All functions are serial:
// the driver splits the work over threads.
#pragma once
#include <cstdint>
#include <cstring>

#include "fastmlp/activation.h"

namespace fastmlp::act_detail {

struct ActKernels {
    const char* name;
    void (*forward)(float* out, const float* z, int64_t n, ActParams p);
    void (*backward)(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                     ActParams p);
    // c (m, n) with leading dimension ldc, in place
    void (*forward_tile)(float* c, int64_t ldc, int64_t m, int64_t n, ActParams p);
    void (*softmax)(float* out, const float* x, int64_t rows, int64_t cols, bool log);
    void (*softmax_backward)(float* dx, const float* g, const float* y, int64_t rows, int64_t cols,
                             bool log);
};

const ActKernels& act_kernels_generic();
#if defined(FASTMLP_HAVE_X86_KERNELS)
const ActKernels& act_kernels_avx2();
const ActKernels& act_kernels_avx512();
#endif

}  // namespace fastmlp::act_detail
