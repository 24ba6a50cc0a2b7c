// The device code of fastmlp's CUDA loss kernels (see losses.cu), kept apart from the host wrappers
// so that tests/cuda/losses_emulator.cpp can run it on the CPU (cuda_emulation.h). The numeric
// rules are loss.h's (shared with the CPU kernels); reductions are fixed-order trees in double,
// no atomics, so results are deterministic.
//
// Softmax cross-entropy runs one block per row (grid-stride over rows): the block's threads split
// the row's C classes, a tree gives the max, the sum of exponentials and (with label smoothing or
// probability targets) the coefficient sums, then each thread writes the gradient of its classes.
#pragma once
#include <cstdint>

#include "fastmlp/loss.h"

namespace fastmlp::cuda::losses_impl {

constexpr int kThreads = 256;

// Tree reductions over the block; every thread gets the result (a barrier follows the read).
template <int THREADS>
__device__ double block_sum_all(double v, double* sm) {
    sm[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) sm[threadIdx.x] += sm[threadIdx.x + s];
        __syncthreads();
    }
    const double r = sm[0];
    __syncthreads();
    return r;
}

// max that keeps NaN (as torch's max): NaN wins over everything.
__device__ __forceinline__ float nan_max(float a, float b) {
    if (a != a) return a;
    if (b != b) return b;
    return b > a ? b : a;
}

template <int THREADS>
__device__ float block_max_all(float v, float* sm) {
    sm[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) sm[threadIdx.x] = nan_max(sm[threadIdx.x], sm[threadIdx.x + s]);
        __syncthreads();
    }
    const float r = sm[0];
    __syncthreads();
    return r;
}

// lse of the row x[c * stride] (the block's threads split c), as ce_row_logsumexp.
__device__ double block_logsumexp(const float* x, int64_t C, int64_t stride, float* smf,
                                  double* smd) {
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = nan_max(m, x[c * stride]);
    m = block_max_all<kThreads>(m, smf);
    if (m != m || m == INFINITY || m == -INFINITY) return double(m);
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += double(loss_expf(x[c * stride] - m));
    s = block_sum_all<kThreads>(s, smd);
    return double(m) + log(s);
}

// Class-index targets. logits (N,C,D), target (N,D), weight (C) or null, row_loss (N*D) doubles,
// dlogits (N,C,D) or null: scale * drow[r] * (A p - a), divided by *denom when denom is not null
// (the 'mean' weight sum, computed on the device beforehand). wtotal: the device sum of weight
// (null: C, no weights).
// A target outside [0, C) (the bindings reject those) gives a NaN row instead of a bad read.
__global__ void ce_index_kernel(float* dlogits, double* row_loss, const float* logits,
                                const int64_t* target, const float* weight, const double* denom,
                                const float* drow, double scale, int64_t N, int64_t C, int64_t D,
                                int64_t ignore_index, float ls, const double* wtotal) {
    __shared__ float smf[kThreads];
    __shared__ double smd[kThreads];
    const int64_t R = N * D;
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const int64_t n = r / D, d = r % D, off = n * C * D + d;
        const float* x = logits + off;
        const int64_t y = target[r];
        const bool bad = y != ignore_index && (y < 0 || y >= C);
        if (y == ignore_index || bad) {  // uniform over the block: y is the row's
            if (dlogits)
                for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
                    dlogits[off + c * D] = bad ? NAN : 0.0f;
            if (threadIdx.x == 0) row_loss[r] = bad ? NAN : 0.0;
            continue;
        }
        const double lse = block_logsumexp(x, C, D, smf, smd);
        double smooth = 0.0;
        if (ls != 0.0f) {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
                smooth -= (weight ? double(weight[c]) : 1.0) * (double(x[c * D]) - lse);
            smooth = block_sum_all<kThreads>(smooth, smd);
        }
        if (threadIdx.x == 0) {
            const double nll = -ce_row_weight(y, weight) * (double(x[y * D]) - lse);
            row_loss[r] = ls == 0.0f ? nll
                                     : (1.0 - double(ls)) * nll + (double(ls) / double(C)) * smooth;
        }
        if (dlogits) {
            double g = drow ? scale * double(drow[r]) : scale;
            if (denom) g /= *denom;
            const double A = ce_row_coef_sum_index(y, weight, ls, wtotal ? *wtotal : double(C), C);
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
                dlogits[off + c * D] = ce_grad_index(x[c * D], c, lse, y, weight, ls, A, C, g);
        }
    }
}

// Class-probability targets: target (N,C,D) float. Same outputs as ce_index_kernel.
__global__ void ce_prob_kernel(float* dlogits, double* row_loss, const float* logits,
                               const float* target, const float* weight, const float* drow,
                               double scale, int64_t N, int64_t C, int64_t D, float ls) {
    __shared__ float smf[kThreads];
    __shared__ double smd[kThreads];
    const int64_t R = N * D;
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const int64_t n = r / D, d = r % D, off = n * C * D + d;
        const float* x = logits + off;
        const float* t = target + off;
        const double lse = block_logsumexp(x, C, D, smf, smd);
        double loss = 0.0, A = 0.0;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
            const double wc = weight ? double(weight[c]) : 1.0;
            const double a = wc * ((1.0 - double(ls)) * double(t[c * D]) + double(ls) / double(C));
            loss -= a * (double(x[c * D]) - lse);
            A += a;
        }
        loss = block_sum_all<kThreads>(loss, smd);
        if (threadIdx.x == 0) row_loss[r] = loss;
        if (dlogits) {
            A = block_sum_all<kThreads>(A, smd);
            const double g = drow ? scale * double(drow[r]) : scale;
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                const double wc = weight ? double(weight[c]) : 1.0;
                dlogits[off + c * D] = ce_grad_prob(x[c * D], t[c * D], wc, lse, ls, A, C, g);
            }
        }
    }
}

// *out = sum over the non-ignored rows of weight[target] (1 without weights); one block.
__global__ void ce_weight_sum_kernel(double* out, const int64_t* target, const float* weight,
                                     int64_t R, int64_t ignore_index) {
    __shared__ double smd[kThreads];
    double s = 0.0;
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
        const int64_t y = target[r];
        if (y != ignore_index) s += ce_row_weight(y, weight);
    }
    s = block_sum_all<kThreads>(s, smd);
    if (threadIdx.x == 0) *out = s;
}

// *out = sum of w (C floats) in a fixed tree order; one block.
__global__ void weights_total_kernel(double* out, const float* w, int64_t C) {
    __shared__ double smd[kThreads];
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += double(w[c]);
    s = block_sum_all<kThreads>(s, smd);
    if (threadIdx.x == 0) *out = s;
}

// *out = sum of v (n doubles) in a fixed tree order; one block. rows_f (n) or null: v as floats.
__global__ void sum_rows_kernel(double* out, float* rows_f, const double* v, int64_t n) {
    __shared__ double smd[kThreads];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        s += v[i];
        if (rows_f) rows_f[i] = float(v[i]);
    }
    s = block_sum_all<kThreads>(s, smd);
    if (threadIdx.x == 0) *out = s;
}

// Element-wise losses, first pass: partial (gridDim.x) per-block sums of w_i * l(x_i, t_i) over a
// grid-stride walk, in double; out (n) or null receives the unreduced losses.
__global__ void loss_elementwise_forward_kernel(double* partial, float* out, const float* x,
                                                const float* t, const float* w, const float* pw,
                                                int64_t n, int64_t P, LossParams p) {
    __shared__ double smd[kThreads];
    double s = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        float l = loss_elem_value(x[i], t[i], p, pw ? pw[i % P] : 1.0f);
        if (w) l *= w[i];
        if (out) out[i] = l;
        s += double(l);
    }
    s = block_sum_all<kThreads>(s, smd);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// dx (n) = scale * dout_i * w_i * dl/dx (dout, w null: ones). dx may equal x.
__global__ void loss_elementwise_backward_kernel(float* dx, const float* x, const float* t,
                                                 const float* w, const float* pw,
                                                 const float* dout, int64_t n, int64_t P,
                                                 LossParams p, float scale) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        float g = scale * loss_elem_grad(x[i], t[i], p, pw ? pw[i % P] : 1.0f);
        if (w) g *= w[i];
        if (dout) g *= dout[i];
        dx[i] = g;
    }
}

}  // namespace fastmlp::cuda::losses_impl
