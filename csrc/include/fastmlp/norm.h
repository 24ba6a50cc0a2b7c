// fastmlp normalisation layers (LayerNorm over the last dimension, BatchNorm1d over the batch):
// the one home of their numeric rules, used by the general fused trainer (csrc/cpu/mlp_fit.cpp)
// and written __host__ __device__ (FASTMLP_HD) for the CUDA kernels. Semantics are PyTorch's:
//
//   statistics   mean = sum x / n,  var = sum (x - mean)^2 / n  (biased), over the n values of a
//                row (LayerNorm: the C features of one sample) or of a column (BatchNorm1d in
//                training: one feature over the B samples); accumulated in double, in order
//   normalise    xhat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps);  y = xhat * w + b
//                (w, b: the per-feature affine parameters, absent without elementwise_affine /
//                affine)
//   backward     dxhat = dy * w;  dx = rstd / n * (n dxhat - sum dxhat - xhat sum dxhat xhat)
//                over the same n values (statistics of the batch); dx = dxhat * rstd when the
//                statistics are constants (BatchNorm1d normalising with its running statistics)
//                dw = sum over samples of dy * xhat, db = sum of dy
//   running      BatchNorm1d in training with track_running_stats:
//                running_mean = (1 - f) running_mean + f mean
//                running_var  = (1 - f) running_var  + f var * n / (n - 1)   (unbiased)
//                f = momentum, or 1 / num_batches_tracked (after its increment) for momentum=None
//
// The row/column functions take a stride so that one rule serves both layouts of a row-major
// (B, C) matrix: a LayerNorm row is C values at stride 1, a BatchNorm1d column B values at
// stride C.
#pragma once
#include <cmath>
#include <cstdint>

#include "fastmlp/activation.h"  // FASTMLP_HD

namespace fastmlp {

enum class Norm : int32_t {
    none = 0,
    layer = 1,  // LayerNorm(C): per row
    batch = 2,  // BatchNorm1d(C): per column
};
constexpr int kNormCount = 3;

// mean and biased variance of n values x[0], x[stride], ... (two passes, double).
FASTMLP_HD void norm_stats(const float* x, int64_t n, int64_t stride, double& mean, double& var) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += double(x[i * stride]);
    const double m = n > 0 ? s / double(n) : 0.0;
    double q = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = double(x[i * stride]) - m;
        q += d * d;
    }
    mean = m;
    var = n > 0 ? q / double(n) : 0.0;
}

FASTMLP_HD float norm_rstd(double var, float eps) {
    return float(1.0 / sqrt(var + double(eps)));
}

// xhat = (x - mean) * rstd.
FASTMLP_HD float norm_xhat(float x, double mean, float rstd) {
    return float((double(x) - mean) * double(rstd));
}

// y = xhat * w + b (w, b may be null: no affine / no bias); j the feature index.
FASTMLP_HD float norm_affine(float xhat, const float* w, const float* b, int64_t j) {
    float y = w ? xhat * w[j] : xhat;
    return b ? y + b[j] : y;
}

// One row or column set forward: xhat[i*stride] and y[i*stride] from x (n values), the
// statistics of these values; w/b indexed by feature `j` (column) or by i (row) as `per_i` says.
// Returns rstd; mean_out / var_out (may be null) receive the mean and the biased variance. y may
// alias x; xhat may be null.
FASTMLP_HD float norm_forward_set(float* y, float* xhat, const float* x, int64_t n, int64_t stride,
                                  float eps, const float* w, const float* b, bool per_i, int64_t j,
                                  double* mean_out, double* var_out) {
    double mean, var;
    norm_stats(x, n, stride, mean, var);
    const float rstd = norm_rstd(var, eps);
    for (int64_t i = 0; i < n; ++i) {
        const float xh = norm_xhat(x[i * stride], mean, rstd);
        if (xhat) xhat[i * stride] = xh;
        y[i * stride] = norm_affine(xh, w, b, per_i ? i : j);
    }
    if (mean_out) *mean_out = mean;
    if (var_out) *var_out = var;
    return rstd;
}

// Backward over one set normalised with its own statistics: dx (n values at stride, may alias
// dy) from dy, xhat, rstd; w (per feature, null: 1) indexed as in norm_forward_set.
FASTMLP_HD void norm_backward_set(float* dx, const float* dy, const float* xhat, int64_t n,
                                  int64_t stride, float rstd, const float* w, bool per_i,
                                  int64_t j) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double wi = w ? double(w[per_i ? i : j]) : 1.0;
        const double dxh = double(dy[i * stride]) * wi;
        s1 += dxh;
        s2 += dxh * double(xhat[i * stride]);
    }
    const double k = double(rstd) / double(n);
    for (int64_t i = 0; i < n; ++i) {
        const double wi = w ? double(w[per_i ? i : j]) : 1.0;
        const double dxh = double(dy[i * stride]) * wi;
        dx[i * stride] = float(k * (double(n) * dxh - s1 - double(xhat[i * stride]) * s2));
    }
}

// dx for a normalisation by constant statistics (BatchNorm1d on its running statistics).
FASTMLP_HD float norm_backward_const(float dy, float w_j, float rstd) { return dy * w_j * rstd; }

// The running-statistics update of one feature (f: the momentum factor; n: values in the batch).
FASTMLP_HD void norm_running_update(float& running_mean, float& running_var, double mean,
                                    double var_biased, int64_t n, double f) {
    const double unbiased = n > 1 ? var_biased * double(n) / double(n - 1) : var_biased;
    running_mean = float((1.0 - f) * double(running_mean) + f * mean);
    running_var = float((1.0 - f) * double(running_var) + f * unbiased);
}

}  // namespace fastmlp
