// The small-matrix step of the fused trainer (internal header, not part of the kernel API).
//
// For tiny nets (e.g. 10 -> 20 -> 1 at batch 64) a step is well under a microsecond of arithmetic,
// so packing, OpenMP and per-call dispatch would dominate. This path keeps every activation
// feature-major, (features, ld) with the batch along the row, and runs the three products of each
// layer as register-tiled kernels that read the operands in place (no packing, as XLA does for
// such shapes): a tile of 6 rows x 16 samples (AVX2) stays in registers over the whole reduction,
// broadcasting weights against batch vectors, so it runs near the FMA peak at any width from 16
// to 1024 and any batch (no cliff where the tile count changes). The trainers run an epoch's
// steps on one OpenMP team (see "The persistent team" below), over which every product splits
// its output tiles; every sum has a fixed order (the tiling depends on the shapes only), so the
// result does not depend on the thread count.
//
// The step body is defined once here (FASTMLP_SMALL_STEP_BODY) and compiled per ISA by
// mlp_train_small_{generic,avx2,avx512}.cpp, each with its own compiler flags.
#pragma once
#pragma GCC diagnostic ignored "-Wpsabi"  // vf below never crosses a non-inlined call
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 avx512fintrin.h casts
#include <algorithm>
#include <cassert>
#pragma GCC diagnostic ignored "-Wuninitialized"        // (the same casts, seen through inlining)
#include <cmath>
#include <cstdint>
#include <vector>

#include "fastmlp/cpu_features.h"
#include "omp_team.h"
#include "scratch_cache.h"
#include "simd_vf.h"
#include "fastmlp/mlp.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace fastmlp::detail {

// What an optimizer step needs, in both modes.
struct StepRule {
    MlpMode mode = MlpMode::torch;
    float lr = 0.01f, momentum = 0.0f, dampening = 0.0f, weight_decay = 0.0f, alpha = 0.0f;
    bool nesterov = false;
};

// Data-parallel step (MlpTrainOptions::grad_allreduce): instead of updating, the step writes its
// gradients into buf (per layer weight (out, in) then bias (out), in layer order) and normalises
// the loss and gradients by `count` (global batch rows x outputs) instead of its own rows.
struct GradSink {
    float* buf = nullptr;
    double count = 0.0;
};

// ---- The persistent team of the small path. A step of a small net is a few to a few hundred
// microseconds, ~10 products and some serial bits: forking an OpenMP region per product (~1.1 us
// warm on the 2-core AVX2 EPYC) never paid, so the trainers open ONE team per epoch (SmallTeam,
// below) and every thread of it runs the same step code: the products split their tiles with an
// orphaned `omp for` (a barrier, ~0.45 us), the serial bits run in `omp single`. Control flow is
// the same on every thread (every decision is made from shared values after a barrier), so the
// worksharing constructs are met in the same order. t_small_team is the team's size on the
// threads of such a team, 0 elsewhere (a product called outside one forks its own region, as
// before, above 1 MFLOP). Which thread runs a tile never changes the tile's arithmetic.
extern thread_local int t_small_team;
// Whether this thread's last small step stopped at the caller's should_stop (SmallScratch::poll).
extern thread_local bool t_small_stop;

inline bool in_small_team() { return t_small_team > 1; }

#ifndef NDEBUG
// Debug builds: the OpenMP nesting level of this thread's team (set with t_small_team).
inline thread_local int t_small_level = 0;
#endif

// Marks the calling thread as a member of a team of nt threads for its lifetime. (t_small_team
// == 1 inside a team, SmallTeamAlone: the helpers below act serially and never fork.)
struct SmallTeamMember {
    explicit SmallTeamMember(int nt) {
        t_small_team = nt;
#ifndef NDEBUG
        t_small_level = omp_get_level();
#endif
    }
    ~SmallTeamMember() { t_small_team = 0; }
    SmallTeamMember(const SmallTeamMember&) = delete;
    SmallTeamMember& operator=(const SmallTeamMember&) = delete;
};

// For its lifetime the calling team member works alone (team_single / for_each_tile / barriers act
// as outside a team, nothing forks); its team size is restored after.
struct SmallTeamAlone {
    int saved;
    SmallTeamAlone() : saved(t_small_team) { t_small_team = 1; }
    ~SmallTeamAlone() { t_small_team = saved; }
    SmallTeamAlone(const SmallTeamAlone&) = delete;
    SmallTeamAlone& operator=(const SmallTeamAlone&) = delete;
};

// The data-parallel partitions of a small-path batch (both trainers, by shape only: a 1-thread
// run computes the same partitions one after the other and sums them in the same order). Rows
// [lo, hi) of partition h of a batch of B rows split in `parts` (1 or 2): the cut at ceil(B / 2)
// rounded up to a multiple of 16 (the small path pads each part to 16 columns, so the two parts
// together pad no more than the whole batch would). A batch of 16 or fewer rows leaves
// partition 1 empty.
inline void small_part_rows(int64_t B, int64_t h, int64_t parts, int64_t& lo, int64_t& hi) {
    if (parts == 1) {
        lo = 0;
        hi = B;
        return;
    }
    const int64_t cut = std::min(B, ((B + 1) / 2 + 15) / 16 * 16);
    lo = h == 0 ? 0 : cut;
    hi = h == 0 ? cut : B;
}

// The team size for a small-path epoch whose steps cost `step_flops` each (1: no team). A step
// has about 10 barriers plus 2 per layer. On the quiet 2-core AVX2 EPYC an `omp for` barrier
// costs ~0.45 us and the small path runs ~20 GFLOP/s a core, so halving a step's products pays
// from roughly 2 x 10 x 0.45 us x 20 GFLOP/s ~ 200 kFLOP a step: the threshold is 250 kFLOP
// (20-64-64-1 at batch 16, 522 kFLOP, takes the team; 20-32-32-1 at 16, 163 kFLOP, does not).
// Measured on that machine shared by 4 jobs (load 6-12, wall clock, min of 40 interleaved
// repeats, 2 threads / 1): 20-32-32-1 b16 0.52, 20-64-64-1 b16 0.37 and b64 0.91, 6-64-64-1
// Tanh/Huber/Adam b64 1.17 - on a loaded machine a barrier waits for a descheduled partner, so
// these are lower bounds; a quiet machine has not been available to place it better.
//
// That threshold is the data-parallel halves' (2 barriers a step, relu_parts / mlp_fit's
// data_parallel_parts). A step without halves (a batch under 32 rows, sklearn mode, in the ReLU
// trainer a layer over 8192 weights, 256 x 256 on AVX-512: relu_parts) splits every product
// between barriers, and on the AVX-512 path the products run about 2.5x faster a core than on
// AVX2 while the barriers cost the same, so that tile team pays
// from a larger step there: kTileTeamMinFlopsAvx512. Measured on a 2-core AMD EPYC Zen 4
// (AVX-512, 2026-12-02, a noisy VM, min of 3 whole epochs, 1 thread vs 2 alternating, 2 runs,
// us a step, batch 16): 20-48-48-1 (318 kFLOP) 5.2-7.1 vs 9.3-9.8, 20-64-64-1 (522 kFLOP)
// 8.5-10.9 vs 10.6-14.1, 20-96-96-1 (1.08 MFLOP) 15.1-20.0 vs 16.5-18.4, 20-128-128-1
// (1.85 MFLOP) 24-30 vs 23-26, 20-192-192-1 (3.9 MFLOP) 51-53 vs 42-50. The AVX2 and generic
// paths keep 250 kFLOP. The thread count never changes the bits, so this is speed only.
constexpr double kSmallTeamMinFlops = 2.5e5;
constexpr double kTileTeamMinFlopsAvx512 = 1.5e6;
inline int small_team_threads(double step_flops, bool halves) {
    double min_flops = kSmallTeamMinFlops;
#ifdef FASTMLP_HAVE_X86_KERNELS
    if (!halves && current_isa() == Isa::avx512) min_flops = kTileTeamMinFlopsAvx512;
#endif
    if (step_flops < min_flops) return 1;
    return threads_for(1.0e30);  // the library's thread count (and its fork-safety bookkeeping)
}

// f() on one thread of the team, then a barrier (outside a team: f()).
template <class F>
inline void team_single(F&& f) {
    if (!in_small_team()) return (void)f();
#pragma omp single
    f();
}
// f() on one thread of the team, no barrier after it.
template <class F>
inline void team_single_nowait(F&& f) {
    if (!in_small_team()) return (void)f();
#pragma omp single nowait
    f();
}
inline void team_barrier() {
    if (!in_small_team()) return;
#pragma omp barrier
}
// f() on the team's thread 0 (outside a team: f()), no barrier: a later serial piece that reads
// what f wrote runs on the same thread without one (team_master again), the rest of the team
// after the next barrier. The small fit relies on it: the forward's P copy and the trainer's loss
// both run here. Debug builds check that thread 0 is the team's own (called from a region nested
// in the team, every member would be thread 0 of its inner team and run f).
template <class F>
inline void team_master(F&& f) {
    assert(!in_small_team() || omp_get_level() == t_small_level);
    if (!in_small_team() || team_id() == 0) f();
}

// run(t) for t in [0, n): inside a team, split over it (static contiguous runs; Wait: a barrier
// after); outside, on ceil threads of threads_for(flops) forked here, or this thread alone.
template <bool Wait = true, class F>
inline void for_each_tile(int64_t n, double flops, F&& run) {
    if (in_small_team()) {
        if constexpr (Wait) {
#pragma omp for schedule(static)
            for (int64_t t = 0; t < n; ++t) run(t);
        } else {
#pragma omp for schedule(static) nowait
            for (int64_t t = 0; t < n; ++t) run(t);
        }
        return;
    }
    // (t_small_team == 1: a team's thread working alone on its own rows - mlp_fit's data-parallel
    // partitions - never forks)
    const int nt = n < 2 || t_small_team == 1 ? 1 : threads_for(flops);
    if (nt <= 1) {
        for (int64_t t = 0; t < n; ++t) run(t);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) run(t);
}

// This thread's contiguous share [lo, hi) of n elements in a team (all of them outside one),
// cut at multiples of 64 elements, so that a vectorised element-wise loop meets every element at
// the same alignment and in the same (vector body or tail) position whatever the team size.
inline void team_share(int64_t n, int64_t& lo, int64_t& hi) {
    if (!in_small_team()) {
        lo = 0;
        hi = n;
        return;
    }
    const int64_t tid = team_id(), nth = team_size();
    const int64_t blocks = (n + 63) / 64;
    lo = std::min(n, blocks * tid / nth * 64);
    hi = std::min(n, blocks * (tid + 1) / nth * 64);
}

// sum of the squared weights of a chain (MlpLayer or FitLayer), in double, in order: the L2 term.
template <class Layers>
double sum_sq_weights(const Layers& layers) {
    double w2 = 0.0;
    for (const auto& ly : layers)
        for (int64_t j = 0; j < ly.in * ly.out; ++j) w2 += double(ly.weight[j]) * ly.weight[j];
    return w2;
}

// Scratch of the small path, allocated once per mlp_train call.
struct SmallScratch {
    int64_t ld = 0;              // padded batch stride (multiple of 16)
    std::vector<float*> act;     // act[l] (width_l, ld), l = 0..L (act[L] = prediction)
    float* yT = nullptr;         // (out, ld)
    float* d0 = nullptr;         // (max width, ld) gradient ping-pong
    float* d1 = nullptr;
    float* gw = nullptr;         // (max in*out) weight gradient
    float* gb = nullptr;         // (max out) bias gradient
    float* at = nullptr;         // (ld, round-up(max in, 16)) a layer's input, batch-major
    ScratchVec storage;
    // Shared by a team's threads: the caller's should_stop (polled by the step that gathers, in
    // a team; null: the caller polls), whether it said stop, and the step's loss.
    bool (*poll)(void*) = nullptr;
    void* poll_ctx = nullptr;
    bool stop = false;
    double loss = 0.0;
    void init(const std::vector<MlpLayer>& layers, int64_t batch);
};

// One training step on the samples X[idx[0..B)], Y[idx[..]]. Returns the batch loss. When the loss
// is not finite and !allow_nonfinite, the parameters are left untouched. With a sink (not null),
// the gradients go to the sink and nothing is updated (the loss returned is this rank's share).
using SmallStepFn = double (*)(const std::vector<MlpLayer>& layers, SmallScratch& s,
                               const float* X, const float* Y, const int64_t* idx, int64_t B,
                               const StepRule& rule, bool first_step, bool allow_nonfinite,
                               GradSink* sink);

// Inference through the chain: out (n, d_out) = the chain on X (n, d_in), row-major, in chunks of
// rows through feature-major tiles. Every output element is the same fixed-order sum whatever n
// is, so a row's prediction does not depend on the rows around it (predict on a subset equals the
// subset of predict). Scratch is kept per thread: after the first call with a given net nothing
// is allocated.
using SmallForwardFn = void (*)(float* out, const std::vector<MlpLayer>& layers, const float* X,
                                int64_t n);
void small_forward_generic(float*, const std::vector<MlpLayer>&, const float*, int64_t);
#ifdef FASTMLP_HAVE_X86_KERNELS
void small_forward_avx2(float*, const std::vector<MlpLayer>&, const float*, int64_t);
void small_forward_avx512(float*, const std::vector<MlpLayer>&, const float*, int64_t);
#endif

double small_step_generic(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                          const int64_t*, int64_t, const StepRule&, bool, bool, GradSink*);
// The data-parallel partitions of one batch (torch mode, small_part_rows with parts = 2) in one
// pass on one thread: X[idx[0..B)] gathered once, the forward, the output gradient and the input
// gradients run once over the whole batch (each column, a sample, is computed alone: the same bits
// as in its partition's own step), and only the batch reductions are done per partition h, over
// its rows [lo, hi) in the order that partition's own step (small_step with a GradSink) takes:
// the loss share into loss[h], the bias and weight gradients into buf[h] (GradSink layout,
// normalised by `count`). The cut is a multiple of kLanes, so partition 1's columns start at a
// column block and its pad columns are the batch's. Partition 1 empty: buf[1] untouched, loss[1] 0.
using SmallPartsStepFn = void (*)(const std::vector<MlpLayer>& layers, SmallScratch& s,
                                  const float* X, const float* Y, const int64_t* idx, int64_t B,
                                  float* const* buf, double count, double* loss);
void small_parts_step_generic(const std::vector<MlpLayer>&, SmallScratch&, const float*,
                              const float*, const int64_t*, int64_t, float* const*, double,
                              double*);
#ifdef FASTMLP_HAVE_X86_KERNELS
void small_parts_step_avx2(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                           const int64_t*, int64_t, float* const*, double, double*);
void small_parts_step_avx512(const std::vector<MlpLayer>&, SmallScratch&, const float*,
                             const float*, const int64_t*, int64_t, float* const*, double, double*);
#endif

#ifdef FASTMLP_HAVE_X86_KERNELS
double small_step_avx2(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                       const int64_t*, int64_t, const StepRule&, bool, bool, GradSink*);
double small_step_avx512(const std::vector<MlpLayer>&, SmallScratch&, const float*, const float*,
                         const int64_t*, int64_t, const StepRule&, bool, bool, GradSink*);
#endif

}  // namespace fastmlp::detail

namespace fastmlp::detail {
namespace {  // internal linkage: each ISA file gets its own copy compiled with its own flags

// One parameter's update, plain loop (no OpenMP: the small path's parameters are tiny).
// torch:   g = grad + wd * p; buf = first ? g : m * buf + (1 - damp) * g; g = nesterov ? g + m buf : buf
//          p -= lr * g
// sklearn: g = grad + l2 * p; v = m * v - lr * g; p += nesterov ? m * v - lr * g : v
template <bool kSum>
inline void update_param_impl(float* p, const float* grad, const float* grad1, float* buf,
                              int64_t n, const StepRule& r, bool first_step, float l2) {
    const float lr = r.lr, m = r.momentum;
    if (r.mode == MlpMode::torch) {
        const float wd = r.weight_decay, damp1 = 1.0f - r.dampening;
        if (m == 0.0f) {
            for (int64_t j = 0; j < n; ++j) {
                float g = kSum ? grad[j] + grad1[j] : grad[j];
                if (wd != 0.0f) g += wd * p[j];
                p[j] -= lr * g;
            }
            return;
        }
        for (int64_t j = 0; j < n; ++j) {
            float g = kSum ? grad[j] + grad1[j] : grad[j];
            if (wd != 0.0f) g += wd * p[j];
            const float b = first_step ? g : m * buf[j] + damp1 * g;
            buf[j] = b;
            g = r.nesterov ? g + m * b : b;
            p[j] -= lr * g;
        }
        return;
    }
    for (int64_t j = 0; j < n; ++j) {
        float g = kSum ? grad[j] + grad1[j] : grad[j];
        if (l2 != 0.0f) g += l2 * p[j];
        if (m == 0.0f) {
            p[j] += -(lr * g);
            continue;
        }
        const float v = m * buf[j] - lr * g;
        buf[j] = v;
        p[j] += r.nesterov ? m * v - lr * g : v;
    }
}

inline void update_param(float* p, const float* grad, float* buf, int64_t n, const StepRule& r,
                         bool first_step, float l2) {
    update_param_impl<false>(p, grad, nullptr, buf, n, r, first_step, l2);
}

// update_param from the gradient grad0 + grad1 (the data-parallel partitions'), summed element by
// element in the loop: one float addition, as storing grad0 + grad1 first and updating from it
// (the same bits), one pass over memory instead of two.
inline void update_param_sum(float* p, const float* grad0, const float* grad1, float* buf,
                             int64_t n, const StepRule& r, bool first_step, float l2) {
    update_param_impl<true>(p, grad0, grad1, buf, n, r, first_step, l2);
}

}  // namespace
}  // namespace fastmlp::detail

// The step and forward bodies, compiled once per ISA. Expect FASTMLP_SMALL_STEP_NAME and
// FASTMLP_SMALL_FORWARD_NAME to be defined.
#define FASTMLP_SMALL_STEP_BODY                                                                    \
    namespace fastmlp::detail {                                                                    \
    double FASTMLP_SMALL_STEP_NAME(const std::vector<MlpLayer>& layers, SmallScratch& s,           \
                                   const float* X, const float* Y, const int64_t* idx, int64_t B,  \
                                   const StepRule& rule, bool first_step, bool allow_nonfinite,    \
                                   GradSink* sink) {                                               \
        return small_step_impl(layers, s, X, Y, idx, B, rule, first_step, allow_nonfinite, sink);  \
    }                                                                                              \
    void FASTMLP_SMALL_FORWARD_NAME(float* out, const std::vector<MlpLayer>& layers,               \
                                    const float* X, int64_t n) {                                   \
        small_forward_impl(out, layers, X, n);                                                     \
    }                                                                                              \
    void FASTMLP_SMALL_PARTS_NAME(const std::vector<MlpLayer>& layers, SmallScratch& s,           \
                                  const float* X, const float* Y, const int64_t* idx, int64_t B,   \
                                  float* const* buf, double count, double* loss) {                 \
        small_parts_step_impl(layers, s, X, Y, idx, B, buf, count, loss);                          \
    }                                                                                              \
    }

namespace fastmlp::detail {
namespace {

constexpr int64_t kLanes = 16;  // the batch is padded to a multiple of this (one column block)

// vf: one register of the ISA this copy is compiled for (simd_vf.h). A column block of 16
// samples is kNV registers. kAcc is how many accumulators a register tile may hold (the rest of
// the register file carries the loaded operands).
#if defined(__AVX512F__)
constexpr int kAcc = 24, kMR = 12, kDO = 4, kDI = 6;
#elif defined(__AVX2__)
constexpr int kAcc = 12, kMR = 6, kDO = 3, kDI = 4;
#else
constexpr int kAcc = 12, kMR = 3, kDO = 3, kDI = 4;
#endif
// Whether a layer's weight gradient (in inputs, padded batch Bp) takes the register tiles
// accumulated across the batch (gw_product, on a batch-major copy of the layer's input) rather
// than the lane-parallel dot tiles (dot_product). A shape rule, so the result never depends on
// the thread count; both trainers' small paths and the partitions' one-pass step ask it. Up to
// 64 samples on every ISA (see small_step_impl). On AVX-512 also up to 256 samples for a layer of
// 32 inputs or more (a 12 x 32 tile fills its lanes): measured on a 2-core AMD EPYC Zen 5
// (2026-12-02, 1 thread, min of 6 whole epochs, 2 interleaved runs, us a step, 64 -> this rule),
// ReLU/MSE/SGD 20-w-w-1: w48 b256 38.8 -> 32.9, w64 b256 66.6 -> 57.7, w96 b128 61.1 -> 49.4,
// w128 b128 97.9 -> 85.0, w128 b256 176.9 -> 184.5, the rest of w16..256 x b128..512 0-10%
// faster; Tanh/Adam: w32 b256 35.9 -> 30.4, w64 b256 79.5 -> 70.9. The dot tiles' short
// reductions (8 vectors a lane sum at 128 samples) were the cost there; on AVX2 (6 x 16 tiles,
// half the lanes a broadcast feeds) the same rule was 0.92-1.10x, so it keeps 64.
#if defined(__AVX512F__)
constexpr int64_t kRegGwMaxBatch = 256, kRegGwMinIn = 32;
#else
constexpr int64_t kRegGwMaxBatch = 64, kRegGwMinIn = 0;
#endif
inline bool reg_gw_fits(int64_t in, int64_t Bp) {
    return Bp <= 64 || (Bp <= kRegGwMaxBatch && in >= kRegGwMinIn);
}
using namespace simd_vf;  // vf, kVW, ldv/stv/bcv/fmav, bcast_fma_tile, transpose16x16, transpose
constexpr int kNV = int(kLanes) / kVW;

// Four register sums in a fixed tree order, out[j] = sum of the lanes of v[j].
#if defined(__AVX2__)
inline __m128 reduce4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}
#endif
inline void reduce4(float* out, int n, vf a, vf b, vf c, vf d) {
    float r[4];
#if defined(__AVX512F__)
    auto half = [](vf v) {
        const __m512 x = (__m512)v;
        return _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
    };
    _mm_storeu_ps(r, reduce4_256(half(a), half(b), half(c), half(d)));
#elif defined(__AVX2__)
    _mm_storeu_ps(r, reduce4_256((__m256)a, (__m256)b, (__m256)c, (__m256)d));
#else
    const vf v[4] = {a, b, c, d};
    for (int j = 0; j < 4; ++j) r[j] = (v[j][0] + v[j][2]) + (v[j][1] + v[j][3]);
#endif
    for (int j = 0; j < n; ++j) out[j] = r[j];
}

// ---- Register-tiled products on feature-major operands (no packing: the operands are tiny and
// already in the layout the tile reads). Two shapes cover the three products of a step:
//
// bcast: C (R, Bp) = A (R, K) @ Bm (K, Bp), A read by broadcast with row stride ars and k stride
//   aks (so A or A^T of a row-major weight), Bm rows of the batch. A tile is MR rows x NB column
//   blocks held in registers for the whole K loop; then + bias, ReLU, or a ReLU-gradient mask.
//   Forward Z = W @ A (ars = in, aks = 1); input gradient dA = W^T @ dZ (ars = 1, aks = in).
// dot: G (O, I) = D (O, Bp) @ X (I, Bp)^T, both read along the batch: a tile of MO x MI register
//   accumulators, kVW partial lanes each, reduced in a fixed order at the end. Weight gradient.
//
// Every output element's arithmetic is fixed by the shapes alone (the tiling never depends on the
// thread count or the data), so results are reproducible run to run.
struct BcastEpi {
    const float* bias = nullptr;  // (R) added after the product
    bool relu = false;            // max(v, 0), NaN kept
    const float* mask = nullptr;  // (R, ldm): v where mask > 0 else 0 (NaN mask gives 0)
    int64_t ldm = 0;
    // (R, ldm): v * (1 - y * y), the tanh backward of activation.h from its output y (the same
    // float operations as act_backward's, so the same bits)
    const float* tanh_y = nullptr;
};

template <int MR, int NB>
inline void bcast_tile(float* __restrict c, int64_t ldc, const float* __restrict a, int64_t ars,
                       int64_t aks, const float* __restrict b, int64_t ldb, int64_t K,
                       const BcastEpi& e, int64_t r0, int64_t c0) {
    constexpr int NC = NB * kNV;
    vf acc[MR][NC];
    for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NC; ++j) acc[r][j] = vf{};
    simd_vf::bcast_fma_tile<MR, NC>(acc, a + r0 * ars, ars, aks, b + c0, ldb, K);
    const vf zero = {};
    for (int r = 0; r < MR; ++r) {
        float* cr = c + (r0 + r) * ldc + c0;
        const vf bias = e.bias ? bcv(e.bias[r0 + r]) : zero;
        for (int j = 0; j < NC; ++j) {
            vf v = acc[r][j];
            if (e.bias) v = v + bias;
            if (e.relu) v = v < zero ? zero : v;
            if (e.mask) v = ldv(e.mask + (r0 + r) * e.ldm + c0 + j * kVW) > zero ? v : zero;
            if (e.tanh_y) {
                const vf y = ldv(e.tanh_y + (r0 + r) * e.ldm + c0 + j * kVW);
                v = v * (bcv(1.0f) - y * y);
            }
            stv(cr + j * kVW, v);
        }
    }
}

// The column blocks [c0, c1) of the rows [r0, r0 + MR): NB blocks at a time while they fill the
// registers.
template <int MR>
inline void bcast_rows(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks,
                       const float* b, int64_t ldb, int64_t K, int64_t c0, int64_t c1,
                       const BcastEpi& e, int64_t r0) {
    constexpr int NBfit = kAcc / (MR * kNV);
    constexpr int NB = NBfit < 1 ? 1 : NBfit > 4 ? 4 : NBfit;
    if constexpr (NB > 1)
        for (; c0 + NB * kLanes <= c1; c0 += NB * kLanes)
            bcast_tile<MR, NB>(c, ldc, a, ars, aks, b, ldb, K, e, r0, c0);
    for (; c0 < c1; c0 += kLanes) bcast_tile<MR, 1>(c, ldc, a, ars, aks, b, ldb, K, e, r0, c0);
}

template <int MR>
inline void bcast_rest(int64_t rows, float* c, int64_t ldc, const float* a, int64_t ars,
                       int64_t aks, const float* b, int64_t ldb, int64_t K, int64_t c0,
                       int64_t c1, const BcastEpi& e, int64_t r0) {
    if constexpr (MR >= 1) {
        if (rows == MR) return bcast_rows<MR>(c, ldc, a, ars, aks, b, ldb, K, c0, c1, e, r0);
        bcast_rest<MR - 1>(rows, c, ldc, a, ars, aks, b, ldb, K, c0, c1, e, r0);
    }
}

// C (R, Bp) = A (R, K) @ Bm (K, Bp) + epilogue; C rows ldc apart, Bm rows ldb apart. Tiles go
// column group (64 samples) by column group, all row blocks of one group in turn, so the group's
// K x 64 panel of Bm stays in cache while A streams; threads take contiguous runs of tiles.
template <bool Wait = true>
inline void bcast_product(float* c, int64_t ldc, const float* a, int64_t ars, int64_t aks,
                          const float* b, int64_t ldb, int64_t R, int64_t K, int64_t Bp,
                          const BcastEpi& e) {
    constexpr int64_t kGroup = 4 * kLanes;
    // A work item is one row block x one register tile's columns (kSub columns) of a group, so
    // that a team splits even a one-group product evenly (64 rows x 64 samples: 11 x 4 items,
    // 22 per thread of two, where whole row blocks went 6 / 5). Which item a tile belongs to never
    // changes its arithmetic.
    constexpr int NBfit = kAcc / (kMR * kNV);
    constexpr int64_t kSub = (NBfit < 1 ? 1 : NBfit > 4 ? 4 : NBfit) * kLanes;
    const int64_t nrb = (R + kMR - 1) / kMR, ncg = (Bp + kGroup - 1) / kGroup;
    const int64_t nsub = kGroup / kSub, per_group = nrb * nsub;
    auto run = [&](int64_t t) {
        const int64_t g = t / per_group, rb = (t % per_group) / nsub, sub = t % nsub;
        const int64_t r0 = rb * kMR, c0 = g * kGroup + sub * kSub;
        if (c0 >= Bp) return;
        const int64_t rows = R - r0 < kMR ? R - r0 : kMR, c1 = c0 + kSub < Bp ? c0 + kSub : Bp;
        if (rows == kMR) bcast_rows<kMR>(c, ldc, a, ars, aks, b, ldb, K, c0, c1, e, r0);
        else bcast_rest<kMR - 1>(rows, c, ldc, a, ars, aks, b, ldb, K, c0, c1, e, r0);
    };
    for_each_tile<Wait>(ncg * per_group, 2.0 * double(R) * double(K) * double(Bp), run);
}

template <int MO, int MI>
inline void dot_tile(float* __restrict g, int64_t ldg, const float* __restrict d,
                     const float* __restrict x, int64_t ld, int64_t Bp, int64_t o0, int64_t i0) {
    vf acc[MO][MI];
    for (int o = 0; o < MO; ++o)
        for (int i = 0; i < MI; ++i) acc[o][i] = vf{};
    const float* dp = d + o0 * ld;
    const float* xp = x + i0 * ld;
    for (int64_t b = 0; b < Bp; b += kVW) {
        vf xv[MI];
        for (int i = 0; i < MI; ++i) xv[i] = ldv(xp + i * ld + b);
        for (int o = 0; o < MO; ++o) {
            const vf dv = ldv(dp + o * ld + b);
            for (int i = 0; i < MI; ++i) acc[o][i] = fmav(dv, xv[i], acc[o][i]);
        }
    }
    const vf zero = {};
    for (int o = 0; o < MO; ++o)
        for (int i = 0; i < MI; i += 4)
            reduce4(g + (o0 + o) * ldg + i0 + i, MI - i < 4 ? MI - i : 4, acc[o][i],
                    i + 1 < MI ? acc[o][i + 1] : zero, i + 2 < MI ? acc[o][i + 2] : zero,
                    i + 3 < MI ? acc[o][i + 3] : zero);
}

template <int MO, int MI>
inline void dot_rest_i(int64_t rest, float* g, int64_t ldg, const float* d, const float* x,
                       int64_t ld, int64_t Bp, int64_t o0, int64_t i0) {
    if constexpr (MI >= 1) {
        if (rest == MI) return dot_tile<MO, MI>(g, ldg, d, x, ld, Bp, o0, i0);
        dot_rest_i<MO, MI - 1>(rest, g, ldg, d, x, ld, Bp, o0, i0);
    }
}

// The rows [o0, o0 + MO) of G, every column block. A single row (the output layer of a
// regression net) takes wider tiles along I, as many as the registers hold.
template <int MO>
inline void dot_rows(float* g, int64_t ldg, const float* d, const float* x, int64_t ld, int64_t I,
                     int64_t Bp, int64_t o0) {
    constexpr int MIfit = kAcc / MO;
    constexpr int MI = MIfit > 8 ? 8 : MIfit < kDI ? kDI : MIfit;
    int64_t i0 = 0;
    for (; i0 + MI <= I; i0 += MI) dot_tile<MO, MI>(g, ldg, d, x, ld, Bp, o0, i0);
    if (i0 < I) dot_rest_i<MO, MI - 1>(I - i0, g, ldg, d, x, ld, Bp, o0, i0);
}

template <int MO>
inline void dot_rest_o(int64_t rest, float* g, int64_t ldg, const float* d, const float* x,
                       int64_t ld, int64_t I, int64_t Bp, int64_t o0) {
    if constexpr (MO >= 1) {
        if (rest == MO) return dot_rows<MO>(g, ldg, d, x, ld, I, Bp, o0);
        dot_rest_o<MO - 1>(rest, g, ldg, d, x, ld, I, Bp, o0);
    }
}

// G (O, I) (row stride ldg) = D (O, Bp) @ X (I, Bp)^T, D and X rows ld apart. Threads take
// blocks of kDO rows.
template <bool Wait = true>
inline void dot_product(float* g, int64_t ldg, const float* d, const float* x, int64_t ld,
                        int64_t O, int64_t I, int64_t Bp) {
    const int64_t nob = (O + kDO - 1) / kDO;
    auto run = [&](int64_t t) {
        const int64_t o0 = t * kDO;
        if (o0 + kDO <= O) dot_rows<kDO>(g, ldg, d, x, ld, I, Bp, o0);
        else dot_rest_o<kDO - 1>(O - o0, g, ldg, d, x, ld, I, Bp, o0);
    };
    for_each_tile<Wait>(nob, 2.0 * double(O) * double(I) * double(Bp), run);
}

// ---- The weight gradient on a batch-major operand, accumulated in registers over the batch.
//
// G (O, I) = D (O, ld) @ At (B, lda) where D is dLoss/dZ feature-major and At the layer's input
// batch-major: a tile of MR rows x NC vectors of G stays in registers for the whole batch, each
// sample broadcasting MR elements of D against NC vectors of its input row (no horizontal sums:
// batch 16 runs as fast per flop as batch 1024). Every element is the plain sum over b = 0..B-1
// in order, fixed by the shapes. The tile's epilogue either stores G (a gradient buffer) or runs
// the optimizer update on the weights directly (update_param's arithmetic, lane by lane), so the
// gradient never goes through memory.
struct GwOut {
    float* g = nullptr;          // store: G here (row stride I), or
    float* w = nullptr;          // update: the weights (out, in) and their buffer
    float* buf = nullptr;
    const StepRule* rule = nullptr;
    bool first_step = false;
    float l2 = 0.0f;
};

// One vector of update_param: the same operations in the same order, kVW lanes at a time.
inline void update_vec(float* p, vf grad, float* bufp, const StepRule& r, bool first_step, float l2) {
    const float lr = r.lr, m = r.momentum;
    vf pv = ldv(p), g = grad;
    if (r.mode == MlpMode::torch) {
        const float wd = r.weight_decay, damp1 = 1.0f - r.dampening;
        if (wd != 0.0f) g = g + bcv(wd) * pv;
        if (m != 0.0f) {
            const vf b = first_step ? g : bcv(m) * ldv(bufp) + bcv(damp1) * g;
            stv(bufp, b);
            g = r.nesterov ? g + bcv(m) * b : b;
        }
        stv(p, pv - bcv(lr) * g);
        return;
    }
    if (l2 != 0.0f) g = g + bcv(l2) * pv;
    if (m == 0.0f) {
        stv(p, pv + -(bcv(lr) * g));
        return;
    }
    const vf v = bcv(m) * ldv(bufp) - bcv(lr) * g;
    stv(bufp, v);
    stv(p, pv + (r.nesterov ? bcv(m) * v - bcv(lr) * g : v));
}

template <int MR, int NC>
inline void gw_tile(const float* __restrict d, int64_t ldd, const float* __restrict at,
                    int64_t lda, int64_t B, int64_t I, int64_t o0, int64_t i0, const GwOut& out) {
    vf acc[MR][NC];
    for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NC; ++j) acc[r][j] = vf{};
    // G[o][i] = sum over b of D[o][b] * At[b][i]: D broadcast (rows ldd apart), At rows loaded
    simd_vf::bcast_fma_tile<MR, NC>(acc, d + o0 * ldd, ldd, 1, at + i0, lda, B);
    const int64_t last = I - i0 - (NC - 1) * kVW;  // valid lanes of the last vector, 1..kVW+
    for (int r = 0; r < MR; ++r) {
        const int64_t off = (o0 + r) * I + i0;
        for (int j = 0; j < NC; ++j) {
            const int64_t o = off + j * kVW;
            if (j < NC - 1 || last >= kVW) {
                if (out.w) update_vec(out.w + o, acc[r][j], out.buf ? out.buf + o : nullptr,
                                      *out.rule, out.first_step, out.l2);
                else stv(out.g + o, acc[r][j]);
            } else {
                float tmp[kVW];
                stv(tmp, acc[r][j]);
                if (out.w) update_param(out.w + o, tmp, out.buf ? out.buf + o : nullptr, last,
                                        *out.rule, out.first_step, out.l2);
                else for (int64_t k = 0; k < last; ++k) out.g[o + k] = tmp[k];
            }
        }
    }
}

template <int MR, int NC>
inline void gw_tail(int64_t nc, const float* d, int64_t ldd, const float* at, int64_t lda,
                    int64_t B, int64_t I, int64_t o0, int64_t i0, const GwOut& out) {
    if constexpr (NC >= 1) {
        if (nc == NC) return gw_tile<MR, NC>(d, ldd, at, lda, B, I, o0, i0, out);
        gw_tail<MR, NC - 1>(nc, d, ldd, at, lda, B, I, o0, i0, out);
    }
}

// The rows [o0, o0 + MR) of G, every column: NC vectors a tile, as many as the registers hold
// (a one-row tile, the output layer of a regression net, goes wide along I).
template <int MR>
inline void gw_rows(const float* d, int64_t ldd, const float* at, int64_t lda, int64_t B,
                    int64_t I, int64_t o0, const GwOut& out) {
    constexpr int NCfit = kAcc / MR;
    constexpr int NC = NCfit > 8 ? 8 : NCfit;
    int64_t i0 = 0;
    for (; i0 + NC * kVW <= I; i0 += NC * kVW) gw_tile<MR, NC>(d, ldd, at, lda, B, I, o0, i0, out);
    if (i0 < I) gw_tail<MR, NC>((I - i0 + kVW - 1) / kVW, d, ldd, at, lda, B, I, o0, i0, out);
}

template <int MR>
inline void gw_rest(int64_t rows, const float* d, int64_t ldd, const float* at, int64_t lda,
                    int64_t B, int64_t I, int64_t o0, const GwOut& out) {
    if constexpr (MR >= 1) {
        if (rows == MR) return gw_rows<MR>(d, ldd, at, lda, B, I, o0, out);
        gw_rest<MR - 1>(rows, d, ldd, at, lda, B, I, o0, out);
    }
}

// The columns [i0, i0 + NC kVW) of the rows [o0, o0 + MR) (fewer vectors at the end of a row).
template <int MR, int NC>
inline void gw_chunk(const float* d, int64_t ldd, const float* at, int64_t lda, int64_t B,
                     int64_t I, int64_t o0, int64_t i0, const GwOut& out) {
    if (i0 + NC * kVW <= I) return gw_tile<MR, NC>(d, ldd, at, lda, B, I, o0, i0, out);
    gw_tail<MR, NC>((I - i0 + kVW - 1) / kVW, d, ldd, at, lda, B, I, o0, i0, out);
}

template <int MR, int NC>
inline void gw_chunk_rest(int64_t rows, const float* d, int64_t ldd, const float* at, int64_t lda,
                          int64_t B, int64_t I, int64_t o0, int64_t i0, const GwOut& out) {
    if constexpr (MR >= 1) {
        if (rows == MR) return gw_chunk<MR, NC>(d, ldd, at, lda, B, I, o0, i0, out);
        gw_chunk_rest<MR - 1, NC>(rows, d, ldd, at, lda, B, I, o0, i0, out);
    }
}

// G (O, I) = D (O, ld) @ At (B, lda), stored or applied as an update (GwOut). lda >= I rounded
// up to kVW. A work item is a block of kMR rows x one tile's columns (disjoint parts of G and of
// the weights), so a team splits a 64 x 64 layer evenly (11 x 4 items); one row block (a narrow
// output layer) stays one item of tiles as wide as the registers allow. The tile shape never
// changes an element's arithmetic (the in-order sum over the batch).
template <bool Wait = true>
inline void gw_product(const float* d, int64_t ldd, const float* at, int64_t lda, int64_t O,
                       int64_t I, int64_t B, const GwOut& out) {
    const int64_t nob = (O + kMR - 1) / kMR;
    const double flops = 2.0 * double(O) * double(I) * double(B);
    if (nob == 1) {
        auto run = [&](int64_t) {
            if (O == kMR) gw_rows<kMR>(d, ldd, at, lda, B, I, 0, out);
            else gw_rest<kMR - 1>(O, d, ldd, at, lda, B, I, 0, out);
        };
        return for_each_tile<Wait>(1, flops, run);
    }
    constexpr int NCfit = kAcc / kMR;
    constexpr int NC = NCfit > 8 ? 8 : NCfit;
    constexpr int64_t kW = NC * kVW;
    const int64_t nic = (I + kW - 1) / kW;
    auto run = [&](int64_t t) {
        const int64_t o0 = (t / nic) * kMR, i0 = (t % nic) * kW;
        if (o0 + kMR <= O) gw_chunk<kMR, NC>(d, ldd, at, lda, B, I, o0, i0, out);
        else gw_chunk_rest<kMR - 1, NC>(O - o0, d, ldd, at, lda, B, I, o0, i0, out);
    };
    for_each_tile<Wait>(nob * nic, flops, run);
}

// sum over b < Bp of x[b]: kVW partial lanes, reduced in a fixed order.
inline float sum_lanes(const float* __restrict x, int64_t Bp) {
    vf acc = ldv(x);
    for (int64_t b = kVW; b < Bp; b += kVW) acc = acc + ldv(x + b);
    float r[1];
    reduce4(r, 1, acc, vf{}, vf{}, vf{});
    return r[0];
}

// The batch gather, transposed: dst (d, ld) feature-major gets rows src[idx[b]] (d wide) for
// b < B and zeros for b in [B, Bp).
inline void gather_rows_scalar(float* __restrict dst, int64_t ld, const float* src, int64_t d,
                               const int64_t* idx, int64_t B, int64_t Bp) {
    for (int64_t b = 0; b < B; ++b) {
        const float* row = src + idx[b] * d;
        for (int64_t i = 0; i < d; ++i) dst[i * ld + b] = row[i];
    }
    for (int64_t i = 0; i < d; ++i)
        for (int64_t b = B; b < Bp; ++b) dst[i * ld + b] = 0.0f;
}

#if defined(__AVX512F__)
// 16 rows at a time: masked row loads (never past a row's end), one transpose, vector stores.
inline void gather_rows(float* dst, int64_t ld, const float* src, int64_t d, const int64_t* idx,
                        int64_t B, int64_t Bp) {
    if (d < 4) return gather_rows_scalar(dst, ld, src, d, idx, B, Bp);
    for (int64_t c0 = 0; c0 < d; c0 += kLanes) {
        const int64_t cw = d - c0 < kLanes ? d - c0 : kLanes;
        const __mmask16 m = __mmask16((1u << cw) - 1u);
        for (int64_t b0 = 0; b0 < Bp; b0 += kLanes) {
            __m512 r[16];
            for (int64_t k = 0; k < kLanes; ++k)
                r[k] = b0 + k < B ? _mm512_maskz_loadu_ps(m, src + idx[b0 + k] * d + c0)
                                  : _mm512_setzero_ps();
            transpose16x16(r);
            for (int64_t j = 0; j < cw; ++j) _mm512_storeu_ps(dst + (c0 + j) * ld + b0, r[j]);
        }
    }
}
#else
inline void gather_rows(float* dst, int64_t ld, const float* src, int64_t d, const int64_t* idx,
                        int64_t B, int64_t Bp) {
    gather_rows_scalar(dst, ld, src, d, idx, B, Bp);
}
#endif

// Forward: act[l + 1] (out, Bp) = W (out, in) @ act[l] (in, Bp) (i in order), + bias, relu.
inline void forward_layers(const std::vector<MlpLayer>& layers, SmallScratch& s, int64_t Bp) {
    for (size_t l = 0; l < layers.size(); ++l) {
        const MlpLayer& ly = layers[l];
        BcastEpi e;
        e.bias = ly.bias;
        e.relu = ly.relu;
        bcast_product(s.act[l + 1], s.ld, ly.weight, ly.in, 1, s.act[l], s.ld, ly.out, ly.in, Bp, e);
    }
}

[[maybe_unused]] void small_forward_impl(float* out, const std::vector<MlpLayer>& layers,
                                         const float* X, int64_t n) {
    constexpr int64_t kChunk = 256;
    thread_local SmallScratch s;
    thread_local std::vector<int64_t> shape, idx;  // the net the scratch was sized for
    std::vector<int64_t> want;
    want.reserve(2 * layers.size());
    for (const MlpLayer& l : layers) {
        want.push_back(l.in);
        want.push_back(l.out);
    }
    if (want != shape) {
        s.init(layers, kChunk);
        shape = want;
        idx.resize(size_t(kChunk));
        for (int64_t i = 0; i < kChunk; ++i) idx[size_t(i)] = i;
    }
    const int64_t L = int64_t(layers.size());
    const int64_t d_in = layers[0].in, d_out = layers[size_t(L - 1)].out;
    for (int64_t r0 = 0; r0 < n; r0 += kChunk) {
        const int64_t rows = n - r0 < kChunk ? n - r0 : kChunk;
        const int64_t Bp = (rows + kLanes - 1) / kLanes * kLanes;
        gather_rows(s.act[0], s.ld, X + r0 * d_in, d_in, idx.data(), rows, Bp);
        forward_layers(layers, s, Bp);
        const float* P = s.act[size_t(L)];
        float* o = out + r0 * d_out;
        for (int64_t b = 0; b < rows; ++b)
            for (int64_t j = 0; j < d_out; ++j) o[b * d_out + j] = P[j * s.ld + b];
    }
}

// The squared errors of the columns [0, B) of P against yT (rows ld apart): in double, 8 partial
// sums by column index mod 8, combined in a fixed order (small_step_impl's loss, and each
// partition's share in small_parts_step_impl).
inline double sq_errors(const float* P, const float* yT, int64_t ld, int64_t d_out, int64_t B) {
    double part[8] = {0.0};
    for (int64_t o = 0; o < d_out; ++o) {
        const float* po = P + o * ld;
        const float* yo = yT + o * ld;
        int64_t b = 0;
        for (; b + 8 <= B; b += 8)
            for (int64_t k = 0; k < 8; ++k) {
                const double d = double(po[b + k]) - double(yo[b + k]);
                part[k] += d * d;
            }
        for (; b < B; ++b) {
            const double d = double(po[b]) - double(yo[b]);
            part[b & 7] += d * d;
        }
    }
    return ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
}

// The output gradient dz (d_out rows ld apart) = scale * (P - yT) on the columns [0, B), pad
// columns [B, Bp) zero. A net that ends in ReLU: dLoss/dZ = dLoss/dP * (P > 0), as relu_backward
// (NaN gives 0).
inline void output_grad(float* dz, const float* P, const float* yT, int64_t ld, int64_t d_out,
                        int64_t B, int64_t Bp, float scale, bool last_relu) {
    for (int64_t o = 0; o < d_out; ++o) {
        const float* po = P + o * ld;
        const float* yo = yT + o * ld;
        float* d = dz + o * ld;
        for (int64_t b = 0; b < B; ++b) {
            const float g = scale * (po[b] - yo[b]);
            d[b] = last_relu && !(po[b] > 0.0f) ? 0.0f : g;
        }
        for (int64_t b = B; b < Bp; ++b) d[b] = 0.0f;
    }
}

// Layer l's input gradient (l > 0, read before its weights change): da (in, Bp) = W^T @ dz,
// masked by the ReLU of layer l - 1 (a: that ReLU's output, feature-major, ld apart). The
// whole-batch step and the partitions' one-pass step both run it over the whole padded batch.
inline void input_grad(float* da, const std::vector<MlpLayer>& layers, int64_t l, const float* a,
                       const float* dz, int64_t ld, int64_t Bp) {
    const MlpLayer& ly = layers[size_t(l)];
    BcastEpi e;
    if (layers[size_t(l - 1)].relu) {
        e.mask = a;
        e.ldm = ld;
    }
    bcast_product<false>(da, ld, ly.weight, 1, ly.in, dz, ld, ly.in, ly.out, Bp, e);
}

// One step (SmallStepFn). Inside a SmallTeam every thread of it calls this with the same
// arguments: products split over the team, the serial bits in team_single, every decision taken
// from shared values (s.stop, s.loss) after a barrier, so all threads agree.
[[maybe_unused]] double small_step_impl(const std::vector<MlpLayer>& layers, SmallScratch& s,
                                        const float* X, const float* Y, const int64_t* idx,
                                        int64_t B, const StepRule& rule, bool first_step,
                                        bool allow_nonfinite, GradSink* sink) {
    const int64_t L = int64_t(layers.size());
    const int64_t ld = s.ld;
    const int64_t Bp = (B + kLanes - 1) / kLanes * kLanes;  // loops run over Bp; pad is zero-fed
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out;

    // Gather the batch, transposed to (features, ld); pad columns are zero. In a team the thread
    // that gathers also polls the caller's should_stop (SmallScratch::poll) for the team.
    team_single([&] {
        s.stop = s.poll && s.poll(s.poll_ctx);
        if (s.stop) return;
        gather_rows(s.act[0], ld, X, d_in, idx, B, Bp);
        gather_rows(s.yT, ld, Y, d_out, idx, B, Bp);
    });
    // Each thread its own copy of the decision, read here, right after the barrier: once a
    // thread has left this step, another may already be polling for the next one in s.stop.
    t_small_stop = s.stop;
    if (t_small_stop) return 0.0;

    forward_layers(layers, s, Bp);

    // Loss (double, fixed order) and the output gradient (pad columns zero), on one thread.
    const float* P = s.act[size_t(L)];
    float* dz = s.d0;
    team_single([&] {
        const double sq = sq_errors(P, s.yT, ld, d_out, B);
        const double count = sink ? sink->count : double(B) * double(d_out);
        double loss;
        float scale;
        if (rule.mode == MlpMode::torch) {
            loss = sq / count;
            scale = float(2.0 / count);
        } else {
            loss = 0.5 * sq / count;
            if (rule.alpha != 0.0f) {
                loss += 0.5 * double(rule.alpha) * sum_sq_weights(layers) / double(B);
            }
            scale = float(1.0 / double(B));
        }
        s.loss = loss;
        if (!sink && !std::isfinite(loss) && !allow_nonfinite) return;
        output_grad(dz, P, s.yT, ld, d_out, B, Bp, scale, layers[size_t(L - 1)].relu);
    });
    const double loss = s.loss;
    if (!sink && !std::isfinite(loss) && !allow_nonfinite) return loss;

    // Backward, last layer first. dz (out, ld) is dLoss/dZ_l with pad columns zero. Per layer:
    //   1. the input gradient dA = W^T @ dZ (tiles over the team, no barrier) while one thread
    //      takes the bias gradient and update and the batch-major copy of A; a barrier;
    //   2. the weight gradient and update (tiles over the team; W changes only after 1).
    const float l2 = rule.mode == MlpMode::sklearn ? float(double(rule.alpha) / double(B)) : 0.0f;
    float* sink_end = sink ? sink->buf + mlp_grad_buffer_size(layers) - 1 : nullptr;
    for (int64_t l = L - 1; l >= 0; --l) {
        const MlpLayer& ly = layers[size_t(l)];
        const float* a = s.act[size_t(l)];
        // This layer's sink slot: weight (out, in), then bias (out).
        float* gb_slot = sink && ly.bias ? sink_end - ly.out : nullptr;
        float* g_slot = sink ? sink_end - (ly.bias ? ly.out : 0) - ly.in * ly.out : nullptr;
        if (sink) sink_end = g_slot;
        // Weight gradient (out, in) = dz @ a^T over the batch, into the sink's slot or the update.
        // Two kernels, chosen by the shapes (reg_gw_fits, so the result never depends on
        // anything else): up to 64 samples (on AVX-512 up to 256 where in >= 32), tiles
        // accumulated in registers across the batch from a batch-major copy of a, the update
        // applied in the tile's epilogue (no horizontal sums, the gradient never goes through
        // memory); beyond, the lane-parallel dot tiles, which stream both operands in order and
        // pay one reduction per Bp / kVW FMAs. Measured (CPU time, 1 thread, AVX2 Zen 3 shared
        // with other jobs, 20-w-w-1 nets, whole step): the register tiles +8..25% at batch 16
        // (w 16..256), +3..20% at 64 (w 32..256; noisy), about -10% at 1024, where the dot
        // tiles' in-order streams win (AVX-512: reg_gw_fits).
        const bool want_gw = sink || !ly.frozen_weight;
        const bool reg_gw = want_gw && reg_gw_fits(ly.in, Bp);
        const int64_t lda = (ly.in + kVW - 1) / kVW * kVW;
        // Input gradient (before W changes): da (in, Bp) = W^T @ dz, masked by the ReLU below.
        float* da = dz == s.d0 ? s.d1 : s.d0;
        if (l > 0) input_grad(da, layers, l, a, dz, ld, Bp);
        team_single([&] {
            // Bias gradient gb (out), then its update (the bias is not read again in this step).
            if (ly.bias)
                for (int64_t o = 0; o < ly.out; ++o) s.gb[o] = sum_lanes(dz + o * ld, Bp);
            if (gb_slot) std::copy(s.gb, s.gb + ly.out, gb_slot);
            else if (!sink && ly.bias && !ly.frozen_bias)
                update_param(ly.bias, s.gb, ly.bias_buf, ly.out, rule, first_step, 0.0f);
            // the feature-major activations, batch-major for the weight gradient (lanes [in, lda)
            // of s.at untouched)
            if (reg_gw) simd_vf::transpose(s.at, lda, a, ld, ly.in, Bp);
        });
        if (reg_gw) {
            GwOut out;
            if (sink) {
                out.g = g_slot;
            } else {
                out.w = ly.weight;
                out.buf = ly.weight_buf;
                out.rule = &rule;
                out.first_step = first_step;
                out.l2 = l2;
            }
            gw_product(dz, ld, s.at, lda, ly.out, ly.in, B, out);
        } else if (want_gw) {
            float* g = sink ? g_slot : s.gw;
            dot_product(g, ly.in, dz, a, ld, ly.out, ly.in, Bp);
            if (!sink) {  // the update, each thread its share of the elements
                int64_t lo, hi;
                team_share(ly.in * ly.out, lo, hi);
                update_param(ly.weight + lo, s.gw + lo, ly.weight_buf ? ly.weight_buf + lo : nullptr,
                             hi - lo, rule, first_step, l2);
                // (no barrier: the next layer's stage 1, or the next step's gather, has one
                // before s.gw or the weights are touched again)
            }
        }
        dz = da;
    }
    return loss;
}

// SmallPartsStepFn. Outside a team (one thread). Each partition's reductions repeat, on its
// columns [lo, lo + Bh) of the whole batch's buffers, what small_step_impl does with a sink on
// that partition alone (pad columns [Bh, Bph) of partition 1 are the batch's pad [B, Bp): zero
// in dz and da, the same forward of zero inputs in the activations).
[[maybe_unused]] void small_parts_step_impl(const std::vector<MlpLayer>& layers, SmallScratch& s,
                                            const float* X, const float* Y, const int64_t* idx,
                                            int64_t B, float* const* buf, double count,
                                            double* loss_out) {
    assert(!in_small_team());
    const int64_t L = int64_t(layers.size());
    const int64_t ld = s.ld;
    const int64_t Bp = (B + kLanes - 1) / kLanes * kLanes;
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out;
    int64_t plo[2], phi[2];
    for (int64_t h = 0; h < 2; ++h) small_part_rows(B, h, 2, plo[h], phi[h]);
    const int64_t nparts = phi[1] > plo[1] ? 2 : 1;
    loss_out[0] = loss_out[1] = 0.0;

    gather_rows(s.act[0], ld, X, d_in, idx, B, Bp);
    gather_rows(s.yT, ld, Y, d_out, idx, B, Bp);
    forward_layers(layers, s, Bp);

    const float* P = s.act[size_t(L)];
    float* dz = s.d0;
    for (int64_t h = 0; h < nparts; ++h)
        loss_out[h] = sq_errors(P + plo[h], s.yT + plo[h], ld, d_out, phi[h] - plo[h]) / count;
    output_grad(dz, P, s.yT, ld, d_out, B, Bp, float(2.0 / count), layers[size_t(L - 1)].relu);

    float* sink_end[2] = {nullptr, nullptr};
    for (int64_t h = 0; h < nparts; ++h) sink_end[h] = buf[h] + mlp_grad_buffer_size(layers) - 1;
    for (int64_t l = L - 1; l >= 0; --l) {
        const MlpLayer& ly = layers[size_t(l)];
        const float* a = s.act[size_t(l)];
        const int64_t lda = (ly.in + kVW - 1) / kVW * kVW;
        float* da = dz == s.d0 ? s.d1 : s.d0;
        if (l > 0) input_grad(da, layers, l, a, dz, ld, Bp);
        for (int64_t h = 0; h < nparts; ++h) {
            const int64_t lo = plo[h], Bh = phi[h] - plo[h];
            const int64_t Bph = (Bh + kLanes - 1) / kLanes * kLanes;
            float* gb_slot = ly.bias ? sink_end[h] - ly.out : nullptr;
            float* g_slot = sink_end[h] - (ly.bias ? ly.out : 0) - ly.in * ly.out;
            sink_end[h] = g_slot;
            if (gb_slot)
                for (int64_t o = 0; o < ly.out; ++o) gb_slot[o] = sum_lanes(dz + o * ld + lo, Bph);
            if (reg_gw_fits(ly.in, Bph)) {
                simd_vf::transpose(s.at, lda, a + lo, ld, ly.in, Bph);
                GwOut out;
                out.g = g_slot;
                gw_product(dz + lo, ld, s.at, lda, ly.out, ly.in, Bh, out);
            } else {
                dot_product(g_slot, ly.in, dz + lo, a + lo, ld, ly.out, ly.in, Bph);
            }
        }
        dz = da;
    }
}

}  // namespace
}  // namespace fastmlp::detail
