// AVX2 + FMA sgemm micro-kernels (this file alone is compiled with -mavx2 -mfma; chosen at run
// time only when the CPU and OS support them).
//
// Packed path: 6 x 16 register tile = 12 ymm accumulators + 2 ymm of B + 1 broadcast of A (15 of
// 16 registers). Per k step: 2 loads of B, 6 broadcasts, 12 FMAs.
// Small path: 6 x 8 (narrow, N <= 8) and 6 x 16 tiles reading A in place.
// Epilogue (alpha, beta, bias, ReLU) is applied to the accumulators before the one store;
// partial tiles use masked loads/stores so nothing outside the m x n tile is touched.
#include <immintrin.h>

#include "gemm_internal.h"

namespace fastmlp::gemm_detail {

namespace {

#define FASTMLP_INLINE inline __attribute__((always_inline))

template <int NV>
FASTMLP_INLINE void make_masks(int64_t n, __m256i (&mk)[NV]) {
    for (int v = 0; v < NV; ++v) {
        const int64_t left = n - 8 * v;
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const int l = left >= 8 ? 8 : left <= 0 ? 0 : int(left);
        mk[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(l), iota);
    }
}

template <int MR, int NV, int AM, bool MASKED>
FASTMLP_INLINE void accumulate(const TileArgs& t, __m256 (&acc)[MR][NV], const __m256i (&mk)[NV]) {
    const float* a = t.a;
    const float* b = t.b;
    const int64_t ldb = t.ldb, ld = t.lda;
    const int64_t k = t.k;
    const float* ar[MR];
    if (AM == A_ROWS)
        for (int i = 0; i < MR; ++i) ar[i] = a + i * ld;
#pragma GCC unroll 2
    for (int64_t p = 0; p < k; ++p) {
        __m256 bv[NV];
        for (int v = 0; v < NV; ++v)
            bv[v] = MASKED ? _mm256_maskload_ps(b + 8 * v, mk[v]) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            float s;
            if (AM == A_PACKED) s = a[i];
            else if (AM == A_COLS) s = a[i];
            else s = ar[i][p];
            const __m256 av = _mm256_set1_ps(s);
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
        }
        b += ldb;
        if (AM == A_PACKED) a += MR;
        else if (AM == A_COLS) a += ld;
    }
}

template <int MR, int NV, int AM>
void tile(const TileArgs& t) {
    __m256 acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
    __m256i mk[NV];
    make_masks<NV>(t.n, mk);
    for (int i = 0; i < MR; ++i)
        if (i < t.m) _mm_prefetch(reinterpret_cast<const char*>(t.c + i * t.ldc), _MM_HINT_T0);
    if (t.n == 8 * NV)
        accumulate<MR, NV, AM, false>(t, acc, mk);
    else
        accumulate<MR, NV, AM, true>(t, acc, mk);

    // Fused epilogue and store.
    const __m256 alpha = _mm256_set1_ps(t.alpha), beta = _mm256_set1_ps(t.beta);
    const __m256 zero = _mm256_setzero_ps();
    const bool use_beta = t.beta != 0.0f;
    __m256 bias[NV];
    for (int v = 0; v < NV; ++v)
        bias[v] = t.bias ? _mm256_maskload_ps(t.bias + 8 * v, mk[v]) : zero;
    const int64_t m = t.m;
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
        if (i >= m) continue;
        float* c = t.c + i * t.ldc;
        for (int v = 0; v < NV; ++v) {
            __m256 r = _mm256_mul_ps(alpha, acc[i][v]);
            if (use_beta) r = _mm256_fmadd_ps(beta, _mm256_maskload_ps(c + 8 * v, mk[v]), r);
            if (t.bias) r = _mm256_add_ps(r, bias[v]);
            // max(0, r) returns r (its second operand) when r is NaN: relu(NaN) = NaN.
            if (t.relu) r = _mm256_max_ps(zero, r);
            _mm256_maskstore_ps(c + 8 * v, mk[v], r);
        }
    }
}

// ---- dot tiles (NT with few rows) -------------------------------------------------------------
inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// C[i][j] = sum_p a[i*lda + p] * b[j*ldb + p]: 8 lanes of p per FMA, reduced at the end.
template <int DMR, int DNR>
void dot_tile(const TileArgs& t) {
    const float* ar[DMR];
    const float* br[DNR];
#pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i) ar[i] = t.a + (i < t.m ? i : t.m - 1) * t.lda;
#pragma GCC unroll 16
    for (int j = 0; j < DNR; ++j) br[j] = t.b + (j < t.n ? j : t.n - 1) * t.ldb;
    __m256 acc[DMR][DNR];
#pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i)
#pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j) acc[i][j] = _mm256_setzero_ps();
    const int64_t k = t.k;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t p = 0; p < k; p += 8) {
        const int left = k - p >= 8 ? 8 : int(k - p);
        const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), iota);
        __m256 bv[DNR];
#pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j) bv[j] = _mm256_maskload_ps(br[j] + p, mk);
    #pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i) {
            const __m256 av = _mm256_maskload_ps(ar[i] + p, mk);
    #pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i) {
        if (i >= t.m) continue;
        float* c = t.c + i * t.ldc;
#pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j) {
            if (j >= t.n) continue;
            float v = t.alpha * hsum(acc[i][j]);
            if (t.beta != 0.0f) v += t.beta * c[j];
            if (t.bias) v += t.bias[j];
            if (t.relu) v = v > 0.0f ? v : (v != v ? v : 0.0f);
            c[j] = v;
        }
    }
}

// One row of A: a 1 x 2*DNR tile (no redundant rows), else DMR x DNR.
template <int DMR, int DNR>
void dot_any(const TileArgs& t) {
    if (t.m == 1) {
        TileArgs u = t;
        for (int64_t j = 0; j < t.n; j += 2 * DNR) {
            u.n = t.n - j < 2 * DNR ? t.n - j : 2 * DNR;
            u.b = t.b + j * t.ldb;
            u.c = t.c + j;
            u.bias = t.bias ? t.bias + j : nullptr;
            dot_tile<1, 2 * DNR>(u);
        }
        return;
    }
    dot_tile<DMR, DNR>(t);
}

constexpr int MR = 6, NV = 2, SMR = 6;

// Cache blocks (measured single thread at 1024^3 on this machine: ~81 GFLOP/s, ~90% of the
// AVX2 FMA peak): kc = 384 (the 384 x 16 B micro-panel, 24 KiB, in L1), mc = 72 (beat 144 by
// ~8%), nc = 1024 (B block 1.5 MiB in L2).
const KernelSet kSet = {
    "avx2",
    MR, 8 * NV,
    /*mc=*/72, /*kc=*/384, /*nc=*/1024,
    &tile<MR, NV, A_PACKED>,
    &pack_panels,
    SMR,
    {8, 16},
    {{&tile<SMR, 1, A_PACKED>, &tile<SMR, 1, A_ROWS>, &tile<SMR, 1, A_COLS>},
     {&tile<SMR, 2, A_PACKED>, &tile<SMR, 2, A_ROWS>, &tile<SMR, 2, A_COLS>}},
    2, 4, &dot_any<2, 4>,
    {},  // no last-rows kernels: the driver packs the last rows
};

}  // namespace

const KernelSet& kernels_avx2() { return kSet; }

}  // namespace fastmlp::gemm_detail
