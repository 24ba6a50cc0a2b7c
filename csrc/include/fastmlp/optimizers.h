// fastmlp optimizer kernels on the CPU: one call steps every parameter of a group (multi-tensor).
// The update rules themselves live in optimizer.h (shared with the CUDA kernels and the fused
// trainers); these walk the parameters. llm.c style: outputs (parameters and state, updated in
// place) first, then inputs, then sizes. float32, contiguous, int64 sizes. Kernels assume valid
// input (the bindings check it). Element-wise, so results do not depend on the thread count.
//
// For parameter k (0 <= k < n): params[k], grads[k] and each state array have sizes[k] floats;
// steps[k] is the parameter's step count AFTER this step (1 on its first step, as torch's
// state["step"] once incremented). State arrays a kind or option does not use may be null (their
// whole list may be null).
#pragma once
#include <cstdint>

#include "fastmlp/optimizer.h"

namespace fastmlp {

// Any kind; state slots s0, s1, s2 as in optimizer.h's table.
void optim_step_many(float* const* params, const float* const* grads, float* const* s0,
                     float* const* s1, float* const* s2, const int64_t* sizes,
                     const int64_t* steps, int64_t n, const OptimOptions& opt);

// The loop optim_step_many runs on the elements [lo, hi) of one parameter for these options (the
// ISA in use picked), with the step's coefficients c = optim_coeffs(opt, step): for callers that
// walk parameters in pieces and step them all at the same count (the fused trainer's team
// update computes the coefficients once a step). Single-threaded; the same bits as
// optim_step_many on those elements.
using OptimRangeFn = void (*)(float* p, const float* g, float* s0, float* s1, float* s2,
                              int64_t lo, int64_t hi, const OptimCoeffs& c);
OptimRangeFn optim_range_fn(const OptimOptions& opt);

// The plain reference: one optim_step_scalar per element, serial (tests compare against it).
void optim_step_many_reference(float* const* params, const float* const* grads, float* const* s0,
                               float* const* s1, float* const* s2, const int64_t* sizes,
                               const int64_t* steps, int64_t n, const OptimOptions& opt);

// torch.optim.Adam / AdamW (opt.kind adam or adamw). max_exp_avg_sqs only with opt.amsgrad.
void adam_step_many(float* const* params, const float* const* grads, float* const* exp_avgs,
                    float* const* exp_avg_sqs, float* const* max_exp_avg_sqs, const int64_t* sizes,
                    const int64_t* steps, int64_t n, const OptimOptions& opt);

// torch.optim.RMSprop. momentum_buffers only with opt.momentum > 0, grad_avgs only with centered.
void rmsprop_step_many(float* const* params, const float* const* grads, float* const* square_avgs,
                       float* const* momentum_buffers, float* const* grad_avgs,
                       const int64_t* sizes, const int64_t* steps, int64_t n,
                       const OptimOptions& opt);

// torch.optim.Adagrad (sums start at opt.initial_accumulator_value: the caller fills them).
void adagrad_step_many(float* const* params, const float* const* grads, float* const* sums,
                       const int64_t* sizes, const int64_t* steps, int64_t n,
                       const OptimOptions& opt);

}  // namespace fastmlp
