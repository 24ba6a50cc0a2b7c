// fastmlp loss kernels (CPU): softmax cross-entropy fused forward + gradient, and the element-wise
// losses (mse, l1, smooth_l1, huber, bce_with_logits) forward and backward. The numeric rules are
// those of loss.h (shared with the CUDA twins and the fused trainers).
// llm.c style: <op>_forward / <op>_backward, outputs first, then inputs, then sizes. float32
// row-major, int64 sizes and class indices. Kernels assume valid input (targets in [0, C) or equal
// to ignore_index, shapes as documented); the bindings check it.
// Sums are accumulated in double in a fixed order (per-row or per-chunk partials combined in
// order), so every result is independent of the thread count.
#pragma once
#include <cstdint>

#include "fastmlp/loss.h"

namespace fastmlp {

// ---- softmax cross-entropy, class-index targets ----
// logits (N, C, D): the class dimension has stride D (D = 1 for (N, C) inputs; D = d1*d2*... for
// (N, C, d1, d2, ...)). A "row" r = (n, d) is the C logits logits[n*C*D + c*D + d].
// target (N, D) int64; weight (C) or null; ignore_index: rows with that target count for nothing.
struct CeSums {
    double loss = 0.0;    // sum of the row losses
    double weight = 0.0;  // sum over non-ignored rows of weight[target] (1 without weights)
};

// row_loss (N, D) or null: the unreduced per-row loss (0 at ignored rows). Returns the sums.
CeSums cross_entropy_forward(float* row_loss, const float* logits, const int64_t* target,
                             const float* weight, int64_t N, int64_t C, int64_t D,
                             int64_t ignore_index, float label_smoothing);

// dlogits (N, C, D) = scale * drow[r] * (A p - a) (loss.h), drow (N, D) or null (ones).
// dlogits may equal logits (in place).
void cross_entropy_backward(float* dlogits, const float* logits, const int64_t* target,
                            const float* weight, const float* drow, double scale, int64_t N,
                            int64_t C, int64_t D, int64_t ignore_index, float label_smoothing);

// Forward and the gradient of the reduced loss ('mean' or 'sum', upstream gradient 1) in one sweep
// over the logits: dlogits (N, C, D), row_loss (N, D) or null. Returns the sums.
CeSums cross_entropy_forward_backward(float* dlogits, float* row_loss, const float* logits,
                                      const int64_t* target, const float* weight, int64_t N,
                                      int64_t C, int64_t D, int64_t ignore_index,
                                      float label_smoothing, Reduction reduction);

// ---- softmax cross-entropy, class-probability targets ----
// logits, target (N, C, D) float32; weight (C) or null. row_loss (N, D) or null. Returns the sum.
double cross_entropy_prob_forward(float* row_loss, const float* logits, const float* target,
                                  const float* weight, int64_t N, int64_t C, int64_t D,
                                  float label_smoothing);
// dlogits (N, C, D) = scale * drow[r] * (A p - a), drow (N, D) or null.
void cross_entropy_prob_backward(float* dlogits, const float* logits, const float* target,
                                 const float* weight, const float* drow, double scale, int64_t N,
                                 int64_t C, int64_t D, float label_smoothing);

// ---- element-wise losses: l_i = w_i * l(x_i, t_i) (loss.h), pos_weight pw[i % P] ----
// x, t (n); w (n) or null; pw (P) or null (bce_with_logits only; P divides n).
// out (n) or null: the unreduced losses. Returns their sum.
double loss_elementwise_forward(float* out, const float* x, const float* t, const float* w,
                                const float* pw, int64_t n, int64_t P, LossParams p);
// dx (n) = scale * dout_i * w_i * dl/dx (dout (n) or null: ones). dx may equal x.
void loss_elementwise_backward(float* dx, const float* x, const float* t, const float* w,
                               const float* pw, const float* dout, int64_t n, int64_t P,
                               LossParams p, float scale);
// Both in one pass: returns the sum, dx = scale * w_i * dl/dx.
double loss_elementwise_forward_backward(float* dx, const float* x, const float* t, const float* w,
                                         const float* pw, int64_t n, int64_t P, LossParams p,
                                         float scale);

// ---- naive references (one thread, the same rules, for tests) ----
CeSums cross_entropy_forward_reference(float* row_loss, const float* logits, const int64_t* target,
                                       const float* weight, int64_t N, int64_t C, int64_t D,
                                       int64_t ignore_index, float label_smoothing);

}  // namespace fastmlp
