// The fused MLP trainer (mlp.h): epochs, shuffling, batching and the step, all in C++.
// Two step implementations with the same math:
//   - the small-matrix path (mlp_train_small.h): feature-major register tiles, per-ISA loops,
//     each epoch on one OpenMP team whose threads split every product's tiles, for nets up to
//     512 x 512 weights (mlp_small_path_fits);
//   - the gemm path: batch-major activations, fastmlp::sgemm with bias+ReLU epilogues for the
//     three products, the elementwise kernels for the rest, and (plain SGD) the weight update
//     folded into the weight-gradient product: W = -lr * dZ^T A + 1 * W.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <omp.h>

#include "fastmlp/cpu_features.h"
#include "fastmlp/elementwise.h"
#include "fastmlp/gemm.h"
#include "fastmlp/mlp.h"
#include "mlp_train_small.h"

namespace fastmlp {

namespace detail {

thread_local int t_small_team = 0;
thread_local bool t_small_stop = false;

void SmallScratch::init(const std::vector<MlpLayer>& layers, int64_t batch) {
    ld = (batch + kLanes - 1) / kLanes * kLanes;
    // A row stride of a multiple of 1 KiB maps the rows a tile walks to few L1 sets: skew it.
    if (ld % 256 == 0) ld += kLanes;
    int64_t maxw = layers[0].in, maxio = 0, total = 0;
    for (const MlpLayer& l : layers) {
        maxw = std::max(maxw, l.out);
        maxio = std::max(maxio, l.in * l.out);
    }
    total += layers[0].in * ld;
    for (const MlpLayer& l : layers) total += l.out * ld;
    int64_t maxin = 0;
    for (const MlpLayer& l : layers) maxin = std::max(maxin, l.in);
    const int64_t lda = (maxin + kLanes - 1) / kLanes * kLanes;
    total += layers.back().out * ld + 2 * maxw * ld + maxio + maxw + ld * lda;
    storage.assign(size_t(total), 0.0f);
    float* p = storage.data();
    act.assign(layers.size() + 1, nullptr);
    act[0] = p;
    p += layers[0].in * ld;
    for (size_t l = 0; l < layers.size(); ++l) {
        act[l + 1] = p;
        p += layers[l].out * ld;
    }
    yT = p;
    p += layers.back().out * ld;
    d0 = p;
    p += maxw * ld;
    d1 = p;
    p += maxw * ld;
    gw = p;
    p += maxio;
    gb = p;
    p += maxw;
    at = p;
}

namespace {

SmallStepFn small_step_for_isa() {
#ifdef FASTMLP_HAVE_X86_KERNELS
    switch (current_isa()) {
        case Isa::avx512: return small_step_avx512;
        case Isa::avx2: return small_step_avx2;
        default: break;
    }
#endif
    return small_step_generic;
}

SmallPartsStepFn small_parts_for_isa() {
#ifdef FASTMLP_HAVE_X86_KERNELS
    switch (current_isa()) {
        case Isa::avx512: return small_parts_step_avx512;
        case Isa::avx2: return small_parts_step_avx2;
        default: break;
    }
#endif
    return small_parts_step_generic;
}

SmallForwardFn small_forward_for_isa() {
#ifdef FASTMLP_HAVE_X86_KERNELS
    switch (current_isa()) {
        case Isa::avx512: return small_forward_avx512;
        case Isa::avx2: return small_forward_avx2;
        default: break;
    }
#endif
    return small_forward_generic;
}

// Scratch of the gemm path: batch-major activations.
struct GemmScratch {
    std::vector<ScratchVec> act;  // act[l] (batch, width_l)
    ScratchVec y, d0, d1, gw, gb, gb2;
    void init(const std::vector<MlpLayer>& layers, int64_t batch, bool need_gw) {
        act.assign(layers.size() + 1, {});
        act[0].assign(size_t(batch * layers[0].in), 0.0f);
        int64_t maxw = layers[0].in, maxio = 0;
        for (size_t l = 0; l < layers.size(); ++l) {
            act[l + 1].assign(size_t(batch * layers[l].out), 0.0f);
            maxw = std::max(maxw, layers[l].out);
            maxio = std::max(maxio, layers[l].in * layers[l].out);
        }
        y.assign(size_t(batch * layers.back().out), 0.0f);
        d0.assign(size_t(batch * maxw), 0.0f);
        d1.assign(size_t(batch * maxw), 0.0f);
        if (need_gw) gw.assign(size_t(maxio), 0.0f);
        gb.assign(size_t(maxw), 0.0f);
        gb2.assign(size_t(maxw), 0.0f);
    }
};

// d (B, C) = a > 0 ? d : 0 when mask (the ReLU gradient; NaN in a gives 0, as relu_backward),
// and colsum (C) = the column sums of the result in double, rows in order (when not null).
// Threads take disjoint column blocks, so the result does not depend on the thread count.
void relu_mask_colsum(float* d, const float* a, bool mask, float* colsum, int64_t B, int64_t C) {
    if (!mask && !colsum) return;
    constexpr int64_t kCols = 256;
    const int64_t nblocks = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) num_threads(threads_for(double(B) * double(C) * 4.0))
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t j0 = blk * kCols, w = std::min(kCols, C - j0);
        double acc[kCols];
        for (int64_t j = 0; j < w; ++j) acc[j] = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            float* __restrict dr = d + b * C + j0;
            const float* __restrict ar = a + b * C + j0;
            if (mask)
                for (int64_t j = 0; j < w; ++j) {
                    const float v = dr[j];  // loaded unconditionally: a select, not a branch
                    dr[j] = ar[j] > 0.0f ? v : 0.0f;
                }
            if (colsum)
                for (int64_t j = 0; j < w; ++j) acc[j] += double(dr[j]);
        }
        if (colsum)
            for (int64_t j = 0; j < w; ++j) colsum[j0 + j] = float(acc[j]);
    }
}

double gemm_step(const std::vector<MlpLayer>& layers, GemmScratch& s, const float* X,
                 const float* Y, const int64_t* idx, int64_t B, const StepRule& rule,
                 bool first_step, bool allow_nonfinite, GradSink* sink) {
    const int64_t L = int64_t(layers.size());
    const int64_t d_in = layers[0].in, d_out = layers[size_t(L - 1)].out;
    float* a0 = s.act[0].data();
    float* yb = s.y.data();
    for (int64_t b = 0; b < B; ++b) {
        std::memcpy(a0 + b * d_in, X + idx[b] * d_in, size_t(d_in) * sizeof(float));
        std::memcpy(yb + b * d_out, Y + idx[b] * d_out, size_t(d_out) * sizeof(float));
    }
    for (int64_t l = 0; l < L; ++l) {
        const MlpLayer& ly = layers[size_t(l)];
        GemmEpilogue epi;
        epi.bias = ly.bias;
        epi.relu = ly.relu;
        sgemm(false, true, B, ly.out, ly.in, 1.0f, s.act[size_t(l)].data(), ly.in, ly.weight, ly.in,
              0.0f, s.act[size_t(l + 1)].data(), ly.out, epi);
    }
    const float* P = s.act[size_t(L)].data();
    const int64_t count = B * d_out;
    double loss = mse_forward(P, yb, count);
    float scale;
    if (sink) {  // torch mode; this rank's share of the global batch's mean
        loss *= double(count) / sink->count;
        scale = float(2.0 / sink->count);
    } else if (rule.mode == MlpMode::torch) {
        scale = float(2.0 / double(count));
    } else {
        loss *= 0.5;
        if (rule.alpha != 0.0f) {
            loss += 0.5 * double(rule.alpha) * sum_sq_weights(layers) / double(B);
        }
        scale = float(1.0 / double(B));
    }
    if (!sink && !std::isfinite(loss) && !allow_nonfinite) return loss;
    float* dz = s.d0.data();
    mse_backward(dz, P, yb, count, scale);

    const bool fused_update = !sink &&
        rule.mode == MlpMode::torch && rule.momentum == 0.0f && rule.weight_decay == 0.0f;
    const float l2 = rule.mode == MlpMode::sklearn ? float(double(rule.alpha) / double(B)) : 0.0f;
    SgdOptions sgd;
    sgd.lr = rule.lr;
    sgd.momentum = rule.momentum;
    sgd.dampening = rule.dampening;
    sgd.weight_decay = rule.weight_decay;
    sgd.nesterov = rule.nesterov;
    // The last layer's ReLU mask (a net that ends in ReLU: dLoss/dZ = dLoss/dP * (P > 0)) and
    // bias gradient, in the same pass the loop below uses for the other layers.
    float* gb = s.gb.data();
    float* gb_next = s.gb2.data();
    relu_mask_colsum(dz, P, layers[size_t(L - 1)].relu, layers[size_t(L - 1)].bias ? gb : nullptr,
                     B, d_out);
    float* sink_end = sink ? sink->buf + mlp_grad_buffer_size(layers) - 1 : nullptr;
    for (int64_t l = L - 1; l >= 0; --l) {
        const MlpLayer& ly = layers[size_t(l)];
        const float* a = s.act[size_t(l)].data();
        float* da = dz == s.d0.data() ? s.d1.data() : s.d0.data();
        if (l > 0) {  // da (B, in) = dz (B, out) @ W (out, in), before W changes
            sgemm(false, false, B, ly.in, ly.out, 1.0f, dz, ly.out, ly.weight, ly.in, 0.0f, da,
                  ly.in);
            // One pass: ReLU mask of da and the bias gradient of layer l - 1 (its column sums).
            relu_mask_colsum(da, a, layers[size_t(l - 1)].relu,
                             layers[size_t(l - 1)].bias ? gb_next : nullptr, B, ly.in);
        }
        if (sink) {  // this layer's slot: weight (out, in), then bias (out); no update here
            if (ly.bias) {
                sink_end -= ly.out;
                std::memcpy(sink_end, gb, size_t(ly.out) * sizeof(float));
            }
            sink_end -= ly.in * ly.out;
            sgemm(true, false, ly.out, ly.in, B, 1.0f, dz, ly.out, a, ly.in, 0.0f, sink_end, ly.in);
        } else if (ly.frozen_weight) {
            // requires_grad=False: no weight gradient, no update
        } else if (fused_update) {
            // W = W - lr * (dz^T @ a): the same two roundings as computing the gradient first.
            sgemm(true, false, ly.out, ly.in, B, -rule.lr, dz, ly.out, a, ly.in, 1.0f, ly.weight,
                  ly.in);
        } else {
            sgemm(true, false, ly.out, ly.in, B, 1.0f, dz, ly.out, a, ly.in, 0.0f, s.gw.data(), ly.in);
            if (rule.mode == MlpMode::torch)
                sgd_step(ly.weight, s.gw.data(), ly.weight_buf, ly.in * ly.out, sgd, first_step);
            else
                update_param(ly.weight, s.gw.data(), ly.weight_buf, ly.in * ly.out, rule, first_step, l2);
        }
        if (ly.bias && !sink && !ly.frozen_bias)
            update_param(ly.bias, gb, ly.bias_buf, ly.out, rule, first_step, 0.0f);
        std::swap(gb, gb_next);
        dz = da;
    }
    return loss;
}

// The data-parallel update: every parameter from its slot of the summed gradient buffer, as the
// gemm path's unfused update (torch.optim.SGD).
void apply_grad_buffer(const std::vector<MlpLayer>& layers, const float* buf, const StepRule& rule,
                       bool first_step) {
    SgdOptions sgd;
    sgd.lr = rule.lr;
    sgd.momentum = rule.momentum;
    sgd.dampening = rule.dampening;
    sgd.weight_decay = rule.weight_decay;
    sgd.nesterov = rule.nesterov;
    for (const MlpLayer& ly : layers) {
        if (!ly.frozen_weight) sgd_step(ly.weight, buf, ly.weight_buf, ly.in * ly.out, sgd, first_step);
        buf += ly.in * ly.out;
        if (ly.bias) {
            if (!ly.frozen_bias) update_param(ly.bias, buf, ly.bias_buf, ly.out, rule, first_step, 0.0f);
            buf += ly.out;
        }
    }
}

// One data-parallel step on global batch rows ord[0..nb): this rank's rows, the all-reduce, the
// update. Returns the global batch loss (the same on every rank).
double distributed_step(const std::vector<MlpLayer>& layers, bool small, SmallStepFn small_step,
                        SmallScratch& ss, GemmScratch& gs, const float* X, const float* Y,
                        const int64_t* ord, int64_t nb, const StepRule& rule, bool first,
                        const MlpTrainOptions& opt) {
    const int64_t size = mlp_grad_buffer_size(layers);
    const int64_t lo = nb * opt.rank / opt.world, hi = nb * (opt.rank + 1) / opt.world;
    GradSink sink;
    sink.buf = opt.grad_buffer;
    sink.count = double(nb) * double(layers.back().out);
    double part = 0.0;
    if (hi > lo)
        part = small ? small_step(layers, ss, X, Y, ord + lo, hi - lo, rule, first, true, &sink)
                     : gemm_step(layers, gs, X, Y, ord + lo, hi - lo, rule, first, true, &sink);
    else  // fewer rows than ranks: this rank adds nothing
        std::fill(opt.grad_buffer, opt.grad_buffer + size - 1, 0.0f);
    opt.grad_buffer[size - 1] = float(part);
    opt.grad_allreduce(opt.grad_buffer, size, opt.grad_allreduce_ctx);
    const double loss = double(opt.grad_buffer[size - 1]);
    if (std::isfinite(loss) || opt.allow_nonfinite) apply_grad_buffer(layers, opt.grad_buffer, rule, first);
    return loss;
}

// ---- The small path's data-parallel partitions (ReLU trainer; the general trainer's twin is in
// mlp_fit.cpp). A batch of 32 rows or more whose step takes the team (kSmallTeamMinFlops) is cut
// in two fixed partitions (small_part_rows), by shape only, in torch mode, in one process (not
// with fit(distributed=True): its ranks already split the batch; not in sklearn mode, whose loss
// carries the L2 term). Each partition runs its own gather, forward, loss share and backward
// into its own gradient buffer (GradSink: normalised by the whole batch's rows x outputs); then
// g = g0 + g1, and every parameter is updated from g (torch.optim.SGD's rule, update_param). On
// a team of 2 each thread runs one partition's step alone (SmallTeamAlone: no barriers inside),
// one barrier, every thread sums and updates its share of the buffer (team_share), one barrier:
// 2 barriers a step instead of ~10 + 4 per layer. One thread runs the partitions one after the
// other and sums them in the same order: the bits do not depend on the thread count.
//
// Where (measured, 20-w-w-1 nets, 2-core AVX2 EPYC, quiet machine, wall clock, min of 3
// interleaved whole-epoch repeats, us a step, tile team -> partitions): 2 threads w16 b256 33 ->
// 23, b1024 117 -> 85; w32 b64 23 -> 18, b256 69 -> 54, b1024 256 -> 210; w64 b64 54 -> 47, b256
// 178 -> 162, b1024 645 -> 633; w128 b64 163 -> 157, b256 560 -> 552, b1024 2015 -> 2257; one
// thread pays the split sums and the separate update: w32 b64 27.5 -> 31, w64 b64 77 -> 85, w128
// b64 260 -> 278. So: up to 8192 weights in a layer (w <= 90 here), from the team's 250 kFLOP a
// step (below, at 100-230 kFLOP, 20-16-16-1 b32 / b64 at 2 threads: 7.3 -> 8.9 / 12.0 -> 12.3 us,
// the split and the two barriers cost what the second thread saves).
constexpr int64_t kParts = 2;
// On the AVX-512 path the products run about twice as fast a core while the tile team's ~10 + 4
// per layer barriers cost the same, so the halves pay up to 256 x 256 weights a layer there
// (2-core AMD EPYC Zen 5, 2026-12-02, a noisy VM, min of 3-6 whole epochs, 2-3 interleaved runs,
// us a step, tile team -> halves): 2 threads w96 b64 23.0 -> 15.7, b256 69.7 -> 54.4, b1024
// 275.6 -> 218.7; w128 b64 34.2 -> 25.7, b256 123.1 -> 97.2, b1024 407.7 -> 379.6; w256 b64
// 103.7 -> 87.0, b256 380.8 -> 354.9, b1024 1410 -> 1352 (in a busier phase 1.00-1.17x); w512
// mixed (b64 0.88x, b256 1.19x), so it stays on the tile team; one thread -3% to +10% a step (w96
// b64 26.1 -> 28.6, w256 b1024 2420 -> 2345).
constexpr int64_t kPartsMaxWeights = 8192;
constexpr int64_t kPartsMaxWeightsAvx512 = 256 * 256;
int64_t relu_parts(const std::vector<MlpLayer>& layers, bool small, bool dist, MlpMode mode,
                   int64_t batch_size, double step_flops) {
    int64_t max_w = 0;
    for (const MlpLayer& l : layers) max_w = std::max(max_w, l.in * l.out);
    int64_t max_parts_w = kPartsMaxWeights;
#ifdef FASTMLP_HAVE_X86_KERNELS
    if (current_isa() == Isa::avx512) max_parts_w = kPartsMaxWeightsAvx512;
#endif
    if (!small || dist || mode != MlpMode::torch || batch_size < 32 ||
        step_flops < kSmallTeamMinFlops || max_w > max_parts_w)
        return 1;
    return kParts;
}

struct PartState {
    SmallScratch ss[kParts];
    ScratchVec g[kParts];  // mlp_grad_buffer_size(layers) each (the loss slot unused)
    double loss[kParts] = {0.0, 0.0};
    bool stop = false;  // the caller's should_stop, polled by thread 0 before a step
    void init(const std::vector<MlpLayer>& layers, int64_t batch, bool scratch) {
        int64_t lo, hi;
        small_part_rows(batch, 0, kParts, lo, hi);  // partition 0 is the larger
        const int64_t size = mlp_grad_buffer_size(layers);
        for (int64_t h = 0; h < kParts; ++h) {
            if (scratch) ss[h].init(layers, hi - lo);
            g[h].assign(size_t(size), 0.0f);
        }
    }
};

// Partition h of the batch bidx[0..nb): its step alone into p.g[h], its loss share in p.loss[h].
void part_grad(const std::vector<MlpLayer>& layers, PartState& p, int64_t h, SmallStepFn step,
               const float* X, const float* Y, const int64_t* bidx, int64_t nb,
               const StepRule& rule, bool first) {
    SmallTeamAlone alone;
    int64_t lo, hi;
    small_part_rows(nb, h, kParts, lo, hi);
    p.loss[h] = 0.0;
    if (hi <= lo) return;  // (partition 1 of a batch of <= 16 rows: not added)
    GradSink sink;
    sink.buf = p.g[h].data();
    sink.count = double(nb) * double(layers.back().out);
    p.loss[h] = step(layers, p.ss[size_t(h)], X, Y, bidx + lo, hi - lo, rule, first, true, &sink);
}

// This thread's share of g = g0 (+ g1) and of the update (team_share: the same elements meet
// the same loops whatever the team size).
void part_update(const std::vector<MlpLayer>& layers, PartState& p, bool add1,
                 const StepRule& rule, bool first) {
    float* g = p.g[0].data();
    const float* g1 = p.g[1].data();
    int64_t lo, hi;
    team_share(int64_t(p.g[0].size()) - 1, lo, hi);
    int64_t off = 0;
    auto upd = [&](float* param, float* buf, int64_t n, bool frozen) {
        const int64_t a = std::max(lo, off), b = std::min(hi, off + n);
        if (b <= a) {
            off += n;
            return;
        }
        if (frozen) {  // (no update: g0 + g1 is not needed)
        } else if (add1) {
            update_param_sum(param + (a - off), g + a, g1 + a, buf ? buf + (a - off) : nullptr,
                             b - a, rule, first, 0.0f);
        } else {
            update_param(param + (a - off), g + a, buf ? buf + (a - off) : nullptr, b - a, rule,
                         first, 0.0f);
        }
        off += n;
    };
    for (const MlpLayer& ly : layers) {
        upd(ly.weight, ly.weight_buf, ly.in * ly.out, ly.frozen_weight);
        if (ly.bias) upd(ly.bias, ly.bias_buf, ly.out, ly.frozen_bias);
    }
}

// The partitions of one batch on one thread, in one pass (SmallPartsStepFn: the same bits as
// part_grad on each, in ss, the whole batch's scratch), then the update. Returns the batch loss
// (no update when it is not finite and !allow_nonfinite).
double parts_step(const std::vector<MlpLayer>& layers, PartState& p, SmallPartsStepFn step,
                  SmallScratch& ss, const float* X, const float* Y, const int64_t* bidx, int64_t nb,
                  const StepRule& rule, bool first, bool allow_nonfinite) {
    float* const buf[kParts] = {p.g[0].data(), p.g[1].data()};
    step(layers, ss, X, Y, bidx, nb, buf, double(nb) * double(layers.back().out), p.loss);
    const double loss = p.loss[0] + p.loss[1];
    if (!std::isfinite(loss) && !allow_nonfinite) return loss;
    int64_t lo1, hi1;
    small_part_rows(nb, 1, kParts, lo1, hi1);
    part_update(layers, p, hi1 > lo1, rule, first);
    return loss;
}

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [0, bound), unbiased (Lemire's multiply-and-reject).
uint64_t bounded(uint64_t& state, uint64_t bound) {
    unsigned __int128 m = (unsigned __int128)splitmix64(state) * bound;
    uint64_t low = uint64_t(m);
    if (low < bound) {
        const uint64_t threshold = (0 - bound) % bound;
        while (low < threshold) {
            m = (unsigned __int128)splitmix64(state) * bound;
            low = uint64_t(m);
        }
    }
    return uint64_t(m >> 64);
}

}  // namespace
}  // namespace detail

using namespace detail;

int64_t mlp_grad_buffer_size(const std::vector<MlpLayer>& layers) {
    int64_t n = 1;  // the loss
    for (const MlpLayer& l : layers) n += l.in * l.out + (l.bias ? l.out : 0);
    return n;
}

void mlp_shuffle_order(int64_t* order, int64_t n, uint64_t seed, int64_t epoch) {
    uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (uint64_t(epoch) + 1));
    splitmix64(state);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
        const int64_t j = int64_t(bounded(state, uint64_t(i) + 1));
        std::swap(order[i], order[j]);
    }
}

bool mlp_small_path_fits(const std::vector<MlpLayer>& layers, int64_t batch_size) {
    // A rule fitted to the measured grid (process CPU time, min of interleaved runs, 1 thread,
    // on the AVX2 Zen 3 dev machine shared with other jobs: 43.6 GFLOP/s FMA peak per core by
    // bench/fma_peak.c), whole fit epochs of 20-w-w-1 nets, GFLOP/s small / gemm:
    //   batch 16:   w 8..512: small 10-24, gemm 3-9 (packing and per-call costs dominate)
    //   batch 64:   w 32: 23.9 / 13.7;  w 128: 27.2 / 20.6;  w 256: 27.0 / 22.4;  w 512: 23.3 / 23.3;
    //               w 1024: 22.7 / 22.9
    //   batch 256:  w 64: 29.4 / 19.1;  w 256: 29.7 / 25.9;  w 512: 27.3 / 26.0;  w 1024: 19.6 / 26.3
    //   batch 1024: w 64: 27.3 / 18.1;  w 256: 29.6 / 25.3;  w 512: 26.7 / 26.2;  w 1024: 10.6 / 27.2
    //   generic ISA: the small path is faster everywhere (20 vs 13-16).
    // The small path's tiles read the weights in place: up to 512 x 512 they stay in L2 and it is
    // at least as fast as the gemm path at every batch; beyond, its tiles stream the weights from
    // L3 once per 64 samples and the gemm path's cache blocking wins (from batch 64 on). Taking
    // the faster path per point keeps achieved GFLOP/s from dropping as the width grows at a fixed
    // batch. The choice depends on the shapes only, never on the thread count or the ISA (both
    // paths split output tiles over threads): results stay bitwise equal across thread counts.
    int64_t max_params = 0;
    for (const MlpLayer& l : layers) max_params = std::max(max_params, l.in * l.out);
    return max_params <= 512 * 512 || batch_size < 64;
}

MlpTrainResult mlp_train(const std::vector<MlpLayer>& layers, const float* X, const float* Y,
                         int64_t n, int64_t epochs, const MlpTrainOptions& opt) {
    if (layers.empty()) throw std::invalid_argument("mlp_train: no layers");
    if (opt.batch_size < 1) throw std::invalid_argument("mlp_train: batch_size must be >= 1");
    MlpTrainResult res;
    const int64_t bs = opt.batch_size;                          // batch slicing, as DataLoader
    const int64_t B = std::min(bs, std::max<int64_t>(n, 1));    // the largest batch that occurs
    const bool small = opt.path == MlpPath::small ||
                       (opt.path == MlpPath::automatic && mlp_small_path_fits(layers, B));
    res.used_small_path = small;
    const bool dist = opt.grad_allreduce != nullptr;
    if (dist && (opt.mode != MlpMode::torch || !opt.grad_buffer || opt.world < 1 || opt.rank < 0 ||
                 opt.rank >= opt.world))
        throw std::invalid_argument("mlp_train: data-parallel training needs torch mode, a gradient "
                                    "buffer and 0 <= rank < world");

    StepRule rule;
    rule.mode = opt.mode;
    rule.lr = opt.lr;
    rule.momentum = opt.momentum;
    rule.dampening = opt.dampening;
    rule.weight_decay = opt.weight_decay;
    rule.alpha = opt.alpha;
    rule.nesterov = opt.nesterov;

    SmallScratch ss;
    GemmScratch gs;
    SmallStepFn small_step = nullptr;
    if (small) {
        small_step = small_step_for_isa();
    } else {
        gs.init(layers, B, !dist && !(opt.mode == MlpMode::torch && opt.momentum == 0.0f && opt.weight_decay == 0.0f));
    }

    // The small path's team (mlp_train_small.h): its size by the flops of a full step; the
    // data-parallel partitions by the shapes (relu_parts).
    int team = 1;
    int64_t parts = 1;
    PartState ps;
    if (small && !dist) {
        double step_flops = 0.0;
        for (const MlpLayer& l : layers) step_flops += 6.0 * double(l.in) * double(l.out) * double(B);
        parts = relu_parts(layers, small, dist, opt.mode, B, step_flops);
        team = small_team_threads(step_flops, parts > 1);
    }
    // (a team runs the partitions' steps in their own scratch; one thread runs them in one pass
    // over the whole batch's)
    SmallPartsStepFn parts_fn = nullptr;
    if (parts > 1) ps.init(layers, B, team > 1);
    if (small && (parts == 1 || team == 1)) ss.init(layers, B);
    if (parts > 1 && team == 1) parts_fn = small_parts_for_isa();

    // A non-finite loss at batch bi of epoch e: the result so far (no update for that batch).
    auto stop_nonfinite = [&](int64_t e, int64_t bi, double loss, double sum, int64_t used) {
        res.mark_nonfinite(e, bi, loss, sum, used, loss);
        return res;
    };

    // The end of an epoch run on a team (thread 0's tally, read after the region): true when the
    // run stops there (res is then the result).
    struct TeamEpoch {
        bool stopped = false, bad = false;
        int64_t bad_batch = 0, steps = 0;
        double bad_loss = 0.0;
    };
    auto end_team_epoch = [&](const TeamEpoch& te, int64_t e, double sum, int64_t used) {
        res.steps += te.steps;
        if (te.stopped) {
            res.interrupted = true;
            return true;
        }
        if (te.bad) {
            stop_nonfinite(e, te.bad_batch, te.bad_loss, sum, used);
            return true;
        }
        res.epoch_loss.push_back(used ? sum / double(used) : std::numeric_limits<double>::quiet_NaN());
        return false;
    };

    std::vector<int64_t, ScratchAllocator<int64_t>> order(static_cast<size_t>(n));
    bool first = opt.first_step;
    for (int64_t e = 0; e < epochs; ++e) {
        const int64_t* ord;
        if (opt.perm) {
            ord = opt.perm_per_epoch ? opt.perm + e * n : opt.perm;
        } else if (opt.shuffle) {
            mlp_shuffle_order(order.data(), n, opt.seed, opt.epoch_offset + e);
            ord = order.data();
        } else {
            std::iota(order.begin(), order.end(), int64_t(0));
            ord = order.data();
        }
        const int64_t nbatches = opt.drop_last ? n / bs : (n + bs - 1) / bs;
        double sum = 0.0;
        int64_t used = 0;
        if (team > 1 && parts > 1) {
            // The partitions on one team for the whole epoch: thread h < kParts runs partition
            // h's step alone, a barrier, every thread sums and updates its share, a barrier.
            // Thread 0 polls should_stop before a step (read by all after the first barrier:
            // the threads leave together, before that step's update); a non-finite loss is seen
            // by all after the first barrier. Bookkeeping on thread 0 (the same on all).
            TeamEpoch te;
            ps.stop = false;
            TeamBarrier bar(team, 20000);  // (omp_team.h; two a step, as mlp_fit's partitions)
#pragma omp parallel num_threads(team)
            {
                SmallTeamMember member(team);
                const int tid = omp_get_thread_num();
                bool f = first;
                double tsum = 0.0;
                int64_t tused = 0, tsteps = 0, bi = 0;
                for (; bi < nbatches; ++bi) {
                    const int64_t start = bi * bs, nb = std::min(bs, n - start);
                    if (tid == 0) ps.stop = opt.should_stop && opt.should_stop(opt.stop_ctx);
                    if (tid < kParts)
                        part_grad(layers, ps, tid, small_step, X, Y, ord + start, nb, rule, f);
                    bar.wait();
                    if (ps.stop) break;
                    const double loss = ps.loss[0] + ps.loss[1];
                    if (!std::isfinite(loss) && !opt.allow_nonfinite) {
                        if (tid == 0) {
                            te.bad = true;
                            te.bad_batch = bi;
                            te.bad_loss = loss;
                        }
                        break;
                    }
                    int64_t lo1, hi1;
                    small_part_rows(nb, 1, kParts, lo1, hi1);
                    part_update(layers, ps, hi1 > lo1, rule, f);
                    // the weights (the next forward) and the buffers (the next backward) are
                    // written only after every share is done
                    bar.wait();
                    f = false;
                    ++tsteps;
                    tsum += loss * double(nb);
                    tused += nb;
                }
                if (tid == 0) {
                    te.stopped = bi < nbatches && ps.stop;
                    first = f;
                    sum = tsum;
                    used = tused;
                    te.steps = tsteps;
                }
            }
            ps.stop = false;
            if (end_team_epoch(te, e, sum, used)) return res;
            continue;
        }
        if (team > 1) {
            // The small path on one team for the whole epoch (SmallTeamMember): every thread runs
            // every step, the step's products split over the team; should_stop is polled by the
            // step's gather thread, a non-finite loss is seen by all after a barrier, so the
            // threads leave the loop together. Bookkeeping on thread 0 (the same values on all).
            TeamEpoch te;
            ss.poll = opt.should_stop;
            ss.poll_ctx = opt.stop_ctx;
#pragma omp parallel num_threads(team)
            {
                SmallTeamMember member(team);
                bool f = first;
                double tsum = 0.0;
                int64_t tused = 0, tsteps = 0, bi = 0;
                for (; bi < nbatches; ++bi) {
                    const int64_t start = bi * bs, nb = std::min(bs, n - start);
                    const double loss = small_step(layers, ss, X, Y, ord + start, nb, rule, f,
                                                   opt.allow_nonfinite, nullptr);
                    if (t_small_stop) break;  // (this thread's copy: ss.stop may be the next step's)
                    if (!std::isfinite(loss) && !opt.allow_nonfinite) {
                        if (omp_get_thread_num() == 0) {
                            te.bad = true;
                            te.bad_batch = bi;
                            te.bad_loss = loss;
                        }
                        break;
                    }
                    f = false;
                    ++tsteps;
                    tsum += loss * double(nb);
                    tused += nb;
                }
                if (omp_get_thread_num() == 0) {
                    te.stopped = bi < nbatches && t_small_stop;
                    first = f;
                    sum = tsum;
                    used = tused;
                    te.steps = tsteps;
                }
            }
            ss.poll = nullptr;
            ss.stop = false;
            t_small_stop = false;
            if (end_team_epoch(te, e, sum, used)) return res;
            continue;
        }
        for (int64_t bi = 0; bi < nbatches; ++bi) {
            if (opt.should_stop && opt.should_stop(opt.stop_ctx)) {
                res.interrupted = true;
                return res;
            }
            const int64_t start = bi * bs, nb = std::min(bs, n - start);
            // (No software prefetch of the next batch's rows: measured slower than letting the
            // out-of-order core overlap the gather's independent loads, in L3 and in DRAM.)
            const double loss =
                dist  ? distributed_step(layers, small, small_step, ss, gs, X, Y, ord + start, nb, rule,
                                         first, opt)
                : parts > 1 ? parts_step(layers, ps, parts_fn, ss, X, Y, ord + start, nb, rule,
                                         first, opt.allow_nonfinite)
                : small ? small_step(layers, ss, X, Y, ord + start, nb, rule, first, opt.allow_nonfinite, nullptr)
                      : gemm_step(layers, gs, X, Y, ord + start, nb, rule, first, opt.allow_nonfinite, nullptr);
            if (!std::isfinite(loss) && !opt.allow_nonfinite) return stop_nonfinite(e, bi, loss, sum, used);
            first = false;
            ++res.steps;
            sum += loss * double(nb);
            used += nb;
        }
        res.epoch_loss.push_back(used ? sum / double(used)
                                      : std::numeric_limits<double>::quiet_NaN());
    }
    return res;
}

void mlp_forward(float* out, const std::vector<MlpLayer>& layers, const float* X, int64_t n) {
    if (layers.empty()) throw std::invalid_argument("mlp_forward: no layers");
    // The small path's feature-major tiles: a row's output does not depend on how many rows come
    // with it (the gemm driver picks different kernels, with different summation orders, for one
    // row and for many), and nothing is allocated after the first call for a net.
    small_forward_for_isa()(out, layers, X, n);
}

}  // namespace fastmlp
