// The general trainer's small-matrix path (mlp_fit_small.h): scratch, the path choice, the ISA
// dispatch. The step bodies are in mlp_fit_small_body.h, compiled per ISA.
#include "mlp_fit_small.h"

#include <algorithm>

#include "fastmlp/activation.h"
#include "fastmlp/cpu_features.h"

namespace fastmlp::detail {

void FitSmallScratch::init(const std::vector<FitLayer>& layers, int64_t batch) {
    constexpr int64_t kLanes = 16;
    ld = (batch + kLanes - 1) / kLanes * kLanes;
    if (ld % 256 == 0) ld += kLanes;  // skew strides of a multiple of 1 KiB (few L1 sets)
    const size_t L = layers.size();
    int64_t maxw = layers[0].in, maxin = 0, total = layers[0].in * ld;
    for (const FitLayer& l : layers) {
        maxw = std::max(maxw, l.out);
        maxin = std::max(maxin, l.in);
        total += l.out * ld;
        if (act_backward_needs_input(l.act.kind)) total += l.out * ld;
        if (l.dropout > 0.0f) total += 2 * l.out * ld;
    }
    total += 3 * maxw * ld;
    const int64_t at_w = (maxin + kLanes - 1) / kLanes * kLanes;
    total += ld * at_w;
    storage.assign(size_t(total), 0.0f);
    float* p = storage.data();
    a.assign(L + 1, nullptr);
    z.assign(L, nullptr);
    mask.assign(L, nullptr);
    ykeep.assign(L, nullptr);
    a[0] = p;
    p += layers[0].in * ld;
    for (size_t l = 0; l < L; ++l) {
        const int64_t n = layers[l].out * ld;
        a[l + 1] = p;
        p += n;
        if (act_backward_needs_input(layers[l].act.kind)) {
            z[l] = p;
            p += n;
        }
        if (layers[l].dropout > 0.0f) {
            mask[l] = p;
            p += n;
            ykeep[l] = p;
            p += n;
        }
    }
    d0 = p;
    p += maxw * ld;
    d1 = p;
    p += maxw * ld;
    d2 = p;
    p += maxw * ld;
    at = p;
}

bool mlp_fit_small_fits(const std::vector<FitLayer>& layers, int64_t batch_size) {
    // The rule of the ReLU trainer's small path (mlp_small_path_fits, measured there): the gemm
    // path only where its cache blocking pays, some layer beyond 200 x 200 weights and a batch of
    // at least 64. Shapes only.
    int64_t max_params = 0;
    for (const FitLayer& l : layers) {
        if (l.norm.kind != Norm::none) return false;  // norm layers: the gemm path only
        max_params = std::max(max_params, l.in * l.out);
    }
    return max_params <= 200 * 200 || batch_size < 64;
}

namespace {
struct SmallFns {
    FitSmallForwardFn fwd;
    FitSmallBackwardFn bwd;
};
SmallFns fns() {
#ifdef FASTMLP_HAVE_X86_KERNELS
    switch (current_isa()) {
        case Isa::avx512: return {fit_small_forward_avx512, fit_small_backward_avx512};
        case Isa::avx2: return {fit_small_forward_avx2, fit_small_backward_avx2};
        default: break;
    }
#endif
    return {fit_small_forward_generic, fit_small_backward_generic};
}
}  // namespace

void mlp_fit_small_forward(const std::vector<FitLayer>& layers, FitSmallScratch& s, const float* X,
                           const int64_t* idx, int64_t B, bool train, uint64_t dseed, int64_t step,
                           float* P) {
    fns().fwd(layers, s, X, idx, B, train, dseed, step, P);
}

void mlp_fit_small_backward(const std::vector<FitLayer>& layers, FitSmallScratch& s, int64_t B,
                            const float* dP, float* grads, const int64_t* gw_off,
                            const int64_t* gb_off, const FitSmallSplit* split) {
    fns().bwd(layers, s, B, dP, grads, gw_off, gb_off, split);
}

}  // namespace fastmlp::detail
