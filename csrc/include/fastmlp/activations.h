// fastmlp element-wise activation kernels and row-wise softmax / log_softmax (CPU).
// The numeric rules are activation.h's (enum Act, ActParams, scalar forward/backward); these are
// their vectorised array versions: AVX-512 / AVX2 kernels (own exp/tanh/erf approximations,
// within a few float32 ulp of the rule's exact value) chosen by the current ISA, the scalar rule
// itself on the generic path. llm.c style: outputs first, then inputs, then sizes. float32,
// contiguous, int64 sizes. Kernels assume valid input (the bindings check it). Element-wise work
// is split over OpenMP threads in fixed chunks and rows of the softmax over threads; every
// element's arithmetic is the same for any thread count, so results are bitwise independent of it.
#pragma once
#include <cstdint>

#include "fastmlp/activation.h"

namespace fastmlp {

// out (n) = f(z) (n).  out may equal z (in place).
void act_forward(float* out, const float* z, int64_t n, ActParams p);

// dz (n) = dy * f'(z): z (n) the pre-activation, y (n) = f(z). act_backward_needs_input(p.kind)
// says which is read: z for gelu, gelu_tanh, silu, leaky_relu, elu, softplus, hardtanh (y may
// then be null); y for identity, relu, tanh, sigmoid (z may then be null). dz may equal dy.
void act_backward(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                  ActParams p);

// c (m, n), leading dimension ldc: c = f(c) in place, on the calling thread (the GEMM epilogue
// applies this to each finished output tile).
void act_forward_tile(float* c, int64_t ldc, int64_t m, int64_t n, ActParams p);

// Row-wise over the last dimension of x (rows, cols), max-subtracted:
//   softmax:      out = exp(x - max) / sum exp(x - max)
//   log_softmax:  out = x - max - log(sum exp(x - max))
// A row holding NaN or +inf gives NaN (as PyTorch). out may equal x.
void softmax_forward(float* out, const float* x, int64_t rows, int64_t cols, bool log);

// Backward from the forward's output y (rows, cols) and the output gradient g:
//   softmax:      dx = y (g - sum_j g y)        log_softmax: dx = g - exp(y) sum_j g
// dx may equal g.
void softmax_backward(float* dx, const float* g, const float* y, int64_t rows, int64_t cols,
                      bool log);

// The plain references: the scalar rules in a loop (double sums for the softmax), one thread.
void act_forward_reference(float* out, const float* z, int64_t n, ActParams p);
void act_backward_reference(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                            ActParams p);
void softmax_forward_reference(float* out, const float* x, int64_t rows, int64_t cols, bool log);
void softmax_backward_reference(float* dx, const float* g, const float* y, int64_t rows,
                                int64_t cols, bool log);

}  // namespace fastmlp
