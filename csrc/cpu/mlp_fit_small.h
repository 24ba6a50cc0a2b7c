// The small-matrix path of the general fused trainer (internal header, not part of the kernel API).
//
// For small chains (e.g. 6 -> 64 -> 64 -> 1 at batch 64) a step is a few microseconds of
// arithmetic, so sgemm's per-call costs (packing, blocking, OpenMP) would dominate it. As the
// ReLU/MSE/SGD trainer's small path (mlp_train_small.h, whose register-tiled kernels this reuses),
// activations are kept feature-major, (features, ld) with the batch along the row, and the three
// products of each layer run as register tiles reading the operands in place:
//   forward   Z_l (out, Bp) = W_l @ A_l + b_l (bcast tiles), Y_l = act_l(Z_l) (activations.h's
//             SIMD kernels over the rows), dropout with the masks of the gemm path (the same
//             counter-based stream, indexed by the batch-major position (row0 + b) * out + o)
//   backward  dZ_l = act_l'(dA_{l+1} * mask_l), dW_l = dZ_l @ A_l^T, db_l = row sums,
//             dA_l = W_l^T @ dZ_l (bcast tiles). dW: up to 64 samples (Bp <= 64; on AVX-512 up
//             to 256 for 32 inputs or more: reg_gw_fits) the register tiles accumulated across
//             the batch (gw_product, on a batch-major copy of A_l), as the ReLU trainer does;
//             beyond, the lane-parallel dot tiles (a choice by shape)
// The batch is padded to a multiple of 16 columns; pad columns of the inputs and of every
// gradient are zero, so they add nothing to the weight and bias gradients. The loss and the
// update stay in mlp_fit.cpp (the same functions as the gemm path): the forward hands back the
// prediction batch-major (B, O) and the backward takes dLoss/dP batch-major, writing the flat
// gradient buffer of mlp_fit.cpp. Every sum has a fixed order fixed by the shapes alone, so the
// result does not depend on the thread count. Compiled per ISA (mlp_fit_small_{generic,avx2,
// avx512}.cpp, each including mlp_fit_small_body.h); mlp_fit_small.cpp picks one.
#pragma once
#include <cstdint>
#include <vector>

#include "scratch_cache.h"
#include "fastmlp/mlp_fit.h"

namespace fastmlp::detail {

struct FitSmallScratch {
    int64_t ld = 0;                        // padded batch stride (multiple of 16)
    std::vector<float*> a;                 // a[l] (in_l, ld), l = 0..L (a[L]: the prediction)
    std::vector<float*> z;                 // z[l] (out_l, ld): pre-activation where backward reads it
    std::vector<float*> mask, ykeep;       // dropout: scale (0 or 1/(1-p)) and output before it
    float* d0 = nullptr;                   // (max width, ld) gradient ping-pong
    float* d1 = nullptr;
    float* d2 = nullptr;                   // (the backward rotates dZ through d0, d1, d2)
    float* at = nullptr;                   // (ld, round-up(max in, 16)): a layer's input,
                                           // batch-major, for the register-tile weight gradient
    int64_t row0 = 0;                      // the batch's first row in the global batch (dropout)
    ScratchVec storage;
    void init(const std::vector<FitLayer>& layers, int64_t batch);
};

// Whether fit's automatic choice takes the small path for these shapes (never on the thread
// count or the ISA, so results stay bitwise equal across thread counts).
bool mlp_fit_small_fits(const std::vector<FitLayer>& layers, int64_t batch_size);

// Forward of one training batch X[idx[0..B)] (dropout drawn for `step` when train), the
// prediction written batch-major to P (B, layers.back().out).
void mlp_fit_small_forward(const std::vector<FitLayer>& layers, FitSmallScratch& s, const float* X,
                           const int64_t* idx, int64_t B, bool train, uint64_t dseed, int64_t step,
                           float* P);

// The data-parallel partitions computed in one pass (mlp_fit.cpp, one thread): the batch's
// columns [0, cut) are partition 0, [cut, B) partition 1 (cut a multiple of 16, 0 < cut < B). The
// forward and every per-column pass are the partitions' (a column's arithmetic does not depend
// on the columns around it); the sums over the batch (dW, db) run per partition, exactly as each
// partition's own backward would (its own Bp picks its dW kernel), partition 0's into grads and
// partition 1's into grads1 (the same layout).
struct FitSmallSplit {
    int64_t cut = 0;
    float* grads1 = nullptr;
};

// Backward from dP (B, out) batch-major (null: already in s.d0, fit_small_load_dp): every
// trainable parameter's gradient into grads, at gw_off[l] / gb_off[l] (-1: frozen, no slot). The
// weights are not changed. split (one thread only): the partitions' sums apart (FitSmallSplit).
void mlp_fit_small_backward(const std::vector<FitLayer>& layers, FitSmallScratch& s, int64_t B,
                            const float* dP, float* grads, const int64_t* gw_off,
                            const int64_t* gb_off, const FitSmallSplit* split = nullptr);

// dLoss/dP (B, O) batch-major into s.d0 (O, ld) feature-major, pad columns [B, Bp) zero: what
// the backward does first; a caller that has run it itself (on one thread of a team, then a
// barrier) passes dP = null to the backward.
inline void fit_small_load_dp(FitSmallScratch& s, int64_t B, int64_t Bp, int64_t O,
                              const float* dP) {
    for (int64_t o = 0; o < O; ++o) {
        float* d = s.d0 + o * s.ld;
        for (int64_t b = 0; b < B; ++b) d[b] = dP[b * O + o];
        for (int64_t b = B; b < Bp; ++b) d[b] = 0.0f;
    }
}

// The per-ISA bodies.
using FitSmallForwardFn = void (*)(const std::vector<FitLayer>&, FitSmallScratch&, const float*,
                                   const int64_t*, int64_t, bool, uint64_t, int64_t, float*);
using FitSmallBackwardFn = void (*)(const std::vector<FitLayer>&, FitSmallScratch&, int64_t,
                                    const float*, float*, const int64_t*, const int64_t*,
                                    const FitSmallSplit*);
void fit_small_forward_generic(const std::vector<FitLayer>&, FitSmallScratch&, const float*,
                               const int64_t*, int64_t, bool, uint64_t, int64_t, float*);
void fit_small_backward_generic(const std::vector<FitLayer>&, FitSmallScratch&, int64_t,
                                const float*, float*, const int64_t*, const int64_t*,
                                const FitSmallSplit*);
#ifdef FASTMLP_HAVE_X86_KERNELS
void fit_small_forward_avx2(const std::vector<FitLayer>&, FitSmallScratch&, const float*,
                            const int64_t*, int64_t, bool, uint64_t, int64_t, float*);
void fit_small_backward_avx2(const std::vector<FitLayer>&, FitSmallScratch&, int64_t,
                             const float*, float*, const int64_t*, const int64_t*,
                             const FitSmallSplit*);
void fit_small_forward_avx512(const std::vector<FitLayer>&, FitSmallScratch&, const float*,
                              const int64_t*, int64_t, bool, uint64_t, int64_t, float*);
void fit_small_backward_avx512(const std::vector<FitLayer>&, FitSmallScratch&, int64_t,
                               const float*, float*, const int64_t*, const int64_t*,
                               const FitSmallSplit*);
#endif

}  // namespace fastmlp::detail
