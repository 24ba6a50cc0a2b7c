// Bias, ReLU, MSE and SGD kernels on the CPU. Element-wise loops are split across threads in
// fixed chunks; reductions combine fixed-size chunk partials in chunk order, so every result is
// independent of the thread count.
#include "fastmlp/elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastmlp/cpu_features.h"
#include "fastmlp/optimizer.h"  // sgd_step_scalar: the SGD rule

namespace fastmlp {

namespace {
constexpr int64_t kChunk = 1 << 14;  // elements per reduction chunk (fixed: part of the result)

inline int threads_elementwise(int64_t n) { return threads_for(double(n) * 8.0); }
}  // namespace

void bias_forward(float* out, const float* inp, const float* bias, int64_t B, int64_t C) {
    // out (B,C), inp (B,C), bias (C)
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(B * C))
    for (int64_t i = 0; i < B; ++i) {
        const float* x = inp + i * C;
        float* y = out + i * C;
        for (int64_t j = 0; j < C; ++j) y[j] = x[j] + bias[j];
    }
}

void bias_backward(float* dbias, const float* dout, int64_t B, int64_t C, bool accumulate) {
    // dbias (C), dout (B,C). Threads split columns; each column sums its rows in order in double.
    const int64_t kCols = 64;
    const int64_t nblocks = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(B * C))
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t j0 = blk * kCols, j1 = std::min(C, j0 + kCols);
        double acc[kCols] = {0.0};
        for (int64_t i = 0; i < B; ++i) {
            const float* row = dout + i * C;
            for (int64_t j = j0; j < j1; ++j) acc[j - j0] += double(row[j]);
        }
        for (int64_t j = j0; j < j1; ++j)
            dbias[j] = accumulate ? float(double(dbias[j]) + acc[j - j0]) : float(acc[j - j0]);
    }
}

void relu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(n))
    for (int64_t i = 0; i < n; ++i) {
        const float v = inp[i];
        out[i] = v > 0.0f ? v : (v != v ? v : 0.0f);
    }
}

void relu_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(n))
    for (int64_t i = 0; i < n; ++i) {
        // Load unconditionally so the compiler makes a select, not a branch (with half the
        // activations at 0 the branch mispredicts every other element: 5 ns per element).
        const float d = dout[i];
        dinp[i] = out[i] > 0.0f ? d : 0.0f;
    }
}

double mse_forward(const float* pred, const float* target, int64_t n) {
    if (n == 0) return std::numeric_limits<double>::quiet_NaN();
    const int64_t nchunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(size_t(nchunks), 0.0);
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(n))
    for (int64_t c = 0; c < nchunks; ++c) {
        const int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
        double s = 0.0;
        for (int64_t i = i0; i < i1; ++i) {
            const double d = double(pred[i]) - double(target[i]);
            s += d * d;
        }
        part[size_t(c)] = s;
    }
    double total = 0.0;
    for (double s : part) total += s;
    return total / double(n);
}

void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float scale) {
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(n))
    for (int64_t i = 0; i < n; ++i) dpred[i] = scale * (pred[i] - target[i]);
}

void sgd_step(float* param, const float* grad, float* buf, int64_t n, const SgdOptions& o,
              bool first_step) {
    // The rule is optimizer.h's sgd_step_scalar (shared with the CUDA kernels and the trainers).
    if (o.momentum != 0.0f) {
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(n))
        for (int64_t i = 0; i < n; ++i) sgd_step_scalar(param[i], grad[i], buf[i], o, first_step);
    } else {
#pragma omp parallel for schedule(static) num_threads(threads_elementwise(n))
        for (int64_t i = 0; i < n; ++i) {
            float unused = 0.0f;  // no momentum: the buffer is never touched
            sgd_step_scalar(param[i], grad[i], unused, o, first_step);
        }
    }
}

}  // namespace fastmlp
