// fastmlp CUDA loss kernels: the same semantics as losses.h (read it), on device pointers, launched
// on `stream`; results stay on the device (sums as device doubles). Reductions are deterministic
// fixed-order trees in double, no atomics. Kernels assume valid input (the bindings check shapes;
// a class index outside [0, C) that is not ignore_index gives NaN, never an out-of-bounds read).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastmlp/loss.h"

namespace fastmlp::cuda {

// Softmax cross-entropy, class-index targets: logits (N,C,D), target (N,D) int64, weight (C) or
// null. Writes *loss_sum (sum of row losses) and *weight_sum (the 'mean' denominator), row_loss
// (N,D) floats or null, and dlogits (N,C,D) or null = scale * drow[r] * (A p - a), divided by the
// weight sum when divide_by_weight_sum (drow (N,D) or null: ones).
void cross_entropy_forward_backward(float* dlogits, float* row_loss, double* loss_sum,
                                    double* weight_sum, const float* logits, const int64_t* target,
                                    const float* weight, const float* drow, double scale,
                                    bool divide_by_weight_sum, int64_t N, int64_t C, int64_t D,
                                    int64_t ignore_index, float label_smoothing,
                                    cudaStream_t stream);

// Class-probability targets (N,C,D): *loss_sum, row_loss or null, dlogits or null as above.
void cross_entropy_prob_forward_backward(float* dlogits, float* row_loss, double* loss_sum,
                                         const float* logits, const float* target,
                                         const float* weight, const float* drow, double scale,
                                         int64_t N, int64_t C, int64_t D, float label_smoothing,
                                         cudaStream_t stream);

// Element-wise losses (loss.h): *sum = sum of w_i l(x_i, t_i), out (n) or null the unreduced
// losses; pw (P) or null.
void loss_elementwise_forward(float* out, double* sum, const float* x, const float* t,
                              const float* w, const float* pw, int64_t n, int64_t P, LossParams p,
                              cudaStream_t stream);
// dx (n) = scale * dout_i * w_i * dl/dx.
void loss_elementwise_backward(float* dx, const float* x, const float* t, const float* w,
                               const float* pw, const float* dout, int64_t n, int64_t P,
                               LossParams p, float scale, cudaStream_t stream);

}  // namespace fastmlp::cuda
