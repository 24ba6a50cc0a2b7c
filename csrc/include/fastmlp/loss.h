// fastmlp losses: the one home of their numeric rules.
//
// Every path uses these definitions: the CPU loss kernels (csrc/cpu/losses.cpp), their CUDA twins
// (csrc/cuda/losses_kernels.cuh) and the fused trainers (CPU and CUDA). The functions are
// __host__ __device__ under nvcc (FASTMLP_HD from activation.h). Semantics are PyTorch's.
//
// Element-wise losses: x is the input (prediction or logit), t the target, d = x - t.
// loss_elem_value gives the unreduced per-element loss l(x, t); loss_elem_grad gives dl/dx of it.
// A caller applies the reduction itself: 'none' keeps l, 'sum' adds, 'mean' adds and divides by
// the element count (the gradient is then grad * upstream / count). Accumulate sums in double.
//
//   kind             value l(x, t)                                  dl/dx
//   mse              d^2                                            2 d
//   l1               |d|                                            sign(d) (0 at 0; NaN stays NaN)
//   smooth_l1 (b=p0) |d| < b ? 0.5 d^2 / b : |d| - 0.5 b            |d| < b ? d / b : sign(d)
//                    (b == 0 is l1, as PyTorch)
//   huber (delta=p0) |d| <= delta ? 0.5 d^2 : delta (|d| - 0.5 delta) clamp(d, -delta, delta)
//   bce_with_logits  (1 - t) x + lw (log1p(exp(-|x|)) + max(-x, 0))  lw sigmoid(x) - pw t
//                    lw = 1 + (pw - 1) t, pw = pos_weight (1 without one); a per-element weight w
//                    multiplies both (callers do that).
//
// Softmax cross-entropy works on a row of C logits x[c * stride] (stride 1 for (N, C) inputs, D for
// (N, C, D) inputs). With lse = log(sum_c exp(x_c)) computed max-subtracted, logp_c = x_c - lse and
// p_c = exp(logp_c) (exponentials in float, sums in double), the row loss is  -sum_c a_c logp_c  and its gradient  dx_c = A p_c - a_c,
// A = sum_c a_c, where the coefficients a_c are
//   class index y, label smoothing s, class weight w (all ones without one):
//        a_c = (1 - s) w_y [c == y] + (s / C) w_c
//   class probabilities t_c:   a_c = w_c ((1 - s) t_c + s / C)
// Reductions (PyTorch's): 'mean' divides the sum of row losses by the sum of w_y over the rows that
// are not ignore_index for class-index targets, and by the number of rows for probability targets.
// Rows whose target is ignore_index have loss 0, gradient 0 and weight 0.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "fastmlp/activation.h"  // FASTMLP_HD

namespace fastmlp {

enum class Loss : int32_t {
    mse = 0,
    cross_entropy = 1,
    bce_with_logits = 2,
    l1 = 3,
    huber = 4,
    smooth_l1 = 5,
};
constexpr int32_t kLossCount = 6;

// PyTorch's reduction codes (torch._Reduction.get_enum): none 0, mean 1, sum 2.
enum class Reduction : int32_t { none = 0, mean = 1, sum = 2 };

// A loss with its parameter p0 (smooth_l1: beta, huber: delta; ignored by the others).
struct LossParams {
    Loss kind = Loss::mse;
    float p0 = 1.0f;
};

FASTMLP_HD float loss_sign(float d) {
    if (d != d) return d;
    return d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
}

// log(1 + exp(-|x|)) + max(-x, 0) = -log(sigmoid(x)), stable for every x.
FASTMLP_HD float loss_softplus_neg(float x) {
    return log1pf(expf(-fabsf(x))) + fmaxf(-x, 0.0f);
}

// Unreduced per-element loss. pw: pos_weight for bce_with_logits (pass 1 without one).
// cross_entropy is not element-wise (see the row rule below); it gives 0 here.
FASTMLP_HD float loss_elem_value(float x, float t, LossParams p, float pw = 1.0f) {
    switch (p.kind) {
        case Loss::mse: {
            float d = x - t;
            return d * d;
        }
        case Loss::l1: return fabsf(x - t);
        case Loss::smooth_l1: {
            float ad = fabsf(x - t);
            if (p.p0 == 0.0f) return ad;
            return ad < p.p0 ? 0.5f * ad * ad / p.p0 : ad - 0.5f * p.p0;
        }
        case Loss::huber: {
            float ad = fabsf(x - t);
            return ad <= p.p0 ? 0.5f * ad * ad : p.p0 * (ad - 0.5f * p.p0);
        }
        case Loss::bce_with_logits: {
            float lw = 1.0f + (pw - 1.0f) * t;
            return (1.0f - t) * x + lw * loss_softplus_neg(x);
        }
        case Loss::cross_entropy: return 0.0f;
    }
    return 0.0f;
}

// dl/dx of the unreduced per-element loss (callers multiply by upstream gradient and 1/count).
FASTMLP_HD float loss_elem_grad(float x, float t, LossParams p, float pw = 1.0f) {
    switch (p.kind) {
        case Loss::mse: return 2.0f * (x - t);
        case Loss::l1: return loss_sign(x - t);
        case Loss::smooth_l1: {
            float d = x - t;
            if (p.p0 == 0.0f) return loss_sign(d);
            return fabsf(d) < p.p0 ? d / p.p0 : loss_sign(d);
        }
        case Loss::huber: {
            float d = x - t;
            if (d != d) return d;
            return d < -p.p0 ? -p.p0 : (d > p.p0 ? p.p0 : d);
        }
        case Loss::bce_with_logits: {
            float lw = 1.0f + (pw - 1.0f) * t;
            return lw * act_sigmoid_scalar(x) - pw * t;
        }
        case Loss::cross_entropy: return 0.0f;
    }
    return 0.0f;
}

// ---- softmax cross-entropy, one row of C logits x[c * stride] ----

// exp(x) for the softmax (every exponential below): Cody-Waite reduction x = k ln2 + r and Cephes'
// degree-5 polynomial for exp(r) (within 2 ulp of expf), branch-free so that loops over it
// vectorize. x below -87.33 gives 0, NaN stays NaN; meant for x <= 0 (x - max), x <= 88.
FASTMLP_HD float loss_expf(float x) {
    const float xc = x < -87.33654f ? -87.33654f : (x > 88.0f ? 88.0f : x);  // (NaN: see below)
    const float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
    float r = xc - kf * 0.693359375f;
    r = r + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float er = p * r * r + r + 1.0f;
    const int32_t bits = (int32_t(kf) + 127) << 23;
    float two_k;
    memcpy(&two_k, &bits, sizeof(float));
    const float y = er * two_k;
    return x != x ? x : (x < -87.33654f ? 0.0f : y);
}

// lse = max + log(sum exp(x - max)): each exp in float (loss_expf, x - max <= 0), the sum in double. NaN in the row gives NaN; a row of -inf
// gives -inf (as PyTorch's log_softmax: every logp is then NaN).
FASTMLP_HD double ce_row_logsumexp(const float* x, int64_t C, int64_t stride) {
    float m = -INFINITY;
    bool nan = false;
    for (int64_t c = 0; c < C; ++c) {
        float v = x[c * stride];
        if (v != v) nan = true;
        m = v > m ? v : m;
    }
    if (nan) return (double)NAN;
    if (m == -INFINITY || m == INFINITY) return (double)m;
    double s = 0.0;
    for (int64_t c = 0; c < C; ++c) s += (double)loss_expf(x[c * stride] - m);
    return (double)m + log(s);
}

// The weight a row contributes to the 'mean' denominator: w_y (1 without class weights).
FASTMLP_HD double ce_row_weight(int64_t y, const float* w) {
    return w ? (double)w[y] : 1.0;
}

// Row loss for a class-index target y (not ignore_index): -sum_c a_c logp_c, a_c as above.
// w: class weights (C) or null; s: label smoothing in [0, 1].
FASTMLP_HD double ce_row_loss_index(const float* x, int64_t C, int64_t stride, double lse, int64_t y,
                                    const float* w, float s) {
    double nll = -ce_row_weight(y, w) * ((double)x[y * stride] - lse);
    if (s == 0.0f) return nll;
    double smooth = 0.0;
    for (int64_t c = 0; c < C; ++c) {
        double wc = w ? (double)w[c] : 1.0;
        smooth -= wc * ((double)x[c * stride] - lse);
    }
    return (1.0 - (double)s) * nll + ((double)s / (double)C) * smooth;
}

// A = sum_c a_c for a class-index target: (1 - s) w_y + (s / C) sum_c w_c. wsum = sum_c w_c
// (C without weights), which callers compute once for all rows.
FASTMLP_HD double ce_row_coef_sum_index(int64_t y, const float* w, float s, double wsum, int64_t C) {
    return (1.0 - (double)s) * ce_row_weight(y, w) + ((double)s / (double)C) * wsum;
}

// Gradient of the row loss at class c for a class-index target: scale * (A p_c - a_c).
// A from ce_row_coef_sum_index; scale folds the reduction and the upstream gradient.
FASTMLP_HD float ce_grad_index(float xc, int64_t c, double lse, int64_t y, const float* w, float s,
                               double A, int64_t C, double scale) {
    double p = (double)loss_expf((float)((double)xc - lse));
    double wc = w ? (double)w[c] : 1.0;
    double a = ((double)s / (double)C) * wc;
    if (c == y) a += (1.0 - (double)s) * wc;
    return (float)(scale * (A * p - a));
}

// The class-index gradient of a whole contiguous row from its exponentials e_c = exp(x_c - max)
// and inv_sum = 1 / sum_c e_c (so p_c = e_c inv_sum): dx_c = scale (A p_c - a_c), the rule of
// ce_grad_index in the form the CPU kernel vectorizes (float products; dx may equal e).
FASTMLP_HD void ce_row_grad_index_exp(float* dx, const float* e, int64_t C, int64_t y,
                                      const float* w, float s, double A, double inv_sum,
                                      double scale) {
    const float k1 = (float)(scale * A * inv_sum);
    const float k2 = (float)(scale * (double)s / (double)C);
    if (w) {
        for (int64_t c = 0; c < C; ++c) dx[c] = k1 * e[c] - k2 * w[c];
    } else {
        for (int64_t c = 0; c < C; ++c) dx[c] = k1 * e[c] - k2;
    }
    dx[y] -= (float)(scale * (1.0 - (double)s) * ce_row_weight(y, w));
}

// Row loss for class-probability targets t[c * stride]: -sum_c w_c ((1 - s) t_c + s / C) logp_c.
FASTMLP_HD double ce_row_loss_prob(const float* x, const float* t, int64_t C, int64_t stride,
                                   double lse, const float* w, float s) {
    double acc = 0.0;
    for (int64_t c = 0; c < C; ++c) {
        double wc = w ? (double)w[c] : 1.0;
        double tc = (1.0 - (double)s) * (double)t[c * stride] + (double)s / (double)C;
        acc -= wc * tc * ((double)x[c * stride] - lse);
    }
    return acc;
}

// A = sum_c w_c ((1 - s) t_c + s / C) for class-probability targets.
FASTMLP_HD double ce_row_coef_sum_prob(const float* t, int64_t C, int64_t stride, const float* w,
                                       float s) {
    double acc = 0.0;
    for (int64_t c = 0; c < C; ++c) {
        double wc = w ? (double)w[c] : 1.0;
        acc += wc * ((1.0 - (double)s) * (double)t[c * stride] + (double)s / (double)C);
    }
    return acc;
}

// Gradient at class c for probability targets: scale * (A p_c - a_c), a_c = w_c ((1-s) t_c + s/C).
FASTMLP_HD float ce_grad_prob(float xc, float tc, double wc, double lse, float s, double A, int64_t C,
                              double scale) {
    double p = (double)loss_expf((float)((double)xc - lse));
    double a = wc * ((1.0 - (double)s) * (double)tc + (double)s / (double)C);
    return (float)(scale * (A * p - a));
}

}  // namespace fastmlp
