// SIMD activation kernels, written once over a small vector interface V and instantiated per ISA
// by activations_avx2.cpp and activations_avx512.cpp (each compiled with its own flags; this
// header is included only there, inside an anonymous namespace, so nothing here has external
// linkage).
//
// The math (float32, own approximations, no libm): every function here agrees with the float64
// value of the activation.h rule within a few float32 ulp over the whole float range, including
// +-inf, NaN (propagated), large |z| and subnormal results (tests/test_activations.py checks it).
//   exp     x = n ln2 + r (Cody-Waite), exp(r) = 1 + r + r^2 P5(r) on |r| <= ln2/2, times 2^n
//           applied in two halves (so subnormal results and exp(88.7) are right)
//   expm1   2^n expm1(r) + (2^n - 1), expm1(r) = r + r^2/2 + r^3 P5(r)  (input in [-87, 20])
//   tanh    copysign(e / (e + 2), x), e = expm1(2|x|)  (|x| clamped at 9.1, where tanh = 1)
//   sigmoid e = exp(-|x|): 1 / (1 + e) for x >= 0, e / (1 + e) below (no cancellation)
//   Phi     the normal CDF for GELU: 0.5 + z P6(z^2) for |z| <= 0.7; else
//           Phi(-a) = exp(-a^2/2) t P10(t), t = 1 / (1 + a/2), with a^2 split exactly by an FMA
//           (a^2 = s + e) so that exp(-a^2/2) carries no rounding of a^2; Phi(z) = 1 - Phi(-z);
//           the backward's phi(z) = exp(-z^2/2) / sqrt(2 pi) reuses that exp (one exp per element)
//   log1p   log1p(u) = u P11(u) on u in [0, 1] (softplus: max(x, 0) + log1p(exp(-|x|)))
// Polynomials: least-squares fits in relative error at Chebyshev nodes (see the test for the
// measured error).
#pragma once
#include <cstdint>
#include <cstring>

#include "fastmlp/activation.h"

// V must provide: F (vector of W floats), M (mask), W, set1, load, store, add/sub/mul/div via
// operators on F, fma(a,b,c) = a*b+c fused, vmax/vmin (x86 semantics: second operand when NaN),
// vabs, lt/le/gt/ge (ordered: false for NaN), isnan, sel(m, a, b) = m ? a : b, round_even,
// pow2(n) (2^n for integral n in [-126, 127]), m_and, m_or, hsum (fixed-order lane sum),
// or_sign(mag, sgn) = mag with sgn's sign bit or'ed in (copysign for mag >= +0).

#ifndef FASTMLP_ACT_INLINE
#define FASTMLP_ACT_INLINE inline __attribute__((always_inline))
#endif

template <class V>
struct ActSimd {
    using F = typename V::F;
    using M = typename V::M;
    static constexpr int W = V::W;

    static FASTMLP_ACT_INLINE F c(float v) { return V::set1(v); }

    // exp(xc) for xc in [-104, 89] (callers clamp; NaN propagates through the arithmetic): the
    // one exp polynomial of this file. Below -104 it gives 0, above 88.73 inf, subnormal results
    // right.
    static FASTMLP_ACT_INLINE F exp_core(F xc) {
        const F n = V::round_even(xc * c(1.44269504088896341f));
        F r = V::fma(n, c(-0.693145751953125f), xc);
        r = V::fma(n, c(-1.428606765330187045e-06f), r);
        F p = c(0.00019853862f);
        p = V::fma(p, r, c(0.0013931463f));
        p = V::fma(p, r, c(0.008333365f));
        p = V::fma(p, r, c(0.041666497f));
        p = V::fma(p, r, c(0.16666667f));
        p = V::fma(p, r, c(0.5f));
        p = V::fma(p, r * r, r + c(1.0f));
        // 2^n in two halves n1 + n2, each within the normal range for n in [-150, 128]
        const F n1 = V::round_even(n * c(0.5f) - c(0.25f));  // floor(n / 2) for integral n
        const F n2 = n - n1;
        return (p * V::pow2(n1)) * V::pow2(n2);
    }

    // exp(x) for all floats: 0 below -104, inf above 88.73, NaN kept.
    static FASTMLP_ACT_INLINE F exp(F x) {
        const F y = exp_core(V::vmin(V::vmax(x, c(-104.0f)), c(89.0f)));
        return V::sel(V::isnan(x), x, y);
    }

    // exp(x) for x <= 0, never NaN (exp without the upper clamp and the NaN select, which its
    // callers do not need; the same bits as exp there).
    static FASTMLP_ACT_INLINE F exp_nonpos(F x) { return exp_core(V::vmax(x, c(-104.0f))); }

    // exp(-(s + e) / 2) with s + e = a^2 exactly (s = fl(a*a), e its rounding error), for
    // 0 <= a <= 15 (not NaN)
    static FASTMLP_ACT_INLINE F exp_neg_half_sq(F a) {
        const F s = a * a;
        const F e = V::fma(a, a, c(0.0f) - s);
        const F base = exp_nonpos(s * c(-0.5f));
        return V::fma(base, e * c(-0.5f), base);  // exp(-e/2) = 1 - e/2 to float precision
    }

    // expm1(x) for x in [-87, 20], x not -0 (callers clamp; NaN propagates through the
    // arithmetic). At n = 0 the reconstruction 2^0 q + (2^0 - 1) = fma(1, q, +0) is q itself
    // (exactly: q is -0 only for x = -0), so no select of q for small |x| is needed.
    static FASTMLP_ACT_INLINE F expm1_core(F x) {
        const F n = V::round_even(x * c(1.44269504088896341f));
        F r = V::fma(n, c(-0.693145751953125f), x);
        r = V::fma(n, c(-1.428606765330187045e-06f), r);
        F p = c(2.4672116e-05f);
        p = V::fma(p, r, c(0.0001976101f));
        p = V::fma(p, r, c(0.001388899f));
        p = V::fma(p, r, c(0.00833347f));
        p = V::fma(p, r, c(0.041666668f));
        p = V::fma(p, r, c(0.16666667f));
        const F r2 = r * r;
        const F q = V::fma(p * r, r2, V::fma(r2, c(0.5f), r));  // expm1(r)
        const F t = V::pow2(n);
        return V::fma(t, q, t - c(1.0f));
    }

    static FASTMLP_ACT_INLINE F tanh(F x) {
        const F a = V::vmin(V::vabs(x), c(9.1f));
        const F e = expm1_core(a + a);
        const F t = e / (e + c(2.0f));  // >= +0: x's sign bit or'ed in is copysign
        const F y = V::or_sign(t, x);
        return V::sel(V::isnan(x), x, y);
    }

    // exp_nonpos(-|x|) is exp(-|x|) bit for bit (for NaN x it is finite, and the NaN select
    // below discards it, as it discarded exp's NaN)
    static FASTMLP_ACT_INLINE F sigmoid(F x) {
        const F e = exp_nonpos(c(0.0f) - V::vabs(x));
        const F d = c(1.0f) / (c(1.0f) + e);
        const F y = V::sel(V::ge(x, c(0.0f)), d, e * d);
        return V::sel(V::isnan(x), x, y);
    }

    // sigmoid(x) and 1 - sigmoid(x) = sigmoid(-x), both without cancellation
    static FASTMLP_ACT_INLINE F sigmoid_pair(F x, F& one_minus) {
        const F e = exp_nonpos(c(0.0f) - V::vabs(x));
        const F d = c(1.0f) / (c(1.0f) + e);
        const F ed = e * d;
        const M pos = V::ge(x, c(0.0f)), nan = V::isnan(x);
        one_minus = V::sel(nan, x, V::sel(pos, ed, d));
        return V::sel(nan, x, V::sel(pos, d, ed));
    }

    // Phi(z) and, when pdf != null, phi(z) = exp(-z^2/2) / sqrt(2 pi).
    static FASTMLP_ACT_INLINE F normal_cdf(F z, F* pdf) {
        const F a = V::vabs(z);
        const F z2 = z * z;
        F pc = c(6.46791e-07f);
        pc = V::fma(pc, z2, c(-9.472741e-06f));
        pc = V::fma(pc, z2, c(0.00011546092f));
        pc = V::fma(pc, z2, c(-0.0011873363f));
        pc = V::fma(pc, z2, c(0.009973558f));
        pc = V::fma(pc, z2, c(-0.06649038f));
        pc = V::fma(pc, z2, c(0.3989423f));
        const F central = V::fma(pc, z, c(0.5f));
        const F ac = V::vmin(a, c(15.0f));  // Phi(-15) underflows; keeps inf out of the tail
        const F t = c(1.0f) / V::fma(ac, c(0.5f), c(1.0f));
        F pt = c(-0.15272872f);
        pt = V::fma(pt, t, c(0.716611f));
        pt = V::fma(pt, t, c(-1.3882312f));
        pt = V::fma(pt, t, c(1.34487f));
        pt = V::fma(pt, t, c(-0.5723367f));
        pt = V::fma(pt, t, c(0.04102899f));
        pt = V::fma(pt, t, c(-0.090863146f));
        pt = V::fma(pt, t, c(0.05325583f));
        pt = V::fma(pt, t, c(0.14936519f));
        pt = V::fma(pt, t, c(0.19947943f));
        pt = V::fma(pt, t, c(0.19947106f));
        const F g = exp_neg_half_sq(ac);  // vmin(NaN, 15) = 15: no NaN inside
        const F lower = g * (t * pt);  // Phi(-a)
        // phi(z) from the same exp: beyond |z| = 15 both it and z phi(z) are below float32's
        // smallest subnormal, and exp_nonpos(-112.5) already is 0
        if (pdf) *pdf = g * c(0.39894228040143268f);
        const F tail = V::sel(V::lt(z, c(0.0f)), lower, c(1.0f) - lower);
        const F y = V::sel(V::le(a, c(0.7f)), central, tail);
        return V::sel(V::isnan(z), z, y);
    }

    // log1p(u) for u in [0, 1]
    static FASTMLP_ACT_INLINE F log1p_unit(F u) {
        F p = c(-0.0012805309f);
        p = V::fma(p, u, c(0.009080583f));
        p = V::fma(p, u, c(-0.030171627f));
        p = V::fma(p, u, c(0.064006634f));
        p = V::fma(p, u, c(-0.10124274f));
        p = V::fma(p, u, c(0.13426493f));
        p = V::fma(p, u, c(-0.16452858f));
        p = V::fma(p, u, c(0.199653f));
        p = V::fma(p, u, c(-0.24996613f));
        p = V::fma(p, u, c(0.3333316f));
        p = V::fma(p, u, c(-0.49999997f));
        p = V::fma(p, u, c(1.0f));
        return p * u;
    }

    // ---- the activations: forward y = f(z) and backward dz = dy f'(z) (activation.h table) --
    static FASTMLP_ACT_INLINE F fwd(fastmlp::Act k, F z, float p0, float p1) {
        using fastmlp::Act;
        switch (k) {
            case Act::identity: return z;
            case Act::relu: return V::sel(V::m_or(V::gt(z, c(0.0f)), V::isnan(z)), z, c(0.0f));
            case Act::tanh: return tanh(z);
            case Act::sigmoid: return sigmoid(z);
            case Act::gelu: return z * normal_cdf(z, nullptr);
            case Act::gelu_tanh: {
                // 0.5 z (1 + tanh(u)) = z sigmoid(2u)
                const F u2 = (z + c(0.044715f) * z * z * z) * c(2.0f * 0.79788456080286536f);
                return z * sigmoid(u2);
            }
            case Act::silu: return z * sigmoid(z);
            case Act::leaky_relu: return V::sel(V::gt(z, c(0.0f)), z, z * c(p0));
            case Act::elu: {
                const F e = expm1_core(V::vmin(V::vmax(z, c(-87.0f)), c(0.0f)));  // NaN: fixed below
                const F y = V::sel(V::gt(z, c(0.0f)), z, c(p0) * e);
                return V::sel(V::isnan(z), z, y);
            }
            case Act::softplus: {
                const F bz = z * c(p0);
                const F e = exp(c(0.0f) - V::vabs(bz));
                const F sp = (V::vmax(bz, c(0.0f)) + log1p_unit(e)) / c(p0);
                const F y = V::sel(V::gt(bz, c(p1)), z, sp);
                return V::sel(V::isnan(z), z, y);
            }
            case Act::hardtanh:
                return V::sel(V::lt(z, c(p0)), c(p0), V::sel(V::gt(z, c(p1)), c(p1), z));
        }
        return z;
    }

    static FASTMLP_ACT_INLINE F bwd(fastmlp::Act k, F dy, F z, F y, float p0, float p1) {
        using fastmlp::Act;
        switch (k) {
            case Act::identity: return dy;
            case Act::relu: return V::sel(V::gt(y, c(0.0f)), dy, c(0.0f));
            case Act::tanh: return dy * (c(1.0f) - y * y);
            case Act::sigmoid: return (dy * (c(1.0f) - y)) * y;
            case Act::gelu: {
                F pdf;
                const F cdf = normal_cdf(z, &pdf);
                return dy * V::fma(z, pdf, cdf);
            }
            case Act::gelu_tanh: {
                const float k0 = 0.79788456080286536f, k1 = 0.044715f;
                const F z2 = z * z;
                const F u2 = (z + c(k1) * z2 * z) * c(2.0f * k0);
                F om;
                const F s = sigmoid_pair(u2, om);
                const F du = c(k0) * (c(1.0f) + c(3.0f * k1) * z2);
                // 0.5 (1 + t) + 0.5 z (1 - t^2) du with t = 2s - 1: s + 2 z s (1 - s) du
                return dy * (s + c(2.0f) * z * s * om * du);
            }
            case Act::silu: {
                F om;
                const F s = sigmoid_pair(z, om);
                return dy * (s * (c(1.0f) + z * om));
            }
            case Act::leaky_relu: return V::sel(V::gt(z, c(0.0f)), dy, dy * c(p0));
            case Act::elu: {
                const F e = exp_nonpos(V::vmin(z, c(0.0f)));  // vmin(NaN, 0) = 0: NaN from z below
                return V::sel(V::gt(z, c(0.0f)), dy, V::sel(V::isnan(z), z, dy * c(p0) * e));
            }
            case Act::softplus: {
                const F bz = z * c(p0);
                return V::sel(V::gt(bz, c(p1)), dy, dy * sigmoid(bz));
            }
            case Act::hardtanh:
                return V::sel(V::m_and(V::gt(z, c(p0)), V::lt(z, c(p1))), dy, c(0.0f));
        }
        return dy;
    }
};

// ---- array loops ---------------------------------------------------------------------------
// Whole vectors, then the tail through a zero-padded stack buffer (never reads or writes past n).
// One activation kind per instantiation (K a template argument): the switch folds away.
template <class V, fastmlp::Act K>
void act_forward_loop_k(float* out, const float* z, int64_t n, fastmlp::ActParams p) {
    using S = ActSimd<V>;
    constexpr int W = V::W;
    const float p0 = p.p0, p1 = p.p1;
    int64_t i = 0;
    for (; i + W <= n; i += W) V::store(out + i, S::fwd(K, V::load(z + i), p0, p1));
    if (i < n) {
        float buf[W] = {0.0f};
        const size_t rest = size_t(n - i);
        std::memcpy(buf, z + i, rest * sizeof(float));
        V::store(buf, S::fwd(K, V::load(buf), p0, p1));
        std::memcpy(out + i, buf, rest * sizeof(float));
    }
}

template <class V, fastmlp::Act K>
void act_backward_loop_k(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                         fastmlp::ActParams p) {
    using S = ActSimd<V>;
    constexpr int W = V::W;
    constexpr bool need_z = fastmlp::act_backward_needs_input(K);
    const float p0 = p.p0, p1 = p.p1;
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        const typename V::F v = V::load(need_z ? z + i : y + i);
        V::store(dz + i, S::bwd(K, V::load(dy + i), v, v, p0, p1));
    }
    if (i < n) {
        float bd[W] = {0.0f}, bv[W] = {0.0f};
        const size_t rest = size_t(n - i);
        std::memcpy(bd, dy + i, rest * sizeof(float));
        std::memcpy(bv, (need_z ? z : y) + i, rest * sizeof(float));
        const typename V::F v = V::load(bv);
        V::store(bd, S::bwd(K, V::load(bd), v, v, p0, p1));
        std::memcpy(dz + i, bd, rest * sizeof(float));
    }
}

#define FASTMLP_ACT_CASES(X)                                                                      \
    X(identity) X(relu) X(tanh) X(sigmoid) X(gelu) X(gelu_tanh) X(silu) X(leaky_relu) X(elu)    \
    X(softplus) X(hardtanh)

template <class V>
void act_forward_simd(float* out, const float* z, int64_t n, fastmlp::ActParams p) {
    switch (p.kind) {
#define FASTMLP_CASE(name) \
    case fastmlp::Act::name: return act_forward_loop_k<V, fastmlp::Act::name>(out, z, n, p);
        FASTMLP_ACT_CASES(FASTMLP_CASE)
#undef FASTMLP_CASE
    }
}

template <class V>
void act_backward_simd(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                       fastmlp::ActParams p) {
    switch (p.kind) {
#define FASTMLP_CASE(name) \
    case fastmlp::Act::name: return act_backward_loop_k<V, fastmlp::Act::name>(dz, dy, z, y, n, p);
        FASTMLP_ACT_CASES(FASTMLP_CASE)
#undef FASTMLP_CASE
    }
}

// c (m rows of n, leading dimension ldc) = f(c) in place: the GEMM epilogue on a finished tile.
template <class V>
void act_forward_tile_simd(float* cm, int64_t ldc, int64_t m, int64_t n, fastmlp::ActParams p) {
    switch (p.kind) {
#define FASTMLP_CASE(name)                                                                  \
    case fastmlp::Act::name:                                                                \
        for (int64_t i = 0; i < m; ++i)                                                     \
            act_forward_loop_k<V, fastmlp::Act::name>(cm + i * ldc, cm + i * ldc, n, p);    \
        return;
        FASTMLP_ACT_CASES(FASTMLP_CASE)
#undef FASTMLP_CASE
    }
}

// ---- softmax / log_softmax over rows -----------------------------------------------------------
// Lane-wise partial max / sum over the row in order, then the lanes in a fixed order (V::hsum):
// the same result for any thread count (threads split rows).
template <class V>
inline float row_max(const float* x, int64_t n) {
    // NaN needs no tracking: a NaN element makes its exp, hence the row's sum and every output,
    // NaN (as in PyTorch), whatever the maximum is.
    constexpr int W = V::W;
    typename V::F m = V::set1(-__builtin_inff());
    int64_t j = 0;
    for (; j + W <= n; j += W) m = V::vmax(V::load(x + j), m);
    alignas(64) float lanes[W];
    V::store(lanes, m);
    float r = lanes[0];
    for (int l = 1; l < W; ++l) r = lanes[l] > r ? lanes[l] : r;
    for (; j < n; ++j) r = x[j] > r ? x[j] : r;
    return r;
}

// out = exp(x - mx), returns the sum (lanes then tail, fixed order)
template <class V>
inline float row_exp_sum(float* out, const float* x, int64_t n, float mx) {
    using S = ActSimd<V>;
    constexpr int W = V::W;
    typename V::F s = V::set1(0.0f);
    const typename V::F vm = V::set1(mx);
    int64_t j = 0;
    for (; j + W <= n; j += W) {
        const typename V::F e = S::exp(V::load(x + j) - vm);
        if (out) V::store(out + j, e);
        s = s + e;
    }
    float total = V::hsum(s);
    if (j < n) {
        float buf[W];
        for (int l = 0; l < W; ++l) buf[l] = j + l < n ? x[j + l] - mx : -__builtin_inff();
        V::store(buf, S::exp(V::load(buf)));
        for (int64_t l = 0; j + l < n; ++l) {
            if (out) out[j + l] = buf[l];
            total += buf[l];
        }
    }
    return total;
}

template <class V>
void softmax_rows_simd(float* out, const float* x, int64_t rows, int64_t cols, bool log) {
    constexpr int W = V::W;
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* o = out + r * cols;
        float mx = row_max<V>(xr, cols);
        // A row of -inf: PyTorch gives NaN (exp(-inf - -inf)); +inf likewise. Keep mx as is.
        if (!log) {
            const float s = row_exp_sum<V>(o, xr, cols, mx);
            const typename V::F inv = V::set1(1.0f / s);
            int64_t j = 0;
            for (; j + W <= cols; j += W) V::store(o + j, V::load(o + j) * inv);
            for (; j < cols; ++j) o[j] = o[j] * (1.0f / s);
        } else {
            const float s = row_exp_sum<V>(nullptr, xr, cols, mx);
            // (x - max) - log(s), PyTorch's order: max + log(s) would round away small outputs
            const float ls = float(__builtin_log(double(s)));
            const typename V::F vl = V::set1(ls), vm = V::set1(mx);
            int64_t j = 0;
            for (; j + W <= cols; j += W) V::store(o + j, (V::load(xr + j) - vm) - vl);
            for (; j < cols; ++j) o[j] = (xr[j] - mx) - ls;
        }
    }
}

// softmax:      dx = y (g - sum(g y));   log_softmax: dx = g - exp(y) sum(g)
template <class V>
void softmax_backward_rows_simd(float* dx, const float* g, const float* y, int64_t rows,
                                int64_t cols, bool log) {
    using S = ActSimd<V>;
    constexpr int W = V::W;
    for (int64_t r = 0; r < rows; ++r) {
        const float* gr = g + r * cols;
        const float* yr = y + r * cols;
        float* d = dx + r * cols;
        typename V::F acc = V::set1(0.0f);
        int64_t j = 0;
        if (!log) {
            for (; j + W <= cols; j += W) acc = V::fma(V::load(gr + j), V::load(yr + j), acc);
            float s = V::hsum(acc);
            for (; j < cols; ++j) s += gr[j] * yr[j];
            const typename V::F vs = V::set1(s);
            for (j = 0; j + W <= cols; j += W)
                V::store(d + j, V::load(yr + j) * (V::load(gr + j) - vs));
            for (; j < cols; ++j) d[j] = yr[j] * (gr[j] - s);
        } else {
            for (; j + W <= cols; j += W) acc = acc + V::load(gr + j);
            float s = V::hsum(acc);
            for (; j < cols; ++j) s += gr[j];
            const typename V::F vs = V::set1(s);
            for (j = 0; j + W <= cols; j += W)
                V::store(d + j, V::load(gr + j) - S::exp(V::load(yr + j)) * vs);
            if (j < cols) {
                float buf[W] = {0.0f};
                for (int64_t l = 0; j + l < cols; ++l) buf[l] = yr[j + l];
                V::store(buf, S::exp(V::load(buf)));
                for (int64_t l = 0; j + l < cols; ++l) d[j + l] = gr[j + l] - buf[l] * s;
            }
        }
    }
}

// The kernel table of one ISA (activations_internal.h), for its act_kernels_<isa>().
template <class V>
const ActKernels& act_kernels_simd(const char* name) {
    static const ActKernels k = {name, &act_forward_simd<V>, &act_backward_simd<V>,
                                 &act_forward_tile_simd<V>, &softmax_rows_simd<V>,
                                 &softmax_backward_rows_simd<V>};
    return k;
}
