// The inference forward's driver (mlp_infer.h): path choice, chunking, transposes, workspaces.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fastmlp/activations.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/gemm.h"
#include "fastmlp/mlp_infer.h"
#include "mlp_infer_kernels.h"

namespace fastmlp {

namespace {

using infer_detail::InferKernels;
using infer_detail::kLanes;

const InferKernels& kernels() {
#ifdef FASTMLP_HAVE_X86_KERNELS
    const Isa isa = current_isa();
    if (isa == Isa::avx512) return infer_detail::infer_kernels_avx512();
    if (isa == Isa::avx2) return infer_detail::infer_kernels_avx2();
#endif
    return infer_detail::infer_kernels_generic();
}

constexpr int64_t kTileChunk = 256;   // samples per feature-major chunk (the tiles path)
constexpr int64_t kGemmChunk = 2048;  // rows per sgemm chunk (bounds the workspace)

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline bool is_relu(const ActParams& a) { return a.kind == Act::relu; }
inline bool other_act(const ActParams& a) { return a.kind != Act::identity && a.kind != Act::relu; }

int64_t max_out(const std::vector<InferLayer>& layers) {
    int64_t m = 0;
    for (const InferLayer& l : layers) m = std::max(m, l.out);
    return m;
}

// rows: one sample at a time through the chain, two ping-pong vectors.
void forward_rows(float* out, const std::vector<InferLayer>& layers, const float* X, int64_t n,
                  InferWorkspace& ws) {
    const InferKernels& k = kernels();
    const int64_t w = max_out(layers);
    float* buf = ws.reserve(size_t(2 * w));
    const size_t L = layers.size();
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out;
    for (int64_t r = 0; r < n; ++r) {
        const float* x = X + r * d_in;
        for (size_t l = 0; l < L; ++l) {
            const InferLayer& ly = layers[l];
            float* y = l + 1 == L ? out + r * d_out : buf + (l % 2) * w;
            k.rows(y, ly.weight, ly.bias, x, ly.out, ly.in, is_relu(ly.act));
            if (other_act(ly.act)) act_forward_tile(y, ly.out, 1, ly.out, ly.act);
            x = y;
        }
    }
}

// tiles: chunks of up to kTileChunk samples, feature-major (features, ld) in the workspace.
void forward_tiles(float* out, const std::vector<InferLayer>& layers, const float* X, int64_t n,
                   InferWorkspace& ws) {
    const InferKernels& k = kernels();
    const size_t L = layers.size();
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out;
    const int64_t chunk = std::min(kTileChunk, round_up(n, kLanes));
    // Row stride of the feature-major buffers: one tile more than the chunk, so that the rows of
    // a panel (read k after k) do not all fall into the same few L1 sets (a 1 KiB stride would).
    const int64_t ld = chunk >= 64 ? chunk + kLanes : chunk;
    const int64_t w = max_out(layers);
    float* a0 = ws.reserve(size_t((d_in + 2 * w) * ld));
    float* pp[2] = {a0 + d_in * ld, a0 + (d_in + w) * ld};
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t rows = std::min(chunk, n - r0);
        const int64_t Bp = round_up(rows, kLanes);
        const float* xr = X + r0 * d_in;
        k.transpose(a0, ld, xr, d_in, rows, d_in);
        if (Bp > rows)
            for (int64_t i = 0; i < d_in; ++i)
                std::fill(a0 + i * ld + rows, a0 + i * ld + Bp, 0.0f);
        const float* a = a0;
        for (size_t l = 0; l < L; ++l) {
            const InferLayer& ly = layers[l];
            float* c = pp[l % 2];
            k.tiles(c, ld, ly.weight, ly.bias, a, ld, ly.out, ly.in, Bp, is_relu(ly.act));
            if (other_act(ly.act)) act_forward_tile(c, ld, ly.out, rows, ly.act);
            a = c;
        }
        float* o = out + r0 * d_out;
        if (d_out == 1) std::copy(a, a + rows, o);
        else k.transpose(o, d_out, a, ld, d_out, rows);
    }
}

// gemm: row-major, X @ W^T by sgemm with bias + activation in its epilogue; the last layer
// writes straight into out.
void forward_gemm(float* out, const std::vector<InferLayer>& layers, const float* X, int64_t n,
                  InferWorkspace& ws) {
    const size_t L = layers.size();
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out;
    const int64_t chunk = std::min(n, kGemmChunk);
    int64_t w = 0;
    for (size_t l = 0; l + 1 < L; ++l) w = std::max(w, layers[l].out);
    float* buf = L > 1 ? ws.reserve(size_t(2 * w * chunk)) : nullptr;
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t rows = std::min(chunk, n - r0);
        const float* a = X + r0 * d_in;
        for (size_t l = 0; l < L; ++l) {
            const InferLayer& ly = layers[l];
            float* c = l + 1 == L ? out + r0 * d_out : buf + (l % 2) * w * chunk;
            GemmEpilogue e;
            e.bias = ly.bias;
            e.act = ly.act;
            sgemm(false, true, rows, ly.out, ly.in, 1.0f, a, ly.in, ly.weight, ly.in, 0.0f, c,
                  ly.out, e);
            a = c;
        }
    }
}

}  // namespace

InferPath mlp_infer_choose(const std::vector<InferLayer>& layers, int64_t n) {
    (void)layers;
    // Measured on AVX2 (Zen 3, bench/grid.py shapes, widths 8..1024, batches 16..1024): the
    // unpacked tiles beat the packed sgemm at every shape (e.g. 784-256-256-10 at batch 256:
    // 4.33 vs 4.69 ms; 20-1024-1024-10 at 256: 16.2 vs 19.3 ms, one thread), so gemm is taken
    // only when asked for. Below 8 rows the tiles' 16-sample padding costs more than the
    // matrix-vector chain.
    return n < 8 ? InferPath::rows : InferPath::tiles;
}

void mlp_infer_forward(float* out, const std::vector<InferLayer>& layers, const float* X,
                       int64_t n, InferWorkspace& ws, InferPath path) {
    if (layers.empty()) throw std::invalid_argument("mlp_infer_forward: no layers");
    if (n <= 0) return;
    if (path == InferPath::automatic) path = mlp_infer_choose(layers, n);
    switch (path) {
    case InferPath::rows: return forward_rows(out, layers, X, n, ws);
    case InferPath::tiles: return forward_tiles(out, layers, X, n, ws);
    case InferPath::gemm: return forward_gemm(out, layers, X, n, ws);
    case InferPath::reference: return mlp_infer_reference(out, layers, X, n);
    default: throw std::invalid_argument("mlp_infer_forward: unknown path");
    }
}

void mlp_infer_reference(float* out, const std::vector<InferLayer>& layers, const float* X,
                         int64_t n) {
    // out (n, d_out), X (n, d_in); plain loops, double sums
    std::vector<float> cur, nxt;
    const size_t L = layers.size();
    for (int64_t r = 0; r < n; ++r) {
        cur.assign(X + r * layers[0].in, X + (r + 1) * layers[0].in);
        for (size_t l = 0; l < L; ++l) {
            const InferLayer& ly = layers[l];
            nxt.assign(size_t(ly.out), 0.0f);
            for (int64_t o = 0; o < ly.out; ++o) {
                double s = ly.bias ? double(ly.bias[o]) : 0.0;
                for (int64_t i = 0; i < ly.in; ++i) s += double(ly.weight[o * ly.in + i]) * cur[size_t(i)];
                nxt[size_t(o)] = act_forward_scalar(float(s), ly.act);
            }
            cur.swap(nxt);
        }
        std::copy(cur.begin(), cur.end(), out + r * layers[L - 1].out);
    }
}

}  // namespace fastmlp
