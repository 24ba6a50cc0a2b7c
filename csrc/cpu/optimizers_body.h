// The per-(kind, flags) loops of optim_step_many (optimizers.cpp), written once and compiled for
// the baseline ISA (optimizers.cpp) and with AVX2 (optimizers_avx2.cpp: 8-float vectors instead of
// SSE's 4). The arithmetic is optimizer.h's per-element rules; the build uses -ffp-contract=off
// and sqrt and division are IEEE-exact in SIMD, so both copies give the same bits as the scalar
// reference. Included inside an anonymous namespace (one copy per file).
#pragma once
#include <cstdint>

#include "fastmlp/optimizer.h"

namespace fastmlp {
namespace {

using RangeFn = void (*)(float*, const float*, float*, float*, float*, int64_t, int64_t,
                         const OptimCoeffs&);

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

}  // namespace
}  // namespace fastmlp
