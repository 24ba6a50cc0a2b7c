// Optimizer steps on the CPU over many parameters in one call (optimizers.h). The arithmetic is
// optimizer.h's per-element rules; here each (kind, flags) combination gets its own loop with the
// flags as compile-time constants, so the loops have no branches left and vectorise (sqrt and
// division are IEEE-exact in SIMD, and the build uses -ffp-contract=off, so the vector loop gives
// the same bits as the scalar reference). Big parameters are split across threads in fixed
// blocks; the rules are element-wise, so the result does not depend on the thread count.
#include "fastmlp/optimizers.h"

#include <algorithm>

#include "fastmlp/cpu_features.h"

namespace fastmlp {

namespace {

constexpr int64_t kBlock = 1 << 13;  // elements per parallel block

// Compile-time flags: F1 = amsgrad (adam/adamw), centered (rmsprop), momentum != 0 (sgd);
// F2 = momentum > 0 (rmsprop); WD = weight decay != 0.
template <Optim K, bool MAXIMIZE, bool F1, bool F2, bool WD>
void step_range(float* __restrict p, const float* __restrict g, float* __restrict s0,
                float* __restrict s1, float* __restrict s2, int64_t lo, int64_t hi,
                const OptimCoeffs& coeffs) {
    OptimCoeffs c = coeffs;
    c.maximize = MAXIMIZE;
    if constexpr (!WD) {
        c.wd = 0.0f;
        c.decay = 1.0f;
    }
    if constexpr (K == Optim::adam) c.decay = 1.0f;
    if constexpr (K == Optim::adamw) c.wd = 0.0f;
    if constexpr (K == Optim::adam || K == Optim::adamw) {
        c.amsgrad = F1;
        if constexpr (F1) {
            for (int64_t i = lo; i < hi; ++i) adam_step_scalar(p[i], g[i], s0[i], s1[i], s2[i], c);
        } else {
            float unused = 0.0f;
            for (int64_t i = lo; i < hi; ++i) adam_step_scalar(p[i], g[i], s0[i], s1[i], unused, c);
        }
    } else if constexpr (K == Optim::rmsprop) {
        c.centered = F1;
        if constexpr (!F2) c.momentum = 0.0f;
        float unused_b = 0.0f, unused_g = 0.0f;
        for (int64_t i = lo; i < hi; ++i) {
            float& b = F2 ? s1[i] : unused_b;
            float& ga = F1 ? s2[i] : unused_g;
            rmsprop_step_scalar(p[i], g[i], s0[i], b, ga, c);
        }
    } else if constexpr (K == Optim::adagrad) {
        for (int64_t i = lo; i < hi; ++i) adagrad_step_scalar(p[i], g[i], s0[i], c);
    } else {  // sgd
        if constexpr (!F1) {
            c.momentum = 0.0f;
            float unused = 0.0f;
            for (int64_t i = lo; i < hi; ++i) sgd_step_scalar(p[i], g[i], unused, c);
        } else if (c.first) {
            c.first = true;
            for (int64_t i = lo; i < hi; ++i) sgd_step_scalar(p[i], g[i], s0[i], c);
        } else {
            c.first = false;
            for (int64_t i = lo; i < hi; ++i) sgd_step_scalar(p[i], g[i], s0[i], c);
        }
    }
}

using RangeFn = void (*)(float*, const float*, float*, float*, float*, int64_t, int64_t,
                         const OptimCoeffs&);

template <Optim K, bool MAXIMIZE, bool F1, bool F2>
RangeFn pick_wd(bool wd) {
    return wd ? &step_range<K, MAXIMIZE, F1, F2, true> : &step_range<K, MAXIMIZE, F1, F2, false>;
}

template <Optim K, bool MAXIMIZE>
RangeFn pick_flags(bool f1, bool f2, bool wd) {
    if (f1) return f2 ? pick_wd<K, MAXIMIZE, true, true>(wd) : pick_wd<K, MAXIMIZE, true, false>(wd);
    return f2 ? pick_wd<K, MAXIMIZE, false, true>(wd) : pick_wd<K, MAXIMIZE, false, false>(wd);
}

template <Optim K>
RangeFn pick_kind(bool maximize, bool f1, bool f2, bool wd) {
    return maximize ? pick_flags<K, true>(f1, f2, wd) : pick_flags<K, false>(f1, f2, wd);
}

RangeFn pick(const OptimOptions& o) {
    const bool wd = o.weight_decay != 0.0;
    switch (o.kind) {
        case Optim::adam: return pick_kind<Optim::adam>(o.maximize, o.amsgrad, false, wd);
        case Optim::adamw: return pick_kind<Optim::adamw>(o.maximize, o.amsgrad, false, wd);
        case Optim::rmsprop:
            return pick_kind<Optim::rmsprop>(o.maximize, o.centered, o.momentum > 0.0, wd);
        case Optim::adagrad: return pick_kind<Optim::adagrad>(o.maximize, false, false, wd);
        case Optim::sgd: break;
    }
    return pick_kind<Optim::sgd>(o.maximize, o.momentum != 0.0, false, wd);
}

float* slot(float* const* s, int64_t k) { return s == nullptr ? nullptr : s[k]; }

}  // namespace

void optim_step_many(float* const* params, const float* const* grads, float* const* s0,
                     float* const* s1, float* const* s2, const int64_t* sizes,
                     const int64_t* steps, int64_t n, const OptimOptions& opt) {
    const RangeFn fn = pick(opt);
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
