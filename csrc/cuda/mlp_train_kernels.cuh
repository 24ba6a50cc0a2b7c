// The device code of the GPU fused trainer (see mlp_train.cu), kept apart from the host code so
// that tests/cuda can run it on the CPU (cuda_emulation.h): the batch gather and the fused
// "output gradient / ReLU mask / bias gradient" pass. The SGD step it ends with is
// sgd_step_guarded_kernel (elementwise_kernels.cuh).
#pragma once
#include <cstdint>

namespace fastmlp::cuda::mlp_impl {

constexpr int kThreads = 256;

// xb (B, din) = X (n, din) rows idx (B), yb (B, dout) = Y (n, dout) rows idx: grid-stride over
// the B * (din + dout) outputs (consecutive threads read consecutive floats of a row).
__global__ void gather_rows_kernel(float* xb, float* yb, const float* X, const float* Y,
                                   const int64_t* idx, int64_t B, int64_t din, int64_t dout) {
    const int64_t nx = B * din, total = nx + B * dout;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x) {
        if (i < nx) {
            const int64_t r = i / din, c = i - r * din;
            xb[i] = X[idx[r] * din + c];
        } else {
            const int64_t j = i - nx, r = j / dout, c = j - r * dout;
            yb[j] = Y[idx[r] * dout + c];
        }
    }
}

// One pass over d (B, C), column blocks of kCols x kRows row lanes (as bias_backward_kernel):
//   target != null: d = scale * (a - target)           (the MSE gradient; a = the prediction)
//   mask:           d = a > 0 ? d : 0                  (ReLU gradient; a = the ReLU output)
//   dbias != null:  dbias (C) = column sums of d, in double (lane ty sums rows ty, ty+16, ...,
//                   then the 16 partials in order), as the bias gradient.
// d may be written even when it is only read (no target, no mask): it is not, then.
constexpr int kCols = 32, kRows = 16;
__global__ void grad_mask_colsum_kernel(float* d, const float* a, const float* target, float scale,
                                        bool mask, float* dbias, int64_t B, int64_t C) {
    __shared__ double part[kRows][kCols + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = int64_t(blockIdx.x) * kCols + tx;
    const bool write = target != nullptr || mask;
    double s = 0.0;
    if (c < C)
        for (int64_t r = ty; r < B; r += kRows) {
            const int64_t i = r * C + c;
            float v = target ? scale * (a[i] - target[i]) : d[i];
            if (mask) v = a[i] > 0.0f ? v : 0.0f;
            if (write) d[i] = v;
            s += double(v);
        }
    if (!dbias) return;  // uniform over the block: no thread waits at the barrier below
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < C) {
        double total = 0.0;
        for (int i = 0; i < kRows; ++i) total += part[i][tx];
        dbias[c] = float(total);
    }
}

}  // namespace fastmlp::cuda::mlp_impl
