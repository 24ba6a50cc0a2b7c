// fastmlp CUDA loss kernels: softmax cross-entropy (class indices, class probabilities) and the
// element-wise losses. Contract: csrc/include/fastmlp/cuda_losses.h; device code and numeric
// rules: losses_kernels.cuh over loss.h (the CPU kernels' rules).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "fastmlp/cuda_losses.h"
#include "losses_kernels.cuh"

namespace fastmlp::cuda {

namespace {
using namespace losses_impl;
using detail::ceil_div;
using detail::check_launch;
using detail::Scratch;

unsigned row_grid(int64_t R) { return unsigned(std::min<int64_t>(std::max<int64_t>(R, 1), 65535)); }
// Partials of the element-wise forward: depends on n only (deterministic), <= 1024.
unsigned elem_partials(int64_t n) {
    return unsigned(std::min<int64_t>(std::max<int64_t>(ceil_div(n, kThreads * 8), 1), 1024));
}
unsigned elem_grid(int64_t n) {
    return unsigned(std::min<int64_t>(std::max<int64_t>(ceil_div(n, kThreads), 1), 65535));
}
}  // namespace

void cross_entropy_forward_backward(float* dlogits, float* row_loss, double* loss_sum,
                                    double* weight_sum, const float* logits, const int64_t* target,
                                    const float* weight, const float* drow, double scale,
                                    bool divide_by_weight_sum, int64_t N, int64_t C, int64_t D,
                                    int64_t ignore_index, float label_smoothing,
                                    cudaStream_t stream) {
    const int64_t R = N * D;
    Scratch rows(size_t(std::max<int64_t>(R, 1)) * sizeof(double) + 2 * sizeof(double), stream);
    double* rows64 = rows.as<double>();
    double* wtotal = rows64 + std::max<int64_t>(R, 1);
    ce_weight_sum_kernel<<<1, kThreads, 0, stream>>>(weight_sum, target, weight, R, ignore_index);
    check_launch("ce_weight_sum_kernel");
    if (weight) {
        weights_total_kernel<<<1, kThreads, 0, stream>>>(wtotal, weight, C);
        check_launch("weights_total_kernel");
    }
    if (R > 0) {
        ce_index_kernel<<<row_grid(R), kThreads, 0, stream>>>(
            dlogits, rows64, logits, target, weight, divide_by_weight_sum ? weight_sum : nullptr,
            drow, scale, N, C, D, ignore_index, label_smoothing, weight ? wtotal : nullptr);
        check_launch("ce_index_kernel");
    }
    sum_rows_kernel<<<1, kThreads, 0, stream>>>(loss_sum, row_loss, rows64, R);
    check_launch("sum_rows_kernel");
}

void cross_entropy_prob_forward_backward(float* dlogits, float* row_loss, double* loss_sum,
                                         const float* logits, const float* target,
                                         const float* weight, const float* drow, double scale,
                                         int64_t N, int64_t C, int64_t D, float label_smoothing,
                                         cudaStream_t stream) {
    const int64_t R = N * D;
    Scratch rows(size_t(std::max<int64_t>(R, 1)) * sizeof(double), stream);
    double* rows64 = rows.as<double>();
    if (R > 0) {
        ce_prob_kernel<<<row_grid(R), kThreads, 0, stream>>>(dlogits, rows64, logits, target, weight,
                                                             drow, scale, N, C, D, label_smoothing);
        check_launch("ce_prob_kernel");
    }
    sum_rows_kernel<<<1, kThreads, 0, stream>>>(loss_sum, row_loss, rows64, R);
    check_launch("sum_rows_kernel");
}

void loss_elementwise_forward(float* out, double* sum, const float* x, const float* t,
                              const float* w, const float* pw, int64_t n, int64_t P, LossParams p,
                              cudaStream_t stream) {
    const unsigned blocks = elem_partials(n);
    Scratch part(size_t(blocks) * sizeof(double), stream);
    loss_elementwise_forward_kernel<<<blocks, kThreads, 0, stream>>>(part.as<double>(), out, x, t, w,
                                                                     pw, n, P, p);
    check_launch("loss_elementwise_forward_kernel");
    sum_rows_kernel<<<1, kThreads, 0, stream>>>(sum, nullptr, part.as<double>(), int64_t(blocks));
    check_launch("sum_rows_kernel");
}

void loss_elementwise_backward(float* dx, const float* x, const float* t, const float* w,
                               const float* pw, const float* dout, int64_t n, int64_t P,
                               LossParams p, float scale, cudaStream_t stream) {
    if (n <= 0) return;
    loss_elementwise_backward_kernel<<<elem_grid(n), kThreads, 0, stream>>>(dx, x, t, w, pw, dout, n,
                                                                            P, p, scale);
    check_launch("loss_elementwise_backward_kernel");
}

}  // namespace fastmlp::cuda
