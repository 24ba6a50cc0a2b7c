// The device code of the GPU general fused trainer (see mlp_fit.cu and mlp_fit_impl.h), kept apart
// from the host code so that tests/cuda can run it on the CPU (cuda_emulation.h). Every numeric
// rule comes from the shared headers: activation.h (forward/backward), loss.h (element-wise and
// softmax cross-entropy rules), optimizer.h (optim_step_scalar), dropout.h (the same counter
// hash as the CPU trainer, so both draw identical masks) and norm.h (LayerNorm / BatchNorm1d: one
// thread per normalised row or column runs norm.h's set functions, the CPU trainer's sequential
// double sums, so the statistics do not depend on the launch shape). Reductions run in a fixed order (tree
// reductions of fixed shape, then sequential sums in double): results do not depend on timing.
// The products are sgemm (gemm_kernels.cuh) with the bias + activation epilogue. (Kernels are
// defined in this header, so it is included by one .cu file only: mlp_fit.cu.)
#pragma once
#include <algorithm>
#include <cstdint>

#include "fastmlp/activation.h"
#include "fastmlp/dropout.h"
#include "fastmlp/loss.h"
#include "fastmlp/mlp_fit.h"  // FitNorm
#include "fastmlp/norm.h"
#include "fastmlp/optimizer.h"

namespace fastmlp::cuda::fit_impl {

constexpr int kThreads = 256;
constexpr int kRowThreads = 128;  // threads per cross-entropy row / single-block reductions (2^k)

// The launch shapes (mlp_fit.cu and the emulator use these): grid-stride kernels over n elements,
// block-stride kernels over B rows, and the optimizer grid's x extent for the largest parameter.
inline unsigned grid_elems(int64_t n) {
    return unsigned(std::min<int64_t>(std::max<int64_t>((n + kThreads - 1) / kThreads, 1), 4096));
}
inline unsigned grid_rows(int64_t B) { return unsigned(std::min<int64_t>(std::max<int64_t>(B, 1), 4096)); }
inline unsigned grid_params(int64_t max_n) {
    return unsigned(std::min<int64_t>(std::max<int64_t>((max_n + kThreads - 1) / kThreads, 1), 1024));
}

// One trainable parameter of the optimizer step: its gradient, state slots (null: unused) and
// whether the scikit-learn L2 penalty applies (weights only).
struct FitParam {
    float* param;
    const float* grad;
    float* s0;
    float* s1;
    float* s2;
    int64_t n;
    int32_t l2;  // 1: add coef.l2 * param to the gradient
};

// The per-step scalars of the update (made on the host for every step of a call).
struct StepCoeffs {
    OptimCoeffs c;
    float l2;  // l2_weights / B (scikit-learn's penalty gradient factor), 0 without
};

// Fixed-shape tree sum of THREADS doubles in shared memory; the result is in buf[0] for all.
template <int THREADS>
__device__ __forceinline__ double block_sum(double* buf, double v) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }
    const double r = buf[0];
    __syncthreads();
    return r;
}

// The batch: xb (B, din) = X rows idx; yb (B, dout) = Y rows (float targets) or yib (B) = Yi
// (class indices); swb (B) = sample_weight rows (or 1 without). Grid-stride over B * (din + dout).
__global__ void fit_gather_kernel(float* xb, float* yb, int64_t* yib, float* swb, const float* X,
                                  const float* Y, const int64_t* Yi, const float* sw,
                                  const int64_t* idx, int64_t B, int64_t din, int64_t dout) {
    const int64_t ny = Y ? B * dout : 0, nx = B * din, total = nx + ny + B;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x) {
        if (i < nx) {
            const int64_t r = i / din, c = i - r * din;
            xb[i] = X[idx[r] * din + c];
        } else if (i < nx + ny) {
            const int64_t j = i - nx, r = j / dout, c = j - r * dout;
            yb[j] = Y[idx[r] * dout + c];
        } else {
            const int64_t r = i - nx - ny;
            if (yib) yib[r] = Yi[idx[r]];
            swb[r] = sw ? sw[idx[r]] : 1.0f;
        }
    }
}

// Dropout after layer `layer`'s activation at global step `step`: mask (n) = keep ? 1/(1-p) : 0,
// out (n) = y * mask (y, the activation's output, stays for the backward). Same hash as the CPU.
__global__ void fit_dropout_kernel(float* out, float* mask, const float* y, int64_t n, float p,
                                   uint64_t seed, int64_t step, int64_t layer) {
    const float ks = fastmlp::dropout_keep_scale(p);
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const bool keep = fastmlp::dropout_uniform(seed, step, layer, i) >= p;
        const float m = keep ? ks : 0.0f;
        mask[i] = m;
        out[i] = y[i] * m;
    }
}

// d (n) = act'(d * mask) in place: mask null without dropout; reads z (the pre-activation) when
// act_backward_needs_input(kind), else y (the activation's output, before dropout).
__global__ void fit_act_backward_kernel(float* d, const float* mask, const float* z, const float* y,
                                        int64_t n, fastmlp::ActParams p) {
    const bool nz = fastmlp::act_backward_needs_input(p.kind);
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        float v = d[i];
        if (mask) v *= mask[i];
        if (p.kind != fastmlp::Act::identity) {
            const float zy = nz ? z[i] : y[i];
            v = fastmlp::act_backward_scalar(v, zy, zy, p);
        }
        d[i] = v;
    }
}

// The bias gradient dbias (C) = column sums of d (B, C) in double: column blocks of kCols x kRows
// row lanes, lane ty sums rows ty, ty + kRows, ..., then the kRows partials in order (the order of
// mlp_train_kernels.cuh's grad_mask_colsum_kernel, which this is without its other duties).
constexpr int kCols = 32, kRows = 16;
__global__ void fit_colsum_kernel(float* dbias, const float* d, int64_t B, int64_t C) {
    __shared__ double part[kRows][kCols + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = int64_t(blockIdx.x) * kCols + tx;
    double s = 0.0;
    if (c < C)
        for (int64_t r = ty; r < B; r += kRows) s += double(d[r * C + c]);
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < C) {
        double total = 0.0;
        for (int i = 0; i < kRows; ++i) total += part[i][tx];
        dbias[c] = float(total);
    }
}

// y (n) = act(x) (activation.h's scalar rule, the GEMM epilogue's): the activation after a norm
// layer that precedes it (x the norm's output, kept where the backward reads it; y may be x).
__global__ void fit_act_forward_kernel(float* y, const float* x, int64_t n, fastmlp::ActParams p) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        y[i] = fastmlp::act_forward_scalar(x[i], p);
}

// ---- norm layers (norm.h), on a layer's (B, C) values ----------------------------------------

// How a norm layer normalises in one pass (chosen on the host, norm_mode): kRowsNorm each row
// (LayerNorm), kBatchNorm each column with the batch's statistics (BatchNorm1d training, or
// inference without running statistics), kRunningNorm each column with the running statistics
// (BatchNorm1d in eval mode, in training or inference).
constexpr int kRowsNorm = 0, kBatchNorm = 1, kRunningNorm = 2;
inline int norm_mode(const fastmlp::FitNorm& nm, bool train) {
    if (nm.kind == fastmlp::Norm::layer) return kRowsNorm;
    const bool running = nm.running_mean && nm.running_var;
    return (train ? nm.batch_stats : !running) ? kBatchNorm : kRunningNorm;
}

// y (B, C) = norm(x) (y may be x); xhat (B, C) and rstd (B rows / C columns) kept for the
// backward when not null. One thread per set (row or column, grid-stride) runs norm.h's
// norm_forward_set, as the CPU trainer does per set. `update` (kBatchNorm with running
// statistics, training): the running statistics move by factor f (momentum, or the cumulative
// average's 1 / count), unless *stop is set (an earlier batch stopped training: the CPU trainer
// has returned by then and runs no more forwards).
__global__ void fit_norm_forward_kernel(fastmlp::FitNorm nm, int mode, bool update, double f,
                                        const int64_t* stop, float* y, float* xhat, float* rstd,
                                        const float* x, int64_t B, int64_t C) {
    const int64_t sets = mode == kRowsNorm ? B : C;
    const bool upd = update && !(stop && *stop);
    for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < sets;
         s += int64_t(gridDim.x) * blockDim.x) {
        if (mode == kRowsNorm) {
            const float r = fastmlp::norm_forward_set(y + s * C, xhat ? xhat + s * C : nullptr,
                                                      x + s * C, C, 1, nm.eps, nm.weight, nm.bias,
                                                      true, 0, nullptr, nullptr);
            if (rstd) rstd[s] = r;
        } else if (mode == kBatchNorm) {
            double mean = 0.0, var = 0.0;
            const float r = fastmlp::norm_forward_set(y + s, xhat ? xhat + s : nullptr, x + s, B, C,
                                                      nm.eps, nm.weight, nm.bias, false, s, &mean,
                                                      &var);
            if (rstd) rstd[s] = r;
            if (upd)
                fastmlp::norm_running_update(nm.running_mean[s], nm.running_var[s], mean, var, B, f);
        } else {
            const float r = fastmlp::norm_rstd(double(nm.running_var[s]), nm.eps);
            const double m = double(nm.running_mean[s]);
            if (rstd) rstd[s] = r;
            for (int64_t b = 0; b < B; ++b) {
                const float xh = fastmlp::norm_xhat(x[b * C + s], m, r);
                if (xhat) xhat[b * C + s] = xh;
                y[b * C + s] = fastmlp::norm_affine(xh, nm.weight, nm.bias, s);
            }
        }
    }
}

// The norm's parameter gradients from d = dLoss/dy (B, C): gw (C) = sum_b d * xhat, gb (C) =
// sum_b d (either may be null), in double, with fit_colsum_kernel's fixed shape and order.
__global__ void fit_norm_param_grad_kernel(float* gw, float* gb, const float* d, const float* xhat,
                                           int64_t B, int64_t C) {
    __shared__ double pw[kRows][kCols + 1];
    __shared__ double pb[kRows][kCols + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = int64_t(blockIdx.x) * kCols + tx;
    double sw = 0.0, sb = 0.0;
    if (c < C)
        for (int64_t r = ty; r < B; r += kRows) {
            const double v = double(d[r * C + c]);
            sw += v * double(xhat[r * C + c]);
            sb += v;
        }
    pw[ty][tx] = sw;
    pb[ty][tx] = sb;
    __syncthreads();
    if (ty == 0 && c < C) {
        double tw = 0.0, tb = 0.0;
        for (int i = 0; i < kRows; ++i) {
            tw += pw[i][tx];
            tb += pb[i][tx];
        }
        if (gw) gw[c] = float(tw);
        if (gb) gb[c] = float(tb);
    }
}

// d (B, C) = dLoss/dx in place from dLoss/dy: one thread per set (norm.h's norm_backward_set with
// the batch's statistics, norm_backward_const with the running ones), as fit_norm_forward_kernel.
__global__ void fit_norm_backward_kernel(fastmlp::FitNorm nm, int mode, float* d, const float* xhat,
                                         const float* rstd, int64_t B, int64_t C) {
    const int64_t sets = mode == kRowsNorm ? B : C;
    for (int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; s < sets;
         s += int64_t(gridDim.x) * blockDim.x) {
        if (mode == kRowsNorm) {
            fastmlp::norm_backward_set(d + s * C, d + s * C, xhat + s * C, C, 1, rstd[s], nm.weight,
                                       true, 0);
        } else if (mode == kBatchNorm) {
            fastmlp::norm_backward_set(d + s, d + s, xhat + s, B, C, rstd[s], nm.weight, false, s);
        } else {
            const float wj = nm.weight ? nm.weight[s] : 1.0f;
            for (int64_t b = 0; b < B; ++b)
                d[b * C + s] = fastmlp::norm_backward_const(d[b * C + s], wj, rstd[s]);
        }
    }
}

// ---- losses (loss.h), over the batch's prediction P (B, O) ----------------------------------

// *dst = sum_i v[i] in double, sequential (one thread; a batch of sample weights, or the class
// weights), as the CPU sums them.
__global__ void fit_sum_kernel(double* dst, const float* v, int64_t n) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += double(v[i]);
    *dst = s;
}

// Element-wise losses: dP (B, O) = l'(P, Y) * sw_b / denom, rows (B) = sw_b * sum_o l(P, Y) (double).
// denom = O' * (weighted ? scal[0] : B) / loss_scale (O' = 1 when loss_sum_outputs). One thread
// per row (grid-stride), outputs of a row in order (as the CPU).
__global__ void fit_elem_loss_kernel(float* dP, double* rows, const float* P, const float* Y,
                                     const float* sw, const float* pos_weight, int64_t B, int64_t O,
                                     fastmlp::LossParams lp, double out_factor, double loss_scale,
                                     const double* swsum, double count_rows) {
    const double denom = out_factor * (swsum ? swsum[0] : count_rows) / loss_scale;
    for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < B;
         b += int64_t(gridDim.x) * blockDim.x) {
        const float wb = sw[b];
        const float g_scale = float(double(wb) / denom);
        double acc = 0.0;
        for (int64_t o = 0; o < O; ++o) {
            const int64_t i = b * O + o;
            const float pwo = pos_weight ? pos_weight[o] : 1.0f;
            acc += double(fastmlp::loss_elem_value(P[i], Y[i], lp, pwo));
            dP[i] = fastmlp::loss_elem_grad(P[i], Y[i], lp, pwo) * g_scale;
        }
        rows[b] = acc * double(wb);
    }
}

// loss = sum_b rows[b] / denom (sequential, double), written to *loss (the step's slot).
__global__ void fit_elem_loss_finish_kernel(double* loss, const double* rows, int64_t B,
                                            double out_factor, double loss_scale,
                                            const double* swsum, double count_rows) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const double denom = out_factor * (swsum ? swsum[0] : count_rows) / loss_scale;
    double t = 0.0;
    for (int64_t b = 0; b < B; ++b) t += rows[b];
    *loss = denom != 0.0 ? t / denom : (double)NAN;
}

// Cross-entropy pass 1, one block (kRowThreads) per row b of P (B, C) (block-stride over rows):
// lse[b] (max-subtracted, tree sum in double); rl[b] = sw_b * row loss, rw[b] = sw_b * w_{y_b}
// (0 for ignore_index rows).
__global__ void fit_ce_rows_kernel(double* lse, double* rl, double* rw, const float* P,
                                   const int64_t* yi, const float* sw, const float* cw, int64_t B,
                                   int64_t C, int64_t ignore_index, float smoothing) {
    __shared__ double buf[kRowThreads];
    __shared__ int flag;
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float* x = P + b * C;
        // max and NaN over the row
        float m = -INFINITY;
        int nan = 0;
        for (int64_t c = threadIdx.x; c < C; c += kRowThreads) {
            const float v = x[c];
            if (v != v) nan = 1;
            m = v > m ? v : m;
        }
        if (threadIdx.x == 0) flag = 0;
        __syncthreads();
        if (nan) flag = 1;  // benign: every writer stores 1
        buf[threadIdx.x] = double(m);
        __syncthreads();
        for (int s = kRowThreads / 2; s > 0; s >>= 1) {
            if (int(threadIdx.x) < s) buf[threadIdx.x] = fmax(buf[threadIdx.x], buf[threadIdx.x + s]);
            __syncthreads();
        }
        const float mx = float(buf[0]);
        const int any_nan = flag;
        __syncthreads();
        double s = 0.0;
        if (!any_nan && mx != -INFINITY && mx != INFINITY)
            for (int64_t c = threadIdx.x; c < C; c += kRowThreads) s += double(expf(x[c] - mx));
        const double tot = block_sum<kRowThreads>(buf, s);
        if (threadIdx.x == 0) {
            double l;
            if (any_nan) l = (double)NAN;
            else if (mx == -INFINITY || mx == INFINITY) l = double(mx);
            else l = double(mx) + log(tot);
            lse[b] = l;
            const int64_t t = yi[b];
            if (t == ignore_index) {
                rl[b] = 0.0;
                rw[b] = 0.0;
            } else {
                rl[b] = double(sw[b]) * fastmlp::ce_row_loss_index(x, C, 1, l, t, cw, smoothing);
                rw[b] = double(sw[b]) * fastmlp::ce_row_weight(t, cw);
            }
        }
        __syncthreads();
    }
}

// Cross-entropy pass 2 (one thread): scal[1] = 1 / sum rw (0 when the sum is 0), *loss =
// sum rl / sum rw (NaN when 0), both sums sequential in double as the CPU.
__global__ void fit_ce_finish_kernel(double* loss, double* scal, const double* rl, const double* rw,
                                     int64_t B) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double num = 0.0, den = 0.0;
    for (int64_t b = 0; b < B; ++b) {
        num += rl[b];
        den += rw[b];
    }
    scal[1] = den != 0.0 ? 1.0 / den : 0.0;
    *loss = den != 0.0 ? num / den : (double)NAN;
}

// Cross-entropy pass 3: dP (B, C) = scale * sw_b * (A p_c - a_c), 0 on ignore_index rows.
// Grid-stride over the B * C elements. scal[1] = the mean's 1 / sum rw; *wsum_dev = sum_c w_c
// (null without class weights: C).
__global__ void fit_ce_grad_kernel(float* dP, const float* P, const double* lse, const int64_t* yi,
                                   const float* sw, const float* cw, const double* scal,
                                   const double* wsum_dev, int64_t B, int64_t C,
                                   int64_t ignore_index, float smoothing) {
    const double scale = scal[1];
    const double wsum = wsum_dev ? *wsum_dev : double(C);
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < B * C;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t b = i / C, c = i - b * C, t = yi[b];
        if (t == ignore_index) {
            dP[i] = 0.0f;
            continue;
        }
        const double A = fastmlp::ce_row_coef_sum_index(t, cw, smoothing, wsum, C);
        dP[i] = fastmlp::ce_grad_index(P[i], c, lse[b], t, cw, smoothing, A, C, scale * double(sw[b]));
    }
}

// scikit-learn's L2 penalty: *loss += 0.5 * l2w * sum_w |W|^2 / B over the weight parameters
// (l2 != 0) of the table, before the step (one block, fixed-order partials, parameters in order).
__global__ void fit_l2_loss_kernel(double* loss, const FitParam* params, int count, double l2w_over_b) {
    __shared__ double buf[kRowThreads];
    double total = 0.0;
    for (int q = 0; q < count; ++q) {
        const FitParam p = params[q];
        if (!p.l2) continue;
        double s = 0.0;
        for (int64_t i = threadIdx.x; i < p.n; i += kRowThreads) s += double(p.param[i]) * p.param[i];
        total += block_sum<kRowThreads>(buf, s);
    }
    if (threadIdx.x == 0) *loss += 0.5 * l2w_over_b * total;
}

// The update of every parameter of the table with optimizer.h's rule, guarded by the device flag:
// nothing when *stop is set (an earlier batch stopped training); when the batch loss is not
// finite and !allow_nonfinite, *stop = tag instead of a step (all or nothing: every block decides
// from the same two values). blockIdx.y (strided) picks the parameter.
__global__ void fit_optim_guarded_kernel(const FitParam* params, int count, fastmlp::Optim kind,
                                         const StepCoeffs* coef, const double* loss, int64_t* stop,
                                         int64_t tag, bool allow_nonfinite) {
    if (*stop) return;
    const double l = *loss;
    if (!allow_nonfinite && !(l - l == 0.0)) {
        if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *stop = tag;
        return;
    }
    const StepCoeffs sc = *coef;
    for (int q = blockIdx.y; q < count; q += gridDim.y) {
        const FitParam p = params[q];
        const float l2 = p.l2 ? sc.l2 : 0.0f;
        for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n;
             i += int64_t(gridDim.x) * blockDim.x) {
            float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f;
            float& s0 = p.s0 ? p.s0[i] : d0;
            float& s1 = p.s1 ? p.s1[i] : d1;
            float& s2 = p.s2 ? p.s2[i] : d2;
            const float g = l2 != 0.0f ? p.grad[i] + l2 * p.param[i] : p.grad[i];
            fastmlp::optim_step_scalar(kind, p.param[i], g, s0, s1, s2, sc.c);
        }
    }
}

}  // namespace fastmlp::cuda::fit_impl
