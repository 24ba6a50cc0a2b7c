// fastmlp layer-level kernels: one call per Linear (+activation) forward or backward, built on sgemm and
// the elementwise kernels, so they get faster whenever those do. llm.c style: outputs first, then
// inputs, then sizes. float32, contiguous row-major, int64 sizes. Kernels assume valid input (the
// bindings check it). Results do not depend on the thread count (sgemm and bias_backward don't).
#pragma once
#include <cstdint>

#include "fastmlp/activation.h"
#include "fastmlp/elementwise.h"

namespace fastmlp {

// out (B,OC) = act(z), z = inp (B,C) @ weight (OC,C)^T + bias (OC).   bias may be null; act any
// kind of activation.h (identity: none), applied in the GEMM epilogue (one pass over out).
// pre_act (B,OC), when not null and act is neither identity nor relu, receives z from the same
// pass (for a backward that needs it).
void linear_forward(float* out, float* pre_act, const float* inp, const float* weight,
                    const float* bias, int64_t B, int64_t C, int64_t OC, ActParams act);

// Backward of linear_forward (with or without its activation), in one call:
//   g      = act_backward(dout, z, y)   (dout (B,OC); z (B,OC) the pre-activation, y (B,OC) the
//            activation's output: act_backward_needs_input(act.kind) says which is read, the
//            other may be null; identity: g = dout)
//   dbias  (OC)   = colsum(g)              fixed order; += when accumulate_bias     (null: skipped)
//   dweight(OC,C) = g^T @ inp (TN)         += when accumulate_weight                (null: skipped)
//   dinp   (B,C)  = g @ weight (NN)        overwritten                              (null: skipped)
// inp (B,C), weight (OC,C). The masked g lives in a per-thread scratch buffer; dout is not written.
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* act_in, const float* act_out, int64_t B,
                     int64_t C, int64_t OC, ActParams act, bool accumulate_weight,
                     bool accumulate_bias);

// MSE loss and its gradient in one pass over the data (the training step needs both):
//   returns mean over n of (pred - target)^2 (double accumulation, fixed order, as mse_forward)
//   dpred (n) = scale * (pred - target)          (scale = 2/n for the mean, 2 for the sum)
double mse_forward_backward(float* dpred, const float* pred, const float* target, int64_t n,
                            float scale);

// sgd_step over n parameters at once (same options for all); first_step[i] as in sgd_step.
// params[i], grads[i], bufs[i] (bufs[i] may be null when momentum == 0) each have sizes[i] floats.
void sgd_step_many(float* const* params, const float* const* grads, float* const* bufs,
                   const int64_t* sizes, const bool* first_step, int64_t n, const SgdOptions& opt);

}  // namespace fastmlp
