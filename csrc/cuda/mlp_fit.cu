// The GPU general fused trainer (cuda_mlp_fit.h): the loop and step of mlp_fit_impl.h over
// DeviceOps, which launches fastmlp's kernels on one stream: sgemm (bias + activation epilogue,
// the pre-activation stored where the backward reads it, split-K scratch from the call's
// workspace), the gather / dropout / activation / norm-layer / loss / optimizer kernels of
// mlp_fit_kernels.cuh. No synchronisation and no
// allocation per step: one workspace per call, one copy back and one stream synchronise at its end.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "device_ops.cuh"
#include "fastmlp/cuda_gemm.h"
#include "fastmlp/cuda_mlp_fit.h"
#include "mlp_fit_impl.h"
#include "mlp_fit_kernels.cuh"

namespace fastmlp::cuda {

namespace {

using detail::ceil_div;
using detail::check;
using detail::check_launch;
namespace fk = fit_impl;

struct DeviceOps : detail::DeviceGemmMemoryOps {
    void gather(float* xb, float* yb, int64_t* yib, float* swb, const float* X, const float* Y,
                const int64_t* Yi, const float* sw, const int64_t* idx, int64_t B, int64_t din,
                int64_t dout) const {
        const int64_t total = B * (din + (Y ? dout : 0) + 1);
        fk::fit_gather_kernel<<<fk::grid_elems(total), fk::kThreads, 0, stream>>>(
            xb, yb, yib, swb, X, Y, Yi, sw, idx, B, din, dout);
        check_launch("fit_gather_kernel");
    }
    void dropout(float* out, float* mask, const float* y, int64_t n, float p, uint64_t seed,
                 int64_t step, int64_t layer) const {
        fk::fit_dropout_kernel<<<fk::grid_elems(n), fk::kThreads, 0, stream>>>(out, mask, y, n, p,
                                                                              seed, step, layer);
        check_launch("fit_dropout_kernel");
    }
    void act_backward(float* d, const float* mask, const float* z, const float* y, int64_t n,
                      ActParams p) const {
        if (!mask && p.kind == Act::identity) return;  // nothing to do
        fk::fit_act_backward_kernel<<<fk::grid_elems(n), fk::kThreads, 0, stream>>>(d, mask, z, y,
                                                                                   n, p);
        check_launch("fit_act_backward_kernel");
    }
    void act_forward(float* y, const float* x, int64_t n, ActParams p) const {
        fk::fit_act_forward_kernel<<<fk::grid_elems(n), fk::kThreads, 0, stream>>>(y, x, n, p);
        check_launch("fit_act_forward_kernel");
    }
    void norm_forward(const FitNorm& nm, int mode, bool update, double f, const int64_t* stop,
                      float* y, float* xhat, float* rstd, const float* x, int64_t B,
                      int64_t C) const {
        const int64_t sets = mode == fk::kRowsNorm ? B : C;
        fk::fit_norm_forward_kernel<<<fk::grid_elems(sets), fk::kThreads, 0, stream>>>(
            nm, mode, update, f, stop, y, xhat, rstd, x, B, C);
        check_launch("fit_norm_forward_kernel");
    }
    void norm_param_grad(float* gw, float* gb, const float* d, const float* xhat, int64_t B,
                         int64_t C) const {
        const dim3 block(fk::kCols, fk::kRows);
        fk::fit_norm_param_grad_kernel<<<unsigned(ceil_div(C, fk::kCols)), block, 0, stream>>>(
            gw, gb, d, xhat, B, C);
        check_launch("fit_norm_param_grad_kernel");
    }
    void norm_backward(const FitNorm& nm, int mode, float* d, const float* xhat, const float* rstd,
                       int64_t B, int64_t C) const {
        const int64_t sets = mode == fk::kRowsNorm ? B : C;
        fk::fit_norm_backward_kernel<<<fk::grid_elems(sets), fk::kThreads, 0, stream>>>(
            nm, mode, d, xhat, rstd, B, C);
        check_launch("fit_norm_backward_kernel");
    }
    void colsum(float* dbias, float* d, int64_t B, int64_t C) const {
        const dim3 block(fk::kCols, fk::kRows);
        fk::fit_colsum_kernel<<<unsigned(ceil_div(C, fk::kCols)), block, 0, stream>>>(dbias, d, B, C);
        check_launch("fit_colsum_kernel");
    }
    void sum(double* dst, const float* v, int64_t n) const {
        fk::fit_sum_kernel<<<1, 1, 0, stream>>>(dst, v, n);
        check_launch("fit_sum_kernel");
    }
    void elem_loss(float* dP, double* rows, const float* P, const float* Y, const float* sw,
                   const float* pw, int64_t B, int64_t O, LossParams lp, double of, double ls,
                   const double* swsum, double cr) const {
        fk::fit_elem_loss_kernel<<<fk::grid_elems(B), fk::kThreads, 0, stream>>>(
            dP, rows, P, Y, sw, pw, B, O, lp, of, ls, swsum, cr);
        check_launch("fit_elem_loss_kernel");
    }
    void elem_loss_finish(double* loss, const double* rows, int64_t B, double of, double ls,
                          const double* swsum, double cr) const {
        fk::fit_elem_loss_finish_kernel<<<1, 1, 0, stream>>>(loss, rows, B, of, ls, swsum, cr);
        check_launch("fit_elem_loss_finish_kernel");
    }
    void ce_rows(double* lse, double* rl, double* rw, const float* P, const int64_t* yi,
                 const float* sw, const float* cw, int64_t B, int64_t C, int64_t ig, float s) const {
        fk::fit_ce_rows_kernel<<<fk::grid_rows(B), fk::kRowThreads, 0, stream>>>(
            lse, rl, rw, P, yi, sw, cw, B, C, ig, s);
        check_launch("fit_ce_rows_kernel");
    }
    void ce_finish(double* loss, double* scal, const double* rl, const double* rw, int64_t B) const {
        fk::fit_ce_finish_kernel<<<1, 1, 0, stream>>>(loss, scal, rl, rw, B);
        check_launch("fit_ce_finish_kernel");
    }
    void ce_grad(float* dP, const float* P, const double* lse, const int64_t* yi, const float* sw,
                 const float* cw, const double* scal, const double* wsum, int64_t B, int64_t C,
                 int64_t ig, float s) const {
        fk::fit_ce_grad_kernel<<<fk::grid_elems(B * C), fk::kThreads, 0, stream>>>(
            dP, P, lse, yi, sw, cw, scal, wsum, B, C, ig, s);
        check_launch("fit_ce_grad_kernel");
    }
    void l2_loss(double* loss, const fk::FitParam* table, int count, double f) const {
        fk::fit_l2_loss_kernel<<<1, fk::kRowThreads, 0, stream>>>(loss, table, count, f);
        check_launch("fit_l2_loss_kernel");
    }
    void optim_guarded(const fk::FitParam* table, int count, int64_t max_n, Optim kind,
                       const fk::StepCoeffs* coef, const double* loss, int64_t* stop, int64_t tag,
                       bool allow) const {
        if (count <= 0) return;
        const dim3 grid(fk::grid_params(max_n), unsigned(std::min(count, 65535)));
        fk::fit_optim_guarded_kernel<<<grid, fk::kThreads, 0, stream>>>(table, count, kind, coef,
                                                                       loss, stop, tag, allow);
        check_launch("fit_optim_guarded_kernel");
    }
};

}  // namespace

FitResult mlp_fit(const std::vector<FitLayer>& layers, const FitData& data, int64_t epochs,
                  const FitOptions& opt, cudaStream_t stream) {
    DeviceOps ops{{stream, "cudaStreamSynchronize (mlp_fit)"}};
    return fit_impl::fit(ops, layers, data, epochs, opt);
}

void mlp_fit_forward(float* out, const std::vector<FitLayer>& layers, const float* X, int64_t n,
                     cudaStream_t stream) {
    DeviceOps ops{{stream, "cudaStreamSynchronize (mlp_fit)"}};
    fit_impl::forward(ops, out, layers, X, n);
}

}  // namespace fastmlp::cuda
