// fastmlp GEMM: the one matrix-product entry point of the kernel library.
//
//   C = alpha * op(A) @ op(B) + beta * C,  then optionally  C += bias (per column),  C = f(C)
// with f the epilogue's activation (relu, or any kind of activation.h).
//
// op(X) is X (trans = false) or X^T (trans = true). All matrices are float32, row-major, with an
// explicit leading dimension (the distance in elements between two rows as stored).
//   A stored as (M, K) with lda >= K   when !trans_a,  as (K, M) with lda >= M when trans_a
//   B stored as (K, N) with ldb >= N   when !trans_b,  as (N, K) with ldb >= K when trans_b
//   C stored as (M, N) with ldc >= N
// beta == 0 overwrites C without reading it (NaN in C does not leak). K == 0 gives beta*C (+bias).
// The three MLP products: forward X @ W^T (NT), input grad dY @ W (NN), weight grad dY^T @ X (TN).
//
// Kernels assume valid input (sizes >= 0, pointers valid for the sizes, C not aliasing A, B or bias);
// the Python bindings check all of that before calling.
// Threads split output tiles only, never K: results are bitwise identical for any thread count.
#pragma once
#include <cstdint>

#include "fastmlp/activation.h"

namespace fastmlp {

struct GemmEpilogue {
    const float* bias = nullptr;  // (N) added to every row of C after alpha/beta, or null
    bool relu = false;            // clamp at 0 last (relu(NaN) stays NaN)
    // An element-wise activation applied last (after bias). Act::relu is the same as relu = true
    // (done in the micro-kernels' store); other kinds are applied by the driver to each finished
    // output tile while it is in cache (activations.h act_forward_tile). Not combined with relu.
    ActParams act = {};
    // With a non-ReLU act: when set, each finished tile is also stored here before the activation
    // (the pre-activation z, (M,N) with leading dimension ldc), so that a backward needing z
    // gets it from the same pass.
    float* pre_act = nullptr;
};

// The micro-kernels' ReLU flag, and whether the driver applies epi.act to finished tiles.
inline bool epilogue_relu(const GemmEpilogue& e) { return e.relu || e.act.kind == Act::relu; }
inline bool epilogue_tile_act(const GemmEpilogue& e) {
    return !e.relu && e.act.kind != Act::identity && e.act.kind != Act::relu;
}

// The fast path: dispatches to the micro-kernels of the ISA chosen at import (cpu_features.h).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, GemmEpilogue epi = {});

// The plain reference: triple loop, same contract, single thread. For tests and as a fallback.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, GemmEpilogue epi = {});

}  // namespace fastmlp
