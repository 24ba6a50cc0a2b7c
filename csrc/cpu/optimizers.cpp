// Optimizer steps on the CPU over many parameters in one call (optimizers.h). The arithmetic is
// optimizer.h's per-element rules; here each (kind, flags) combination gets its own loop with the
// flags as compile-time constants, so the loops have no branches left and vectorise (sqrt and
// division are IEEE-exact in SIMD, and the build uses -ffp-contract=off, so the vector loop gives
// the same bits as the scalar reference). Big parameters are split across threads in fixed
// blocks; the rules are element-wise, so the result does not depend on the thread count.
#include "fastmlp/optimizers.h"

#include <algorithm>

#include "fastmlp/cpu_features.h"
#include "optimizers_body.h"

namespace fastmlp {

#ifdef FASTMLP_HAVE_X86_KERNELS
// optimizers_avx2.cpp: pick() compiled with AVX2.
void (*optim_range_fn_avx2(const OptimOptions& o))(float*, const float*, float*, float*, float*,
                                                   int64_t, int64_t, const OptimCoeffs&);
#endif

namespace {

constexpr int64_t kBlock = 1 << 13;  // elements per parallel block

// The loops for the ISA in use (the same bits on every ISA, see optimizers_body.h).
RangeFn range_fn(const OptimOptions& o) {
#ifdef FASTMLP_HAVE_X86_KERNELS
    if (current_isa() != Isa::generic) return optim_range_fn_avx2(o);
#endif
    return pick(o);
}

float* slot(float* const* s, int64_t k) { return s == nullptr ? nullptr : s[k]; }

}  // namespace

OptimRangeFn optim_range_fn(const OptimOptions& opt) { return range_fn(opt); }

void optim_step_many(float* const* params, const float* const* grads, float* const* s0,
                     float* const* s1, float* const* s2, const int64_t* sizes,
                     const int64_t* steps, int64_t n, const OptimOptions& opt) {
    const RangeFn fn = range_fn(opt);
    for (int64_t k = 0; k < n; ++k) {
        const int64_t m = sizes[k];
        if (m <= 0) continue;
        const OptimCoeffs c = optim_coeffs(opt, steps[k]);
        float* p = params[k];
        const float* g = grads[k];
        float *a = slot(s0, k), *b = slot(s1, k), *d = slot(s2, k);
        const int nt = threads_for(double(m) * 16.0);
        if (nt <= 1) {
            fn(p, g, a, b, d, 0, m, c);
            continue;
        }
        const int64_t blocks = (m + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t j = 0; j < blocks; ++j)
            fn(p, g, a, b, d, j * kBlock, std::min(m, (j + 1) * kBlock), c);
    }
}

void optim_step_many_reference(float* const* params, const float* const* grads, float* const* s0,
                               float* const* s1, float* const* s2, const int64_t* sizes,
                               const int64_t* steps, int64_t n, const OptimOptions& opt) {
    for (int64_t k = 0; k < n; ++k) {
        const OptimCoeffs c = optim_coeffs(opt, steps[k]);
        float *a = slot(s0, k), *b = slot(s1, k), *d = slot(s2, k);
        for (int64_t i = 0; i < sizes[k]; ++i) {
            float u0 = 0.0f, u1 = 0.0f, u2 = 0.0f;
            float& r0 = a ? a[i] : u0;
            float& r1 = b ? b[i] : u1;
            float& r2 = d ? d[i] : u2;
            optim_step_scalar(opt.kind, params[k][i], grads[k][i], r0, r1, r2, c);
        }
    }
}

void adam_step_many(float* const* params, const float* const* grads, float* const* exp_avgs,
                    float* const* exp_avg_sqs, float* const* max_exp_avg_sqs, const int64_t* sizes,
                    const int64_t* steps, int64_t n, const OptimOptions& opt) {
    optim_step_many(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, sizes, steps, n, opt);
}

void rmsprop_step_many(float* const* params, const float* const* grads, float* const* square_avgs,
                       float* const* momentum_buffers, float* const* grad_avgs,
                       const int64_t* sizes, const int64_t* steps, int64_t n,
                       const OptimOptions& opt) {
    optim_step_many(params, grads, square_avgs, momentum_buffers, grad_avgs, sizes, steps, n, opt);
}

void adagrad_step_many(float* const* params, const float* const* grads, float* const* sums,
                       const int64_t* sizes, const int64_t* steps, int64_t n,
                       const OptimOptions& opt) {
    optim_step_many(params, grads, sums, nullptr, nullptr, sizes, steps, n, opt);
}

}  // namespace fastmlp
