// Loss kernels on the CPU: softmax cross-entropy (class-index and class-probability targets) and
// the element-wise losses. The numeric rules are loss.h's. Threads split rows (cross-entropy) or
// fixed element chunks (element-wise); every sum is formed from per-row / per-chunk double
// partials added in order, so results do not depend on the thread count.
// GCC keeps loops that compute floating point speculatively scalar unless told that FP exception
// flags need not be preserved (no value changes): the softmax exponential loop vectorizes then.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "fastmlp/losses.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fastmlp/cpu_features.h"

namespace fastmlp {

namespace {
constexpr int64_t kChunk = 1 << 14;  // elements per reduction chunk (fixed: part of the result)

inline int threads_rows(int64_t elems) { return threads_for(double(elems) * 24.0); }
inline int threads_elems(int64_t n) { return threads_for(double(n) * 16.0); }

// Sum over non-ignored rows of weight[target] (the 'mean' denominator), in row order.
double ce_weight_sum(const int64_t* target, const float* weight, int64_t R, int64_t ignore_index) {
    double s = 0.0;
    for (int64_t r = 0; r < R; ++r) {
        const int64_t y = target[r];
        if (y != ignore_index) s += ce_row_weight(y, weight);
    }
    return s;
}

double weights_total(const float* weight, int64_t C) {
    if (!weight) return double(C);
    double s = 0.0;
    for (int64_t c = 0; c < C; ++c) s += double(weight[c]);
    return s;
}

// One row of class-index cross-entropy: returns its loss; writes the gradient when dx is given
// (gscale: the factor for this row; dx may equal x).
inline double ce_index_row(float* dx, const float* x, int64_t C, int64_t stride, int64_t y,
                           const float* w, float s, double wsum, int64_t ignore_index,
                           double gscale) {
    if (y == ignore_index) {
        if (dx)
            for (int64_t c = 0; c < C; ++c) dx[c * stride] = 0.0f;
        return 0.0;
    }
    const double lse = ce_row_logsumexp(x, C, stride);
    const double loss = ce_row_loss_index(x, C, stride, lse, y, w, s);
    if (dx) {
        const double A = ce_row_coef_sum_index(y, w, s, wsum, C);
        for (int64_t c = 0; c < C; ++c)
            dx[c * stride] = ce_grad_index(x[c * stride], c, lse, y, w, s, A, C, gscale);
    }
    return loss;
}

// The same row for a contiguous row (stride 1), vectorised: one exponential per logit, kept in
// e (dx when the gradient is wanted, else scratch of C floats), the gradient from it
// (ce_row_grad_index_exp). Rows holding NaN or infinities take ce_index_row.
inline double ce_index_row_contig(float* dx, float* scratch, const float* x, int64_t C, int64_t y,
                                  const float* w, float s, double wsum, int64_t ignore_index,
                                  double gscale) {
    if (y == ignore_index) return ce_index_row(dx, x, C, 1, y, w, s, wsum, ignore_index, gscale);
    float m = -INFINITY;
    bool bad = false;
#pragma omp simd reduction(max : m) reduction(| : bad)
    for (int64_t c = 0; c < C; ++c) {
        const float v = x[c];
        m = v > m ? v : m;
        bad |= !(v - v == 0.0f);  // NaN or an infinity
    }
    if (bad) return ce_index_row(dx, x, C, 1, y, w, s, wsum, ignore_index, gscale);
    float* e = dx ? dx : scratch;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) e[c] = loss_expf(x[c] - m);
    double acc[4] = {0.0, 0.0, 0.0, 0.0};  // fixed order: element c goes to acc[c % 4]
    int64_t c = 0;
    for (; c + 4 <= C; c += 4)
        for (int k = 0; k < 4; ++k) acc[k] += double(e[c + k]);
    for (; c < C; ++c) acc[c % 4] += double(e[c]);
    const double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    const double lse = double(m) + std::log(sum);
    const double loss = ce_row_loss_index(x, C, 1, lse, y, w, s);
    if (dx)
        ce_row_grad_index_exp(dx, e, C, y, w, s, ce_row_coef_sum_index(y, w, s, wsum, C),
                              1.0 / sum, gscale);
    return loss;
}

// Runs fn(n, d, r) for every row r = n * D + d, threads split n; returns the per-row losses'
// sum in row order (fn returns the row loss).
template <class Fn>
double for_rows(int64_t N, int64_t C, int64_t D, float* row_loss, Fn fn) {
    const int64_t R = N * D;
    std::vector<double> part(size_t(R > 0 ? R : 0), 0.0);
    double* pp = part.data();
#pragma omp parallel for schedule(static) num_threads(threads_rows(N * C * D))
    for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) {
            const int64_t r = n * D + d;
            const double l = fn(n, d, r);
            pp[r] = l;
            if (row_loss) row_loss[r] = float(l);
        }
    double total = 0.0;
    for (int64_t r = 0; r < R; ++r) total += pp[r];
    return total;
}
// for_rows for D == 1 with a per-thread scratch row of C floats: fn(n, scratch).
template <class Fn>
double for_rows_scratch(int64_t N, int64_t C, float* row_loss, Fn fn) {
    std::vector<double> part(size_t(N > 0 ? N : 0), 0.0);
    double* pp = part.data();
#pragma omp parallel num_threads(threads_rows(N * C))
    {
        std::vector<float> scratch(static_cast<size_t>(C > 0 ? C : 1));
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; ++n) {
            const double l = fn(n, scratch.data());
            pp[n] = l;
            if (row_loss) row_loss[n] = float(l);
        }
    }
    double total = 0.0;
    for (int64_t n = 0; n < N; ++n) total += pp[n];
    return total;
}
}  // namespace

CeSums cross_entropy_forward(float* row_loss, const float* logits, const int64_t* target,
                             const float* weight, int64_t N, int64_t C, int64_t D,
                             int64_t ignore_index, float label_smoothing) {
    // logits (N,C,D), target (N,D), weight (C) or null, row_loss (N,D) or null
    CeSums out;
    out.weight = ce_weight_sum(target, weight, N * D, ignore_index);
    if (D == 1) {
        const double wsum = weights_total(weight, C);
        out.loss = for_rows_scratch(N, C, row_loss, [&](int64_t n, float* scratch) {
            return ce_index_row_contig(nullptr, scratch, logits + n * C, C, target[n], weight,
                                       label_smoothing, wsum, ignore_index, 0.0);
        });
        return out;
    }
    out.loss = for_rows(N, C, D, row_loss, [&](int64_t n, int64_t d, int64_t r) {
        return ce_index_row(nullptr, logits + n * C * D + d, C, D, target[r], weight,
                            label_smoothing, 0.0, ignore_index, 0.0);
    });
    return out;
}

void cross_entropy_backward(float* dlogits, const float* logits, const int64_t* target,
                            const float* weight, const float* drow, double scale, int64_t N,
                            int64_t C, int64_t D, int64_t ignore_index, float label_smoothing) {
    // dlogits (N,C,D), logits (N,C,D), target (N,D), weight (C) or null, drow (N,D) or null
    const double wsum = weights_total(weight, C);
#pragma omp parallel for schedule(static) num_threads(threads_rows(N * C * D))
    for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) {
            const int64_t r = n * D + d, off = n * C * D + d;
            const double g = drow ? scale * double(drow[r]) : scale;
            ce_index_row(dlogits + off, logits + off, C, D, target[r], weight, label_smoothing,
                         wsum, ignore_index, g);
        }
}

CeSums cross_entropy_forward_backward(float* dlogits, float* row_loss, const float* logits,
                                      const int64_t* target, const float* weight, int64_t N,
                                      int64_t C, int64_t D, int64_t ignore_index,
                                      float label_smoothing, Reduction reduction) {
    CeSums out;
    out.weight = ce_weight_sum(target, weight, N * D, ignore_index);
    // 'mean' divides by the weight sum (0 when every row is ignored: NaN loss, as PyTorch, whose
    // gradient is then NaN too); 'sum' and 'none' seed each row with 1.
    const double scale = reduction == Reduction::mean ? 1.0 / out.weight : 1.0;
    const double wsum = weights_total(weight, C);
    if (D == 1) {
        out.loss = for_rows_scratch(N, C, row_loss, [&](int64_t n, float*) {
            return ce_index_row_contig(dlogits + n * C, nullptr, logits + n * C, C, target[n],
                                       weight, label_smoothing, wsum, ignore_index, scale);
        });
        return out;
    }
    out.loss = for_rows(N, C, D, row_loss, [&](int64_t n, int64_t d, int64_t r) {
        const int64_t off = n * C * D + d;
        return ce_index_row(dlogits + off, logits + off, C, D, target[r], weight, label_smoothing,
                            wsum, ignore_index, scale);
    });
    return out;
}

double cross_entropy_prob_forward(float* row_loss, const float* logits, const float* target,
                                  const float* weight, int64_t N, int64_t C, int64_t D,
                                  float label_smoothing) {
    // logits (N,C,D), target (N,C,D), weight (C) or null, row_loss (N,D) or null
    return for_rows(N, C, D, row_loss, [&](int64_t n, int64_t d, int64_t) {
        const int64_t off = n * C * D + d;
        const double lse = ce_row_logsumexp(logits + off, C, D);
        return ce_row_loss_prob(logits + off, target + off, C, D, lse, weight, label_smoothing);
    });
}

void cross_entropy_prob_backward(float* dlogits, const float* logits, const float* target,
                                 const float* weight, const float* drow, double scale, int64_t N,
                                 int64_t C, int64_t D, float label_smoothing) {
    // dlogits (N,C,D), logits (N,C,D), target (N,C,D), weight (C) or null, drow (N,D) or null
#pragma omp parallel for schedule(static) num_threads(threads_rows(N * C * D))
    for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) {
            const int64_t r = n * D + d, off = n * C * D + d;
            const float* x = logits + off;
            const float* t = target + off;
            const double g = drow ? scale * double(drow[r]) : scale;
            const double lse = ce_row_logsumexp(x, C, D);
            const double A = ce_row_coef_sum_prob(t, C, D, weight, label_smoothing);
            for (int64_t c = 0; c < C; ++c) {
                const double wc = weight ? double(weight[c]) : 1.0;
                dlogits[off + c * D] =
                    ce_grad_prob(x[c * D], t[c * D], wc, lse, label_smoothing, A, C, g);
            }
        }
}

double loss_elementwise_forward(float* out, const float* x, const float* t, const float* w,
                                const float* pw, int64_t n, int64_t P, LossParams p) {
    // x, t, out (n); w (n) or null; pw (P) or null
    const int64_t nchunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(size_t(nchunks), 0.0);
#pragma omp parallel for schedule(static) num_threads(threads_elems(n))
    for (int64_t k = 0; k < nchunks; ++k) {
        const int64_t i0 = k * kChunk, i1 = std::min(n, i0 + kChunk);
        double s = 0.0;
        for (int64_t i = i0; i < i1; ++i) {
            float l = loss_elem_value(x[i], t[i], p, pw ? pw[i % P] : 1.0f);
            if (w) l *= w[i];
            if (out) out[i] = l;
            s += double(l);
        }
        part[size_t(k)] = s;
    }
    double total = 0.0;
    for (double s : part) total += s;
    return total;
}

void loss_elementwise_backward(float* dx, const float* x, const float* t, const float* w,
                               const float* pw, const float* dout, int64_t n, int64_t P,
                               LossParams p, float scale) {
    // dx, x, t (n); w, dout (n) or null; pw (P) or null
#pragma omp parallel for schedule(static) num_threads(threads_elems(n))
    for (int64_t i = 0; i < n; ++i) {
        float g = scale * loss_elem_grad(x[i], t[i], p, pw ? pw[i % P] : 1.0f);
        if (w) g *= w[i];
        if (dout) g *= dout[i];
        dx[i] = g;
    }
}

double loss_elementwise_forward_backward(float* dx, const float* x, const float* t, const float* w,
                                         const float* pw, int64_t n, int64_t P, LossParams p,
                                         float scale) {
    const int64_t nchunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(size_t(nchunks), 0.0);
#pragma omp parallel for schedule(static) num_threads(threads_elems(n))
    for (int64_t k = 0; k < nchunks; ++k) {
        const int64_t i0 = k * kChunk, i1 = std::min(n, i0 + kChunk);
        double s = 0.0;
        for (int64_t i = i0; i < i1; ++i) {
            const float xi = x[i], ti = t[i], pwi = pw ? pw[i % P] : 1.0f;
            float l = loss_elem_value(xi, ti, p, pwi);
            float g = scale * loss_elem_grad(xi, ti, p, pwi);
            if (w) {
                l *= w[i];
                g *= w[i];
            }
            s += double(l);
            dx[i] = g;
        }
        part[size_t(k)] = s;
    }
    double total = 0.0;
    for (double s : part) total += s;
    return total;
}

CeSums cross_entropy_forward_reference(float* row_loss, const float* logits, const int64_t* target,
                                       const float* weight, int64_t N, int64_t C, int64_t D,
                                       int64_t ignore_index, float label_smoothing) {
    // The textbook form in double: log_softmax, then the weighted, smoothed negative log-likelihood.
    CeSums out;
    std::vector<double> logp(static_cast<size_t>(C));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) {
            const int64_t r = n * D + d, y = target[r];
            double l = 0.0;
            if (y != ignore_index) {
                double m = -INFINITY;
                for (int64_t c = 0; c < C; ++c) m = std::max(m, double(logits[n * C * D + c * D + d]));
                double s = 0.0;
                for (int64_t c = 0; c < C; ++c) s += std::exp(double(logits[n * C * D + c * D + d]) - m);
                for (int64_t c = 0; c < C; ++c)
                    logp[size_t(c)] = double(logits[n * C * D + c * D + d]) - m - std::log(s);
                const double wy = weight ? double(weight[y]) : 1.0;
                double smooth = 0.0;
                for (int64_t c = 0; c < C; ++c) smooth -= (weight ? double(weight[c]) : 1.0) * logp[size_t(c)];
                l = (1.0 - label_smoothing) * (-wy * logp[size_t(y)]) +
                    (double(label_smoothing) / double(C)) * smooth;
                out.weight += wy;
            }
            if (row_loss) row_loss[r] = float(l);
            out.loss += l;
        }
    return out;
}

}  // namespace fastmlp
