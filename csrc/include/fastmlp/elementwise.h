// fastmlp elementwise kernels and reductions of an MLP (bias, ReLU, MSE) and their gradients.
// llm.c style: <op>_forward / <op>_backward, outputs first, then inputs, then sizes.
// float32, contiguous row-major, int64 sizes. Kernels assume valid input; the bindings check it.
// Reductions run in a fixed order (per-thread partials over fixed row blocks, combined in order),
// so results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace fastmlp {

// out (B,C) = inp (B,C) + bias (C) per row.  out may equal inp (in place).
void bias_forward(float* out, const float* inp, const float* bias, int64_t B, int64_t C);

// dbias (C) = sum over rows of dout (B,C), accumulated in double, fixed order. accumulate: += instead of =
void bias_backward(float* dbias, const float* dout, int64_t B, int64_t C, bool accumulate = false);

// out (n) = max(inp, 0); NaN stays NaN. out may equal inp.
void relu_forward(float* out, const float* inp, int64_t n);

// dinp (n) = dout * (out > 0)   (out is the ReLU output, or its input: same sign test).
// dinp may equal dout.
void relu_backward(float* dinp, const float* dout, const float* out, int64_t n);

// mean over n of (pred - target)^2, accumulated in double in a fixed order. n == 0 gives NaN
// (as PyTorch's mean of an empty tensor).
double mse_forward(const float* pred, const float* target, int64_t n);

// dpred (n) = scale * (pred - target), with scale = 2 / n for the mean (callers pass the scale,
// so "sum" reduction and an upstream gradient fold in). dpred may equal pred.
void mse_backward(float* dpred, const float* pred, const float* target, int64_t n, float scale);

// One step of torch.optim.SGD on one parameter, in place.
//   g = maximize ? -grad : grad;  g += weight_decay * param
//   if momentum != 0:  buf = first_step ? g : momentum * buf + (1 - dampening) * g
//                      g = nesterov ? g + momentum * buf : buf
//   param -= lr * g
// momentum_buf may be null only when momentum == 0.
struct SgdOptions {
    float lr = 0.01f;
    float momentum = 0.0f;
    float dampening = 0.0f;
    float weight_decay = 0.0f;
    bool nesterov = false;
    bool maximize = false;
};
void sgd_step(float* param, const float* grad, float* momentum_buf, int64_t n, const SgdOptions& opt,
              bool first_step);

}  // namespace fastmlp
