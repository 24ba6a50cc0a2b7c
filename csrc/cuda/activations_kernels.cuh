// The device code of fastmlp's CUDA activation kernels (see activations.cu): the element-wise
// activations of activation.h (forward and backward, grid-stride loops over the same scalar rules
// the CPU uses) and row-wise softmax / log_softmax (one block per row, fixed-order tree
// reductions: deterministic). Kept apart from the host wrappers so that tests/cuda can run it on
// the CPU (cuda_emulation.h).
#pragma once
#include <cstdint>

#include "fastmlp/activation.h"

namespace fastmlp::cuda::activations_impl {

constexpr int kThreads = 256;
constexpr int kRowThreads = 256;  // threads per softmax row (a power of two)

// out (n) = f(z (n)); out may equal z.
__global__ void act_forward_kernel(float* out, const float* z, int64_t n, fastmlp::ActParams p) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = fastmlp::act_forward_scalar(z[i], p);
}

// dz (n) = dy * f'(z): reads z (n) or y (n) as act_backward_needs_input(p.kind) says.
__global__ void act_backward_kernel(float* dz, const float* dy, const float* z, const float* y,
                                    int64_t n, fastmlp::ActParams p) {
    const bool nz = fastmlp::act_backward_needs_input(p.kind);
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const float v = nz ? z[i] : y[i];
        dz[i] = fastmlp::act_backward_scalar(dy[i], v, v, p);
    }
}

// Tree reductions over the block in a fixed order; the result is broadcast to every thread.
template <int THREADS>
__device__ float block_max(float v, float* sm) {
    sm[threadIdx.x] = v;
    __syncthreads();
#pragma unroll
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) {
            const float o = sm[threadIdx.x + s];
            sm[threadIdx.x] = o > sm[threadIdx.x] ? o : sm[threadIdx.x];
        }
        __syncthreads();
    }
    const float r = sm[0];
    __syncthreads();
    return r;
}

template <int THREADS>
__device__ float block_sum(float v, float* sm) {
    sm[threadIdx.x] = v;
    __syncthreads();
#pragma unroll
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) sm[threadIdx.x] += sm[threadIdx.x + s];
        __syncthreads();
    }
    const float r = sm[0];
    __syncthreads();
    return r;
}

// out (rows, cols) = softmax / log_softmax of x (rows, cols) over cols. grid.x (strided) over rows,
// kRowThreads threads per row. A row with NaN or +inf gives NaN (as PyTorch). out may equal x.
__global__ void softmax_forward_kernel(float* out, const float* x, int64_t rows, int64_t cols,
                                       bool log) {
    __shared__ float sm[kRowThreads];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        float* o = out + r * cols;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) m = xr[j] > m ? xr[j] : m;
        m = block_max<kRowThreads>(m, sm);
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) s += expf(xr[j] - m);
        s = block_sum<kRowThreads>(s, sm);
        if (log) {
            const float ls = logf(s);  // (x - m) - log(s): no rounding of m + log(s) (PyTorch's order)
            for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) o[j] = (xr[j] - m) - ls;
        } else {
            const float inv = 1.0f / s;
            for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) o[j] = expf(xr[j] - m) * inv;
        }
    }
}

// dx = y (g - sum g y)  (softmax)  or  g - exp(y) sum g  (log_softmax), rows as above. dx may
// equal g.
__global__ void softmax_backward_kernel(float* dx, const float* g, const float* y, int64_t rows,
                                        int64_t cols, bool log) {
    __shared__ float sm[kRowThreads];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* gr = g + r * cols;
        const float* yr = y + r * cols;
        float* d = dx + r * cols;
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < cols; j += kRowThreads) s += log ? gr[j] : gr[j] * yr[j];
        s = block_sum<kRowThreads>(s, sm);
        for (int64_t j = threadIdx.x; j < cols; j += kRowThreads)
            d[j] = log ? gr[j] - expf(yr[j]) * s : yr[j] * (gr[j] - s);
    }
}

}  // namespace fastmlp::cuda::activations_impl
