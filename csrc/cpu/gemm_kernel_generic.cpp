// Portable sgemm micro-kernels (plain C++, baseline ISA): the fallback on CPUs without AVX2 and
// the reference shape of what the SIMD kernels do. MR x NR accumulators in an array the compiler
// keeps in (SSE) registers; epilogue fused into the store.
#include "gemm_internal.h"

namespace fastmlp::gemm_detail {

namespace {

inline float relu1(float v) { return v > 0.0f ? v : (v != v ? v : 0.0f); }

// C tile (m<=MR, n<=NR) = alpha * a(MR x k) @ b(k x NR) [+ beta C] [+ bias] [relu]
template <int MR, int NR, int AM>
void tile(const TileArgs& t) {
    float acc[MR][NR] = {};
    const float* a = t.a;
    const float* b = t.b;
    const int64_t ld = t.lda;
    const int n = int(t.n);
    for (int64_t p = 0; p < t.k; ++p) {
        float bv[NR];
        if (n == NR) {
            for (int j = 0; j < NR; ++j) bv[j] = b[p * t.ldb + j];
        } else {
            for (int j = 0; j < NR; ++j) bv[j] = j < n ? b[p * t.ldb + j] : 0.0f;
        }
        for (int i = 0; i < MR; ++i) {
            const float av = AM == A_PACKED ? a[p * MR + i] : AM == A_ROWS ? a[i * ld + p] : a[p * ld + i];
            for (int j = 0; j < NR; ++j) acc[i][j] += av * bv[j];
        }
    }
    for (int i = 0; i < t.m; ++i) {
        float* c = t.c + i * t.ldc;
        for (int j = 0; j < n; ++j) {
            float v = t.alpha * acc[i][j];
            if (t.beta != 0.0f) v += t.beta * c[j];
            if (t.bias) v += t.bias[j];
            if (t.relu) v = relu1(v);
            c[j] = v;
        }
    }
}

// Dot tile: C[i][j] = sum_p a[i*lda+p] * b[j*ldb+p] for DMR x DNR (i < m, j < n).
template <int DMR, int DNR>
void dot_tile(const TileArgs& t) {
    const float* ar[DMR];
    const float* br[DNR];
    for (int i = 0; i < DMR; ++i) ar[i] = t.a + (i < t.m ? i : t.m - 1) * t.lda;
    for (int j = 0; j < DNR; ++j) br[j] = t.b + (j < t.n ? j : t.n - 1) * t.ldb;
    float acc[DMR][DNR] = {};
    for (int64_t p = 0; p < t.k; ++p)
        for (int i = 0; i < DMR; ++i)
            for (int j = 0; j < DNR; ++j) acc[i][j] += ar[i][p] * br[j][p];
    for (int i = 0; i < t.m; ++i) {
        float* c = t.c + i * t.ldc;
        for (int j = 0; j < t.n; ++j) {
            float v = t.alpha * acc[i][j];
            if (t.beta != 0.0f) v += t.beta * c[j];
            if (t.bias) v += t.bias[j];
            if (t.relu) v = relu1(v);
            c[j] = v;
        }
    }
}

// Any n (the driver hands 1 x 2*DNR tiles when M == 1): DNR columns at a time.
template <int DMR, int DNR>
void dot_any(const TileArgs& t) {
    TileArgs u = t;
    for (int64_t j = 0; j < t.n; j += DNR) {
        u.n = t.n - j < DNR ? t.n - j : DNR;
        u.b = t.b + j * t.ldb;
        u.c = t.c + j;
        u.bias = t.bias ? t.bias + j : nullptr;
        dot_tile<DMR, DNR>(u);
    }
}

// Tile sizes: 4 x 8 accumulators are 8 SSE registers, leaving room for b and the broadcast.
constexpr int MR = 4, NR = 8;

const KernelSet kSet = {
    "generic",
    MR, NR,
    /*mc=*/128, /*kc=*/256, /*nc=*/2048,
    &tile<MR, NR, A_PACKED>,
    &pack_panels,
    /*smr=*/MR,
    {NR, NR},
    {{&tile<MR, NR, A_PACKED>, &tile<MR, NR, A_ROWS>, &tile<MR, NR, A_COLS>},
     {&tile<MR, NR, A_PACKED>, &tile<MR, NR, A_ROWS>, &tile<MR, NR, A_COLS>}},
    2, 4, &dot_any<2, 4>,
    {},  // no last-rows kernels: the driver packs the last rows
    0, nullptr, 0, nullptr,  // no narrow-path kernels
};

}  // namespace

const KernelSet& kernels_generic() { return kSet; }

}  // namespace fastmlp::gemm_detail
