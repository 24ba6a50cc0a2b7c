// The general trainer's small-path forward and backward (mlp_fit_small.h), written once and
// compiled per ISA by mlp_fit_small_{generic,avx2,avx512}.cpp with their own flags. The products
// are the register-tiled kernels of the ReLU trainer's small path (mlp_train_small.h).
#pragma once
#include <cstring>

#include "fastmlp/activations.h"
#include "fastmlp/dropout.h"
#include "mlp_fit_small.h"
#include "mlp_train_small.h"

namespace fastmlp::detail {
namespace {  // internal linkage: one copy per ISA file

// act(x) over the rows [0, rows) of x (ld wide; columns past Bp are never read): in a team each
// thread its share of the elements (multiples of 64, as the activation kernels' own split, so
// the values do not depend on the team size), then a barrier.
inline void team_act_forward(float* y, const float* x, int64_t n, ActParams p) {
    int64_t lo, hi;
    team_share(n, lo, hi);
    if (hi > lo) act_forward(y + lo, x + lo, hi - lo, p);
    team_barrier();
}
inline void team_act_backward(float* d, const float* z, const float* y, int64_t n, ActParams p) {
    int64_t lo, hi;
    team_share(n, lo, hi);
    if (hi > lo) act_backward(d + lo, d + lo, z ? z + lo : nullptr, y ? y + lo : nullptr, hi - lo, p);
    team_barrier();
}

// a[l + 1] (out, Bp) = act(W a[l] + b), dropout applied (mask and pre-mask output kept). Inside a
// SmallTeam (mlp_train_small.h) every thread calls it: the products and the element-wise passes
// split over the team, the gather and the transposed copy of P on one thread.
[[maybe_unused]] void fit_small_forward_impl(const std::vector<FitLayer>& layers,
                                             FitSmallScratch& s, const float* X,
                                             const int64_t* idx, int64_t B, bool train,
                                             uint64_t dseed, int64_t step, float* P) {
    const int64_t ld = s.ld, L = int64_t(layers.size());
    const int64_t Bp = (B + kLanes - 1) / kLanes * kLanes;
    team_single([&] { gather_rows(s.a[0], ld, X, layers[0].in, idx, B, Bp); });
    for (int64_t l = 0; l < L; ++l) {
        const FitLayer& ly = layers[size_t(l)];
        float* out = s.a[size_t(l + 1)];
        float* zl = s.z[size_t(l)];
        BcastEpi e;
        e.bias = ly.bias;
        // Z (out, Bp) = W (out, in) @ A (in, Bp) + b
        bcast_product(zl ? zl : out, ld, ly.weight, ly.in, 1, s.a[size_t(l)], ld, ly.out, ly.in, Bp,
                      e);
        // The activation over whole rows (ld wide: columns past Bp are never read). (Run in the
        // product's tile epilogue through act_forward_tile it saved the barrier but cost more
        // in per-tile calls: 1 thread 77.5 -> 81 us a step on 6-64-64-1 b64, AVX2 EPYC.)
        if (ly.act.kind != Act::identity) team_act_forward(out, zl ? zl : out, ly.out * ld, ly.act);
        if (train && ly.dropout > 0.0f) {
            float* m = s.mask[size_t(l)];
            float* yk = s.ykeep[size_t(l)];
            const float p = ly.dropout;
            const float keep_scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
            for_each_tile(ly.out, 0.0, [&](int64_t o) {
                float* mr = m + o * ld;
                float* yr = yk + o * ld;
                float* orow = out + o * ld;
                for (int64_t b = 0; b < B; ++b) {  // the gemm path's mask of element (b, o)
                    const bool keep = dropout_uniform(dseed, step, l, (s.row0 + b) * ly.out + o) >= p;
                    mr[b] = keep ? keep_scale : 0.0f;
                }
                for (int64_t b = B; b < Bp; ++b) mr[b] = 0.0f;
                for (int64_t b = 0; b < Bp; ++b) {
                    yr[b] = orow[b];
                    orow[b] = orow[b] * mr[b];
                }
            });
        }
    }
    const int64_t O = layers.back().out;
    const float* pf = s.a[size_t(L)];
    // On the team's thread 0, no barrier: in a team the caller reads P on thread 0 (team_master)
    // or after a barrier of its own.
    team_master([&] {
        for (int64_t b = 0; b < B; ++b)
            for (int64_t o = 0; o < O; ++o) P[b * O + o] = pf[o * ld + b];
    });
}

// Whether layer ly's dW takes the register tiles accumulated across the batch (by shape, never
// by thread count; the measurements are at its use below). One rule for both questions the
// backward asks of it: this layer's kernel, and whether the next layer transposes into s.at
// (which decides the barrier after this layer's dW).
inline bool takes_reg_gw(const FitLayer& ly, int64_t gw_off, int64_t Bp) {
    return gw_off >= 0 && ly.out >= 2 && ly.in >= 8 && reg_gw_fits(ly.in, Bp);
}

// Inside a SmallTeam, as the forward. Per layer: the dropout and activation backward (split,
// barriers); then the batch-major copy of A (one thread), the bias gradient (rows split) and
// dA = W^T dZ (tiles split) side by side, a barrier (none at layer 0 without the transposed
// copy); then dW (tiles split), with a barrier after it only where the next layer transposes
// into s.at, and after the last layer's (the update reads grads). dZ rotates through d0, d1, d2.
[[maybe_unused]] void fit_small_backward_impl(const std::vector<FitLayer>& layers,
                                              FitSmallScratch& s, int64_t B, const float* dP,
                                              float* grads, const int64_t* gw_off,
                                              const int64_t* gb_off, const FitSmallSplit* split) {
    const int64_t ld = s.ld, L = int64_t(layers.size());
    const int64_t Bp = (B + kLanes - 1) / kLanes * kLanes;
    // split (one thread only): the partitions [0, cut) and [cut, B), each padded on its own
    const int64_t cut = split ? split->cut : 0;
    const int64_t Bp1 = split ? (B - cut + kLanes - 1) / kLanes * kLanes : 0;
    const int64_t O = layers.back().out;
    // dZ rotates through three buffers: layer l's dW (nowait) may still read its dZ while the
    // team's layer l - 1 writes its own dA into the next buffer.
    float* const dbuf[3] = {s.d0, s.d1, s.d2};
    int cur = 0;
    float* dz = dbuf[0];
    // dP, transposed; pad columns zero (dP null: the caller already put it in s.d0, with
    // mlp_fit_small_load_dp, and a barrier since)
    if (dP) team_single([&] { fit_small_load_dp(s, B, Bp, O, dP); });
    bool act_done = false;  // dz already holds act'(.) * dA (fused into the dA product below)
    for (int64_t l = L - 1; l >= 0; --l) {
        const FitLayer& ly = layers[size_t(l)];
        const int64_t out = ly.out, in = ly.in;
        if (ly.dropout > 0.0f) {
            const float* m = s.mask[size_t(l)];
            for_each_tile(out, 0.0, [&](int64_t o) {
                for (int64_t b = 0; b < Bp; ++b) dz[o * ld + b] *= m[o * ld + b];
            });
        }
        if (ly.act.kind != Act::identity && !act_done) {
            const float* yv = ly.dropout > 0.0f ? s.ykeep[size_t(l)] : s.a[size_t(l + 1)];
            team_act_backward(dz, s.z[size_t(l)], yv, out * ld, ly.act);
        }
        const float* a = s.a[size_t(l)];
        // dW by shape (never by thread count): up to 64 samples, layers of >= 2 outputs and
        // >= 8 inputs take the register tiles accumulated across the batch; the rest the dot
        // tiles. Measured (CPU time, 1 thread, AVX2 EPYC shared with other jobs, 6-64-64-1 at
        // batch 64): 64x64 layer 18.2 -> 14.9 us with its transpose; the 1x64 output layer 0.33
        // vs 0.87 us and the 64x6 input layer 2.2 vs 2.4 us stay on the dot tiles.
        const bool reg_gw = takes_reg_gw(ly, gw_off[l], split ? cut : Bp);
        const bool reg_gw1 = split && takes_reg_gw(ly, gw_off[l], Bp1);
        const int64_t lda = (in + kVW - 1) / kVW * kVW;
        // A transposed to batch-major, for the register tiles (s.at is free: the previous
        // layer's dW finished at its barrier)
        if (reg_gw || reg_gw1)
            team_single_nowait([&] { simd_vf::transpose(s.at, lda, a, ld, in, Bp); });
        if (gb_off[l] >= 0) {
            float* gb = grads + gb_off[l];
            if (split) {
                float* gb1 = split->grads1 + gb_off[l];
                for (int64_t o = 0; o < out; ++o) {
                    gb[o] = sum_lanes(dz + o * ld, cut);
                    gb1[o] = sum_lanes(dz + o * ld + cut, Bp1);
                }
            } else {
                for_each_tile<false>(out, 0.0,
                                     [&](int64_t o) { gb[o] = sum_lanes(dz + o * ld, Bp); });
            }
        }
        float* da = dbuf[(cur + 1) % 3];
        const bool act_fused = l > 0 && layers[size_t(l - 1)].act.kind == Act::tanh &&
                               layers[size_t(l - 1)].dropout == 0.0f;
        if (l > 0) {  // dA (in, Bp) = W^T (in, out) @ dZ (out, Bp)
            BcastEpi e;
            if (act_fused) {
                // the previous layer's tanh backward in the tile epilogue, from its output a
                e.tanh_y = a;
                e.ldm = ld;
            }
            bcast_product<false>(da, ld, ly.weight, 1, in, dz, ld, in, out, Bp, e);
        }
        // dA and the transposed A are read after this barrier. Layer 0 without the transpose
        // needs none: its dZ was ready at the previous layer's barrier.
        if (l > 0 || reg_gw || reg_gw1) team_barrier();
        // dW without a barrier after it where nothing the next layer writes before its own
        // barrier is read here: dZ is not (three buffers); s.at is, when the next layer
        // transposes into it. The last layer's dW ends with a barrier (the update reads grads).
        const bool next_reg = l > 0 && takes_reg_gw(layers[size_t(l - 1)], gw_off[l - 1], Bp);
        const bool wait = l == 0 || (reg_gw && next_reg);
        if (split) {  // partition 0's dW, then partition 1's (one thread: no barriers)
            if (gw_off[l] >= 0) {
                float* g0 = grads + gw_off[l];
                float* g1 = split->grads1 + gw_off[l];
                if (reg_gw) {
                    GwOut go;
                    go.g = g0;
                    gw_product(dz, ld, s.at, lda, out, in, cut, go);
                } else {
                    dot_product(g0, in, dz, a, ld, out, in, cut);
                }
                if (reg_gw1) {
                    GwOut go;
                    go.g = g1;
                    gw_product(dz + cut, ld, s.at + cut * lda, lda, out, in, B - cut, go);
                } else {
                    dot_product(g1, in, dz + cut, a + cut, ld, out, in, Bp1);
                }
            }
        } else if (reg_gw) {
            // dW (out, in) = dZ (out, ld) @ At (B, lda): register tiles over the batch (each
            // element the plain in-order sum over b < B), from A transposed to batch-major
            GwOut go;
            go.g = grads + gw_off[l];
            if (wait) gw_product<true>(dz, ld, s.at, lda, out, in, B, go);
            else gw_product<false>(dz, ld, s.at, lda, out, in, B, go);
        } else if (gw_off[l] >= 0) {  // dW (out, in) = dZ (out, Bp) @ A (in, Bp)^T
            if (wait) dot_product<true>(grads + gw_off[l], in, dz, a, ld, out, in, Bp);
            else dot_product<false>(grads + gw_off[l], in, dz, a, ld, out, in, Bp);
        } else if (wait) {
            team_barrier();
        }
        act_done = act_fused;
        dz = da;
        cur = (cur + 1) % 3;
    }
}

}  // namespace
}  // namespace fastmlp::detail

// Expects FASTMLP_FIT_SMALL_FORWARD_NAME and FASTMLP_FIT_SMALL_BACKWARD_NAME.
#define FASTMLP_FIT_SMALL_BODY                                                                     \
    namespace fastmlp::detail {                                                                    \
    void FASTMLP_FIT_SMALL_FORWARD_NAME(const std::vector<FitLayer>& layers, FitSmallScratch& s,   \
                                        const float* X, const int64_t* idx, int64_t B, bool train, \
                                        uint64_t dseed, int64_t step, float* P) {                  \
        fit_small_forward_impl(layers, s, X, idx, B, train, dseed, step, P);                       \
    }                                                                                              \
    void FASTMLP_FIT_SMALL_BACKWARD_NAME(const std::vector<FitLayer>& layers, FitSmallScratch& s,  \
                                         int64_t B, const float* dP, float* grads,                 \
                                         const int64_t* gw_off, const int64_t* gb_off,             \
                                         const FitSmallSplit* split) {                             \
        fit_small_backward_impl(layers, s, B, dP, grads, gw_off, gb_off, split);                   \
    }                                                                                              \
    }
