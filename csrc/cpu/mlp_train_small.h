// The small-matrix step of the fused trainer (internal header, not part of the kernel API).
//
// For tiny nets (e.g. 10 -> 20 -> 1 at batch 64) a step is well under a microsecond of arithmetic,
// so packing, OpenMP and per-call dispatch would dominate. This path keeps every activation
// feature-major, (features, ld) with the batch along the row, so each loop runs over the batch
// and vectorises at any layer width. Single thread, fixed summation order (16 partial lanes
// over the batch, combined in order): the result does not depend on the thread count.
//
// The step body is defined once here (FASTMLP_SMALL_STEP_BODY) and compiled per ISA by
// mlp_train_small_{generic,avx2,avx512}.cpp, each with its own compiler flags.
#pragma once
#pragma GCC diagnostic ignored "-Wpsabi"  // v16 below never crosses a non-inlined call
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 avx512fintrin.h casts
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fastmlp/mlp.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastmlp::detail {

// What an optimizer step needs, in both modes.
struct StepRule {
    MlpMode mode = MlpMode::torch;
    float lr = 0.01f, momentum = 0.0f, dampening = 0.0f, weight_decay = 0.0f, alpha = 0.0f;
    bool nesterov = false;
};

// Data-parallel step (MlpTrainOptions::grad_allreduce): instead of updating, the step writes its
// gradients into buf (per layer weight (out, in) then bias (out), in layer order) and normalises
// the loss and gradients by `count` (global batch rows x outputs) instead of its own rows.
struct GradSink {
    float* buf = nullptr;
    double count = 0.0;
};

// Scratch of the small path, allocated once per mlp_train call.
struct SmallScratch {
    int64_t ld = 0;              // padded batch stride (multiple of 16)
    std::vector<float*> act;     // act[l] (width_l, ld), l = 0..L (act[L] = prediction)
    float* yT = nullptr;         // (out, ld)
    float* d0 = nullptr;         // (max width, ld) gradient ping-pong
    float* d1 = nullptr;
    float* gw = nullptr;         // (max in*out) weight gradient
    float* gb = nullptr;         // (max out) bias gradient
    std::vector<float> storage;
    void init(const std::vector<MlpLayer>& layers, int64_t batch);
};

// One training step on the samples X[idx[0..B)], Y[idx[..]]. Returns the batch loss. When the loss
// is not finite and !allow_nonfinite, the parameters are left untouched. With a sink (not null),
// the gradients go to the sink and nothing is updated (the loss returned is this rank's share).
using SmallStepFn = double (*)(const std::vector<MlpLayer>& layers, SmallScratch& s,
                               const float* X, const float* Y, const int64_t* idx, int64_t B,
                               const StepRule& rule, bool first_step, bool allow_nonfinite,
                               GradSink* sink);

double small_step_generic(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                          const int64_t*, int64_t, const StepRule&, bool, bool, GradSink*);
#ifdef FASTMLP_HAVE_X86_KERNELS
double small_step_avx2(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                       const int64_t*, int64_t, const StepRule&, bool, bool, GradSink*);
double small_step_avx512(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                         const int64_t*, int64_t, const StepRule&, bool, bool, GradSink*);
#endif

}  // namespace fastmlp::detail

namespace fastmlp::detail {
namespace {  // internal linkage: each ISA file gets its own copy compiled with its own flags

// One parameter's update, plain loop (no OpenMP: the small path's parameters are tiny).
// torch:   g = grad + wd * p; buf = first ? g : m * buf + (1 - damp) * g; g = nesterov ? g + m buf : buf
//          p -= lr * g
// sklearn: g = grad + l2 * p; v = m * v - lr * g; p += nesterov ? m * v - lr * g : v
inline void update_param(float* p, const float* grad, float* buf, int64_t n, const StepRule& r,
                         bool first_step, float l2) {
    const float lr = r.lr, m = r.momentum;
    if (r.mode == MlpMode::torch) {
        const float wd = r.weight_decay, damp1 = 1.0f - r.dampening;
        if (m == 0.0f) {
            for (int64_t j = 0; j < n; ++j) {
                float g = grad[j];
                if (wd != 0.0f) g += wd * p[j];
                p[j] -= lr * g;
            }
            return;
        }
        for (int64_t j = 0; j < n; ++j) {
            float g = grad[j];
            if (wd != 0.0f) g += wd * p[j];
            const float b = first_step ? g : m * buf[j] + damp1 * g;
            buf[j] = b;
            g = r.nesterov ? g + m * b : b;
            p[j] -= lr * g;
        }
        return;
    }
    for (int64_t j = 0; j < n; ++j) {
        float g = grad[j];
        if (l2 != 0.0f) g += l2 * p[j];
        if (m == 0.0f) {
            p[j] += -(lr * g);
            continue;
        }
        const float v = m * buf[j] - lr * g;
        buf[j] = v;
        p[j] += r.nesterov ? m * v - lr * g : v;
    }
}

}  // namespace
}  // namespace fastmlp::detail

// The step body, compiled once per ISA. Expects FASTMLP_SMALL_STEP_NAME to be defined.
#define FASTMLP_SMALL_STEP_BODY                                                                    \
    namespace fastmlp::detail {                                                                    \
    double FASTMLP_SMALL_STEP_NAME(const std::vector<MlpLayer>& layers, SmallScratch& s,           \
                                   const float* X, const float* Y, const int64_t* idx, int64_t B,  \
                                   const StepRule& rule, bool first_step, bool allow_nonfinite,    \
                                   GradSink* sink) {                                               \
        return small_step_impl(layers, s, X, Y, idx, B, rule, first_step, allow_nonfinite, sink);  \
    }                                                                                              \
    }

namespace fastmlp::detail {
namespace {

constexpr int64_t kLanes = 16;

// 16 floats as one GCC/Clang vector (4 SSE, 2 AVX or 1 AVX-512 register), unaligned load/store.
typedef float v16 __attribute__((vector_size(64)));
inline v16 ld16(const float* p) {
    v16 v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}
inline void st16(float* p, v16 v) { __builtin_memcpy(p, &v, sizeof(v)); }

// acc + bias, then ReLU (NaN stays NaN: a NaN lane fails both comparisons and is kept).
inline v16 bias_relu(v16 acc, float bias, bool relu) {
    v16 v = acc + bias;
    if (relu) {
        const v16 zero = {};
        v = v < zero ? zero : v;
    }
    return v;
}

// Sums of 16 lanes in a fixed tree order (per ISA; the thread count never enters).
// dot16: sum over b < Bp (a multiple of 16) of x[b] * y[b];  sum16: sum of x[b].
#if defined(__AVX2__)
inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif
#if defined(__AVX512F__)
inline float hsum16(__m512 v) {
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
inline float dot16(const float* __restrict x, const float* __restrict y, int64_t Bp) {
    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(y));
    for (int64_t b0 = kLanes; b0 < Bp; b0 += kLanes)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + b0), _mm512_loadu_ps(y + b0), acc);
    return hsum16(acc);
}
// out[j] = dot16(x, y + j * ldy, Bp) for j < 4, reduced together.
inline void dot16x4(float* out, const float* __restrict x, const float* __restrict y, int64_t ldy,
                    int64_t Bp) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t b0 = 0; b0 < Bp; b0 += kLanes) {
        const __m512 xv = _mm512_loadu_ps(x + b0);
        c0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(y + b0), c0);
        c1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(y + ldy + b0), c1);
        c2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(y + 2 * ldy + b0), c2);
        c3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(y + 3 * ldy + b0), c3);
    }
    auto half = [](__m512 v) {
        return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    };
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half(c0), half(c1)), _mm256_hadd_ps(half(c2), half(c3)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
inline float sum16(const float* __restrict x, int64_t Bp) {
    __m512 acc = _mm512_loadu_ps(x);
    for (int64_t b0 = kLanes; b0 < Bp; b0 += kLanes) acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + b0));
    return hsum16(acc);
}
#elif defined(__AVX2__)
inline float dot16(const float* __restrict x, const float* __restrict y, int64_t Bp) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < Bp; b0 += kLanes) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + b0), _mm256_loadu_ps(y + b0), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + b0 + 8), _mm256_loadu_ps(y + b0 + 8), a1);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}
inline void dot16x4(float* out, const float* __restrict x, const float* __restrict y, int64_t ldy,
                    int64_t Bp) {
    for (int64_t j = 0; j < 4; ++j) out[j] = dot16(x, y + j * ldy, Bp);
}
inline float sum16(const float* __restrict x, int64_t Bp) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < Bp; b0 += kLanes) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + b0));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + b0 + 8));
    }
    return hsum8(_mm256_add_ps(a0, a1));
}
#else
inline float dot16(const float* __restrict x, const float* __restrict y, int64_t Bp) {
    float part[kLanes] = {0.0f};
    for (int64_t b0 = 0; b0 < Bp; b0 += kLanes)
        for (int64_t k = 0; k < kLanes; ++k) part[k] += x[b0 + k] * y[b0 + k];
    for (int64_t w = kLanes / 2; w >= 1; w /= 2)
        for (int64_t k = 0; k < w; ++k) part[k] += part[k + w];
    return part[0];
}
inline void dot16x4(float* out, const float* __restrict x, const float* __restrict y, int64_t ldy,
                    int64_t Bp) {
    for (int64_t j = 0; j < 4; ++j) out[j] = dot16(x, y + j * ldy, Bp);
}
inline float sum16(const float* __restrict x, int64_t Bp) {
    float part[kLanes] = {0.0f};
    for (int64_t b0 = 0; b0 < Bp; b0 += kLanes)
        for (int64_t k = 0; k < kLanes; ++k) part[k] += x[b0 + k];
    for (int64_t w = kLanes / 2; w >= 1; w /= 2)
        for (int64_t k = 0; k < w; ++k) part[k] += part[k + w];
    return part[0];
}
#endif

// The batch gather, transposed: dst (d, ld) feature-major gets rows src[idx[b]] (d wide) for
// b < B and zeros for b in [B, Bp).
inline void gather_rows_scalar(float* __restrict dst, int64_t ld, const float* src, int64_t d,
                               const int64_t* idx, int64_t B, int64_t Bp) {
    for (int64_t b = 0; b < B; ++b) {
        const float* row = src + idx[b] * d;
        for (int64_t i = 0; i < d; ++i) dst[i * ld + b] = row[i];
    }
    for (int64_t i = 0; i < d; ++i)
        for (int64_t b = B; b < Bp; ++b) dst[i * ld + b] = 0.0f;
}

#if defined(__AVX512F__)
// r[k] lane j  ->  r[j] lane k  (a 16x16 in-register transpose)
inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int k = 0; k < 8; ++k) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; ++k) {
        r[4 * k + 0] = _mm512_shuffle_ps(t[4 * k + 0], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k + 0], t[4 * k + 2], 0xEE);
        r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0x88);
        t[k + 4] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0xDD);
        t[k + 8] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0x88);
        t[k + 12] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0xDD);
    }
    for (int k = 0; k < 8; ++k) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xDD);
    }
}

// 16 rows at a time: masked row loads (never past a row's end), one transpose, vector stores.
inline void gather_rows(float* dst, int64_t ld, const float* src, int64_t d, const int64_t* idx,
                        int64_t B, int64_t Bp) {
    if (d < 4) return gather_rows_scalar(dst, ld, src, d, idx, B, Bp);
    for (int64_t c0 = 0; c0 < d; c0 += kLanes) {
        const int64_t cw = d - c0 < kLanes ? d - c0 : kLanes;
        const __mmask16 m = __mmask16((1u << cw) - 1u);
        for (int64_t b0 = 0; b0 < Bp; b0 += kLanes) {
            __m512 r[16];
            for (int64_t k = 0; k < kLanes; ++k)
                r[k] = b0 + k < B ? _mm512_maskz_loadu_ps(m, src + idx[b0 + k] * d + c0)
                                  : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t j = 0; j < cw; ++j) _mm512_storeu_ps(dst + (c0 + j) * ld + b0, r[j]);
        }
    }
}
#else
inline void gather_rows(float* dst, int64_t ld, const float* src, int64_t d, const int64_t* idx,
                        int64_t B, int64_t Bp) {
    gather_rows_scalar(dst, ld, src, d, idx, B, Bp);
}
#endif

[[maybe_unused]] double small_step_impl(const std::vector<MlpLayer>& layers, SmallScratch& s,
                                        const float* X, const float* Y, const int64_t* idx,
                                        int64_t B, const StepRule& rule, bool first_step,
                                        bool allow_nonfinite, GradSink* sink) {
    const int64_t L = int64_t(layers.size());
    const int64_t ld = s.ld;
    const int64_t Bp = (B + kLanes - 1) / kLanes * kLanes;  // loops run over Bp; pad is zero-fed
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out;

    // Gather the batch, transposed to (features, ld); pad columns are zero.
    gather_rows(s.act[0], ld, X, d_in, idx, B, Bp);
    gather_rows(s.yT, ld, Y, d_out, idx, B, Bp);

    // Forward: z (out, Bp) = sum_i W[o][i] * a[i][:] (i in order), + bias, relu.
    for (int64_t l = 0; l < L; ++l) {
        const MlpLayer& ly = layers[size_t(l)];
        const float* __restrict a = s.act[size_t(l)];
        float* __restrict z = s.act[size_t(l + 1)];
        for (int64_t o = 0; o < ly.out; ++o) {
            const float* w = ly.weight + o * ly.in;
            float* __restrict zo = z + o * ld;
            const float bo = ly.bias ? ly.bias[o] : 0.0f;
            const bool relu = ly.relu;
            int64_t b0 = 0;
            for (; b0 + 4 * kLanes <= Bp; b0 += 4 * kLanes) {  // 64 samples in 4 registers
                v16 acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
                for (int64_t i = 0; i < ly.in; ++i) {
                    const float wi = w[i];
                    const float* ai = a + i * ld + b0;
                    acc0 += wi * ld16(ai);
                    acc1 += wi * ld16(ai + kLanes);
                    acc2 += wi * ld16(ai + 2 * kLanes);
                    acc3 += wi * ld16(ai + 3 * kLanes);
                }
                st16(zo + b0, bias_relu(acc0, bo, relu));
                st16(zo + b0 + kLanes, bias_relu(acc1, bo, relu));
                st16(zo + b0 + 2 * kLanes, bias_relu(acc2, bo, relu));
                st16(zo + b0 + 3 * kLanes, bias_relu(acc3, bo, relu));
            }
            for (; b0 < Bp; b0 += kLanes) {  // the rest, 16 at a time (Bp is a multiple of 16)
                v16 acc = {};
                for (int64_t i = 0; i < ly.in; ++i) acc += w[i] * ld16(a + i * ld + b0);
                st16(zo + b0, bias_relu(acc, bo, relu));
            }
        }
    }

    // Loss (double, fixed order) and the output gradient (pad columns zero).
    const float* P = s.act[size_t(L)];
    float* dz = s.d0;
    // Squared errors in double, 8 partial sums over the batch, combined in a fixed order.
    double part[8] = {0.0};
    for (int64_t o = 0; o < d_out; ++o) {
        const float* po = P + o * ld;
        const float* yo = s.yT + o * ld;
        int64_t b = 0;
        for (; b + 8 <= B; b += 8)
            for (int64_t k = 0; k < 8; ++k) {
                const double d = double(po[b + k]) - double(yo[b + k]);
                part[k] += d * d;
            }
        for (; b < B; ++b) {
            const double d = double(po[b]) - double(yo[b]);
            part[b & 7] += d * d;
        }
    }
    const double sq = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
    const double count = sink ? sink->count : double(B) * double(d_out);
    double loss;
    float scale;
    if (rule.mode == MlpMode::torch) {
        loss = sq / count;
        scale = float(2.0 / count);
    } else {
        loss = 0.5 * sq / count;
        if (rule.alpha != 0.0f) {
            double w2 = 0.0;
            for (const MlpLayer& ly : layers)
                for (int64_t j = 0; j < ly.in * ly.out; ++j) w2 += double(ly.weight[j]) * ly.weight[j];
            loss += 0.5 * double(rule.alpha) * w2 / double(B);
        }
        scale = float(1.0 / double(B));
    }
    if (!sink && !std::isfinite(loss) && !allow_nonfinite) return loss;
    // A net that ends in ReLU: dLoss/dZ = dLoss/dP * (P > 0), as relu_backward (NaN gives 0).
    const bool last_relu = layers[size_t(L - 1)].relu;
    for (int64_t o = 0; o < d_out; ++o) {
        const float* po = P + o * ld;
        const float* yo = s.yT + o * ld;
        float* d = dz + o * ld;
        for (int64_t b = 0; b < B; ++b) {
            const float g = scale * (po[b] - yo[b]);
            d[b] = last_relu && !(po[b] > 0.0f) ? 0.0f : g;
        }
        for (int64_t b = B; b < Bp; ++b) d[b] = 0.0f;
    }

    // Backward, last layer first. dz (out, ld) is dLoss/dZ_l with pad columns zero.
    const float l2 = rule.mode == MlpMode::sklearn ? float(double(rule.alpha) / double(B)) : 0.0f;
    float* sink_end = sink ? sink->buf + mlp_grad_buffer_size(layers) - 1 : nullptr;
    for (int64_t l = L - 1; l >= 0; --l) {
        const MlpLayer& ly = layers[size_t(l)];
        const float* a = s.act[size_t(l)];
        // Weight gradient gw (out, in) = dz @ a^T over the batch; bias gradient gb (out).
        for (int64_t o = 0; o < ly.out; ++o) {
            const float* dzo = dz + o * ld;
            int64_t i = 0;
            for (; i + 4 <= ly.in; i += 4) dot16x4(s.gw + o * ly.in + i, dzo, a + i * ld, ld, Bp);
            for (; i < ly.in; ++i) s.gw[o * ly.in + i] = dot16(dzo, a + i * ld, Bp);
            if (ly.bias) s.gb[o] = sum16(dzo, Bp);
        }
        // Input gradient (before W changes): da (in, ld) = W^T @ dz, masked by the ReLU below.
        float* da = dz == s.d0 ? s.d1 : s.d0;
        if (l > 0) {
            const bool mask = layers[size_t(l - 1)].relu;
            for (int64_t i = 0; i < ly.in; ++i) {
                float* di = da + i * ld;
                const float* ai = a + i * ld;
                for (int64_t b0 = 0; b0 < Bp; b0 += kLanes) {  // one register per 16 samples
                    v16 acc = {};
                    for (int64_t o = 0; o < ly.out; ++o)
                        acc += ly.weight[o * ly.in + i] * ld16(dz + o * ld + b0);
                    if (mask) {
                        const v16 av = ld16(ai + b0);
                        const v16 zero = {};
                        acc = av > zero ? acc : zero;
                    }
                    st16(di + b0, acc);
                }
            }
        }
        if (sink) {  // this layer's slot: weight (out, in), then bias (out)
            if (ly.bias) {
                sink_end -= ly.out;
                std::copy(s.gb, s.gb + ly.out, sink_end);
            }
            sink_end -= ly.in * ly.out;
            std::copy(s.gw, s.gw + ly.in * ly.out, sink_end);
        } else {
            if (!ly.frozen_weight)
                update_param(ly.weight, s.gw, ly.weight_buf, ly.in * ly.out, rule, first_step, l2);
            if (ly.bias && !ly.frozen_bias)
                update_param(ly.bias, s.gb, ly.bias_buf, ly.out, rule, first_step, 0.0f);
        }
        dz = da;
    }
    return loss;
}

}  // namespace
}  // namespace fastmlp::detail
