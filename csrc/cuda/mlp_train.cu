// The GPU fused MLP trainer (cuda_mlp.h): the loop and step of mlp_train_impl.h over DeviceOps,
// which launches fastmlp's kernels on one stream: sgemm (bias/ReLU epilogue, split-K scratch from
// the call's workspace), the MSE reduction, the batch gather and fused gradient pass of
// mlp_train_kernels.cuh, and the flag-guarded multi-tensor SGD step. No synchronisation and no
// allocation per step: one workspace per call, one copy back and one stream synchronise at its end.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "device_ops.cuh"
#include "fastmlp/cuda_elementwise.h"
#include "fastmlp/cuda_gemm.h"
#include "fastmlp/cuda_mlp.h"
#include "mlp_train_impl.h"
#include "mlp_train_kernels.cuh"

namespace fastmlp::cuda {

namespace {

using detail::ceil_div;
using detail::check;
using detail::check_launch;

struct DeviceOps : detail::DeviceGemmMemoryOps {
    int mse_partials(int64_t count) const { return mse_forward_partials(count); }
    void mse_forward(float* loss, double* loss64, const float* P, const float* Y, int64_t count,
                     double* partial) const {
        mse_forward_ws(loss, loss64, P, Y, count, partial, stream);
    }
    void gather(float* xb, float* yb, const float* X, const float* Y, const int64_t* idx,
                int64_t B, int64_t din, int64_t dout) const {
        const int64_t total = B * (din + dout);
        if (total <= 0) return;
        const int blocks = int(std::min<int64_t>(ceil_div(total, mlp_impl::kThreads), 4096));
        mlp_impl::gather_rows_kernel<<<blocks, mlp_impl::kThreads, 0, stream>>>(xb, yb, X, Y, idx,
                                                                              B, din, dout);
        check_launch("gather_rows_kernel");
    }
    void grad_mask_colsum(float* d, const float* a, const float* target, float scale, bool mask,
                          float* dbias, int64_t B, int64_t C) const {
        if (C <= 0) return;
        const dim3 block(mlp_impl::kCols, mlp_impl::kRows);
        mlp_impl::grad_mask_colsum_kernel<<<unsigned(ceil_div(C, mlp_impl::kCols)), block, 0,
                                            stream>>>(d, a, target, scale, mask, dbias, B, C);
        check_launch("grad_mask_colsum_kernel");
    }
    void sgd_guarded(const SgdParam* table, int count, int64_t max_n, const SgdOptions& o,
                     bool first, const double* loss, int64_t* stop, int64_t tag, bool allow) const {
        sgd_step_guarded(table, count, max_n, o, first, loss, stop, tag, allow, stream);
    }
};

}  // namespace

MlpTrainResult mlp_train(const std::vector<MlpLayer>& layers, const float* X, const float* Y,
                         int64_t n, int64_t epochs, const CudaMlpTrainOptions& opt,
                         cudaStream_t stream) {
    DeviceOps ops{{stream, "cudaStreamSynchronize (mlp_train)"}};
    return mlp_impl::train(ops, layers, X, Y, n, epochs, opt);
}

void mlp_forward(float* out, const std::vector<MlpLayer>& layers, const float* X, int64_t n,
                 cudaStream_t stream) {
    DeviceOps ops{{stream, "cudaStreamSynchronize (mlp_train)"}};
    mlp_impl::forward(ops, out, layers, X, n);
}

}  // namespace fastmlp::cuda
