// The inference forward's driver (mlp_infer.h): path choice, chunking, transposes, workspaces.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fastmlp/activations.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/gemm.h"
#include "fastmlp/mlp_infer.h"
#include "mlp_infer_kernels.h"
#include "omp_team.h"

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
//
// Threads. A sample's outputs come from the same tile arithmetic wherever it sits in a chunk (the
// padding columns are zeros and never mix with it), so the samples may be split over threads
// freely without changing a bit. With enough samples (kSplitTiles sample tiles or more per
// thread) each thread runs whole chunks of its own contiguous share of the rows through every
// layer in its own slice of the workspace: one fork per call, no barrier, and the weights (which
// fit the L2 up to 256 x 256, and stream from L3 once per chunk beyond) are read by both. With
// fewer samples one team serves the whole call and splits each layer's tiles (an orphaned `omp
// for` per layer: a barrier between layers instead of a fork).
constexpr int64_t kSplitTiles = 2;
constexpr int64_t kSliceBudget = 128 * 1024;  // floats

struct TileGeom {
    int64_t chunk, ld, slice;  // samples per chunk, row stride, floats per workspace slice
};

TileGeom tile_geom(const std::vector<InferLayer>& layers, int64_t rows) {
    TileGeom g;
    // Chunks of kTileChunk samples, fewer (a power of two, at least 32) where one slice of the
    // workspace (the input and two activation buffers) would not fit kSliceBudget floats (the
    // 512 KiB L2 of a Zen 3 core): 20-1024-1024-1 takes chunks of 32 (on AVX2, 2 threads, batch
    // 1024: 76.8 GFLOP/s at 32, 52.9-75.7 at 256).
    const int64_t feats = layers[0].in + 2 * max_out(layers);
    int64_t cap = kTileChunk;
    while (cap > 32 && feats * cap > kSliceBudget) cap /= 2;
    g.chunk = std::min(cap, round_up(rows, kLanes));
    // Row stride of the feature-major buffers: one tile more than the chunk, so that the rows of
    // a panel (read k after k) do not all fall into the same few L1 sets (a 1 KiB stride would).
    g.ld = g.chunk >= 64 ? g.chunk + kLanes : g.chunk;
    g.slice = feats * g.ld;
    return g;
}

// Rows [r0, r0 + rows) of X (at most g.chunk) through the chain into out, in the slice at a0.
// team: every thread of the enclosing parallel region calls it and they split each layer.
void tiles_chunk(float* out, const std::vector<InferLayer>& layers, const float* X, int64_t r0,
                 int64_t rows, const TileGeom& g, float* a0, bool team) {
    const InferKernels& k = kernels();
    const size_t L = layers.size();
    const int64_t d_in = layers[0].in, d_out = layers[L - 1].out, ld = g.ld;
    const int64_t w = max_out(layers);
    float* pp[2] = {a0 + d_in * ld, a0 + (d_in + w) * ld};
    const int64_t Bp = round_up(rows, kLanes);
    auto load = [&] {
        k.transpose(a0, ld, X + r0 * d_in, d_in, rows, d_in);
        if (Bp > rows)
            for (int64_t i = 0; i < d_in; ++i) std::fill(a0 + i * ld + rows, a0 + i * ld + Bp, 0.0f);
    };
    if (team) {
#pragma omp single
        load();
    } else {
        load();
    }
    const float* a = a0;
    for (size_t l = 0; l < L; ++l) {
        const InferLayer& ly = layers[l];
        float* c = pp[l % 2];
        k.tiles(c, ld, ly.weight, ly.bias, a, ld, ly.out, ly.in, Bp, is_relu(ly.act), team);
        if (other_act(ly.act)) {
            if (team) {  // element-wise: any split of the feature rows gives the same bits
#pragma omp for schedule(static)
                for (int64_t f = 0; f < ly.out; f += 8)
                    act_forward_tile(c + f * ld, ld, std::min<int64_t>(8, ly.out - f), rows, ly.act);
            } else {
                act_forward_tile(c, ld, ly.out, rows, ly.act);
            }
        }
        a = c;
    }
    float* o = out + r0 * d_out;
    auto store = [&] {
        if (d_out == 1) std::copy(a, a + rows, o);
        else k.transpose(o, d_out, a, ld, d_out, rows);
    };
    if (team) {
#pragma omp single
        store();
    } else {
        store();
    }
}

double chain_flops(const std::vector<InferLayer>& layers, int64_t n) {
    double f = 0.0;
    for (const InferLayer& l : layers) f += 2.0 * double(l.in) * double(l.out);
    return f * double(n);
}

void forward_tiles(float* out, const std::vector<InferLayer>& layers, const float* X, int64_t n,
                   InferWorkspace& ws) {
    const int64_t ntiles = (n + kLanes - 1) / kLanes;
    const int nt = threads_for(chain_flops(layers, n));
    if (nt > 1 && ntiles >= nt * kSplitTiles) {
        // each thread: a contiguous share of whole sample tiles, in chunks, in its own slice
        const int64_t per = (ntiles + nt - 1) / nt;  // tiles per thread (the last may get fewer)
        const TileGeom g = tile_geom(layers, per * kLanes);
        float* base = ws.reserve(size_t(g.slice * nt));
#pragma omp parallel num_threads(nt)
        {
            const int tid = team_id(), nth = team_size();
            // share s in slice s (a team smaller than asked, e.g. nested, takes several shares)
            for (int s = tid; s < nt; s += nth) {
                const int64_t lo = std::min(n, int64_t(s) * per * kLanes);
                const int64_t hi = std::min(n, (int64_t(s) + 1) * per * kLanes);
                float* a0 = base + size_t(s) * size_t(g.slice);
                for (int64_t r0 = lo; r0 < hi; r0 += g.chunk)
                    tiles_chunk(out, layers, X, r0, std::min(g.chunk, hi - r0), g, a0, false);
            }
        }
        return;
    }
    const TileGeom g = tile_geom(layers, n);
    float* a0 = ws.reserve(size_t(g.slice));
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        for (int64_t r0 = 0; r0 < n; r0 += g.chunk)
            tiles_chunk(out, layers, X, r0, std::min(g.chunk, n - r0), g, a0, true);
        return;
    }
    for (int64_t r0 = 0; r0 < n; r0 += g.chunk)
        tiles_chunk(out, layers, X, r0, std::min(g.chunk, n - r0), g, a0, false);
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

int64_t mlp_infer_gemm_from(const std::vector<InferLayer>& layers) {
    // Re-measured on AVX2 (Zen 3, 2 cores) after the AVX2 sgemm rewrite and the tiles' one-team
    // threading, 20-w-w-1 (ReLU), ops.infer, M rows/s, tiles / gemm:
    //   1 thread:  w 64 b1024 3.49 / 3.09; w 256 b256 0.308 / 0.292; w 1024 b1024 0.019 / 0.018
    //   2 threads: w 64 b1024 6.90 / 5.47; w 256 b256 0.615 / 0.562, b1024 0.564 / 0.570;
    //              w 1024 b16 0.042 / 0.022, b64 0.043 / 0.034, b1024 0.035 / 0.033
    // On AVX-512 (Zen 5, 2 cores), 1 thread, GFLOP/s tiles / gemm, before the tiles' 12 x 32
    // AVX-512 tile: w 128 b256 163 / 181, w 256 b1024 178 / 200, w 1024 b1024 167 / 212 (the
    // gemm won from 256 rows at 128 x 128 weights); after it (min of 3 interleaved processes):
    //   w 512 b1024 234 / 219; w 1024 b256 235 / 211, b1024 230 / 217; 2 threads: w 512 b1024
    //   454 / 425, w 1024 b256 468 / 420, b1024 455 / 438.
    // The tiles win or tie at every measured shape on every path, so the compiled rule never
    // takes the packed sgemm; fastmlp.costmodel's measured model (trainer "infer") sets a plan's
    // crossover where a machine measures otherwise.
    (void)layers;
    return kInferNeverGemm;
}

InferPath mlp_infer_choose(const std::vector<InferLayer>& layers, int64_t n, int64_t gemm_from) {
    // Below 8 rows the tiles' 16-sample padding costs more than the matrix-vector chain.
    if (n < 8) return InferPath::rows;
    if (gemm_from < 0) gemm_from = mlp_infer_gemm_from(layers);
    return n >= gemm_from ? InferPath::gemm : InferPath::tiles;
}

void mlp_infer_forward(float* out, const std::vector<InferLayer>& layers, const float* X,
                       int64_t n, InferWorkspace& ws, InferPath path, int64_t gemm_from) {
    if (layers.empty()) throw std::invalid_argument("mlp_infer_forward: no layers");
    if (n <= 0) return;
    if (path == InferPath::automatic) path = mlp_infer_choose(layers, n, gemm_from);
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
