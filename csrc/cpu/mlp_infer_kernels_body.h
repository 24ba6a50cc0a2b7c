// The per-ISA kernels of the inference forward (the table in mlp_infer_kernels.h): row
// products, register tiles. Included only by mlp_infer_kernels_{generic,avx2,avx512}.cpp, each
// compiled with its ISA's flags; each gets its own internal-linkage copy and exports it through
// FASTMLP_INFER_KERNELS_BODY.
#pragma once
#pragma GCC diagnostic ignored "-Wpsabi"  // vf below never crosses a non-inlined call
#include <algorithm>
#include <cstdint>

#include "fastmlp/cpu_features.h"
#include "mlp_infer_kernels.h"
#include "simd_vf.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define FASTMLP_INFER_KERNELS_BODY                                                                 \
    namespace fastmlp::infer_detail {                                                              \
    const InferKernels& FASTMLP_INFER_KERNELS_NAME() {                                             \
        static const InferKernels k{&rows_impl, &tiles_impl, &simd_vf::transpose};                 \
        return k;                                                                                  \
    }                                                                                              \
    }

namespace fastmlp::infer_detail {
namespace {  // internal linkage: each ISA file compiles its own copy with its own flags

// vf: one register of the ISA this copy is compiled for (simd_vf.h). A tile is kMR weight rows x
// kWide * kLanes samples, kMR * kWide * kNV accumulators (and kMR x kLanes where fewer samples
// are left). On AVX-512 the 12 x 32 tile loads 12 broadcasts and 2 sample vectors per 24 FMAs
// (12 x 16: 13 loads per 12 FMAs, load-bound): 20-w-w-1 tiles, 1 thread, b64-1024, w 128-1024,
// 124-183 -> 207-236 GFLOP/s on a Zen 5 (python -m fastmlp calibrate --trainer infer). Each output's sum runs over k in the same order in
// either tile: the results are the same bits.
#if defined(__AVX512F__)
constexpr int kMR = 12;
constexpr int kWide = 2;
#elif defined(__AVX2__)
constexpr int kMR = 6;
constexpr int kWide = 1;
#else
constexpr int kMR = 3;
constexpr int kWide = 1;
#endif
using namespace simd_vf;  // vf, kVW, ldv/stv/bcv/fmav, bcast_fma_tile, transpose
constexpr int kNV = int(kLanes) / kVW;
// The lanes of v summed in a fixed tree order: halves added (lane i + lane i + w) until one lane
// is left (the same order on every ISA: the shuffles below are that tree).
inline float hsum(vf v) {
#if defined(__AVX2__)
#if defined(__AVX512F__)
    // the low half by a copy, not _mm512_castps512_ps256 (GCC 12 warns that cast's undefined
    // upper lanes "may be used uninitialized"); both compile to no instruction
    __m256 lo;
    __builtin_memcpy(&lo, &v, sizeof(lo));
    const __m256 h8 = _mm256_add_ps(lo, _mm512_extractf32x8_ps((__m512)v, 1));
#else
    const __m256 h8 = (__m256)v;
#endif
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
#else
    float t[kVW];
    __builtin_memcpy(t, &v, sizeof(v));
    for (int w = kVW / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) t[i] += t[i + w];
    return t[0];
#endif
}
inline float relu1(float v) { return v < 0.0f ? 0.0f : v; }  // NaN kept

// ---- rows: matrix-vector products, W read along its rows -----------------------------------
// Outputs [o0, o0 + R): R rows of W against x, kVW partial sums per output, then the tail of the
// row, then the bias.
template <int R>
inline void rows_block(float* y, const float* __restrict W, const float* b,
                       const float* __restrict x, int64_t I, int64_t o0, bool relu) {
    const int64_t Iv = I / kVW * kVW;
    vf acc[R];
    for (int r = 0; r < R; ++r) acc[r] = vf{};
    const float* w = W + o0 * I;
    for (int64_t k = 0; k < Iv; k += kVW) {
        const vf xv = ldv(x + k);
        for (int r = 0; r < R; ++r) acc[r] = fmav(ldv(w + r * I + k), xv, acc[r]);
    }
    for (int r = 0; r < R; ++r) {
        float s = hsum(acc[r]);
        for (int64_t k = Iv; k < I; ++k) s += w[r * I + k] * x[k];
        if (b) s += b[o0 + r];
        y[o0 + r] = relu ? relu1(s) : s;
    }
}

void rows_impl(float* y, const float* W, const float* b, const float* x, int64_t O, int64_t I,
               bool relu) {
    const int64_t nb = O / 4;
    const int nt = int(nb < 2 ? 1 : std::min<int64_t>(threads_for(2.0 * double(O) * double(I)), nb));
    if (nt > 1) {  // (a parallel region with if(false) still costs a libgomp call)
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t q = 0; q < nb; ++q) rows_block<4>(y, W, b, x, I, q * 4, relu);
    } else {
        for (int64_t q = 0; q < nb; ++q) rows_block<4>(y, W, b, x, I, q * 4, relu);
    }
    for (int64_t o = nb * 4; o < O; ++o) rows_block<1>(y, W, b, x, I, o, relu);
}

// ---- tiles: feature-major register tiles ---------------------------------------------------
// c rows [r0, r0 + MR), columns [c0, c0 + NV * kVW): sum over k of W[r][k] * a[k][c], the
// weight broadcast, the sample vectors loaded, kept in registers for the whole reduction.
template <int MR, int NV = kNV>
inline void tile(float* __restrict c, int64_t ldc, const float* __restrict W, int64_t I,
                 const float* __restrict a, int64_t lda, const float* bias, bool relu, int64_t r0,
                 int64_t c0) {
    vf acc[MR][NV];
    for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NV; ++j) acc[r][j] = vf{};
    simd_vf::bcast_fma_tile<MR, NV>(acc, W + r0 * I, I, 1, a + c0, lda, I);
    const vf zero = {};
    for (int r = 0; r < MR; ++r) {
        float* cr = c + (r0 + r) * ldc + c0;
        const vf bb = bias ? bcv(bias[r0 + r]) : zero;
        for (int j = 0; j < NV; ++j) {
            vf v = acc[r][j];
            if (bias) v = v + bb;
            if (relu) v = v < zero ? zero : v;
            stv(cr + j * kVW, v);
        }
    }
}

template <int MR, int NV = kNV>
inline void tile_rest(int64_t rows, float* c, int64_t ldc, const float* W, int64_t I,
                      const float* a, int64_t lda, const float* bias, bool relu, int64_t r0,
                      int64_t c0) {
    if constexpr (MR >= 1) {
        if (rows == MR) return tile<MR, NV>(c, ldc, W, I, a, lda, bias, relu, r0, c0);
        tile_rest<MR - 1, NV>(rows, c, ldc, W, I, a, lda, bias, relu, r0, c0);
    }
}

// Work items: (group of 4 column tiles, row block). Within an item the MR weight rows stay in L1
// while the 4 column tiles stream their sample panels. Serial, or (team) the items split over the
// threads of the caller's parallel region by an orphaned `omp for` (its barrier ends the call):
// the driver keeps one team for a whole call instead of a fork per layer.
void tiles_impl(float* c, int64_t ldc, const float* W, const float* bias, const float* a,
                int64_t lda, int64_t O, int64_t I, int64_t Bp, bool relu, bool team) {
    constexpr int64_t kGroup = 4 * kLanes;
    const int64_t nrb = (O + kMR - 1) / kMR, ncg = (Bp + kGroup - 1) / kGroup;
    const int64_t items = nrb * ncg;
    auto run = [&](int64_t t) {
        const int64_t r0 = (t % nrb) * kMR, g0 = (t / nrb) * kGroup;
        const int64_t rows = O - r0 < kMR ? O - r0 : kMR;
        const int64_t g1 = g0 + kGroup < Bp ? g0 + kGroup : Bp;
        int64_t c0 = g0;
        if constexpr (kWide > 1) {
            constexpr int64_t kWideLanes = kWide * kLanes;
            for (; c0 + kWideLanes <= g1; c0 += kWideLanes) {
                if (rows == kMR) tile<kMR, kWide * kNV>(c, ldc, W, I, a, lda, bias, relu, r0, c0);
                else tile_rest<kMR - 1, kWide * kNV>(rows, c, ldc, W, I, a, lda, bias, relu, r0,
                                                     c0);
            }
        }
        for (; c0 < g1; c0 += kLanes) {
            if (rows == kMR) tile<kMR>(c, ldc, W, I, a, lda, bias, relu, r0, c0);
            else tile_rest<kMR - 1>(rows, c, ldc, W, I, a, lda, bias, relu, r0, c0);
        }
    };
    if (!team) {
        for (int64_t t = 0; t < items; ++t) run(t);
        return;
    }
#pragma omp for schedule(static)
    for (int64_t t = 0; t < items; ++t) run(t);
}

}  // namespace
}  // namespace fastmlp::infer_detail
