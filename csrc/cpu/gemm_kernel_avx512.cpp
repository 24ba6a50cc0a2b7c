// AVX-512 sgemm micro-kernels (this file alone is compiled with -mavx512f etc.; chosen at run
// time only when the CPU and OS support AVX-512).
//
// Packed path: 12 x 32 register tile = 24 zmm accumulators + 2 zmm of B + 1 broadcast of A (27 of
// 32 registers). Per k step: 2 loads of B, 12 broadcasts of A (memory operand of the FMA), 24 FMAs,
// i.e. 12 cycles on two FMA ports, enough independent chains (24 > 4-cycle latency x 2 ports).
// Small path: 8 x 16 (narrow, N <= 16) and 8 x 32 tiles reading A in place.
// Epilogue (alpha, beta, bias, ReLU) is applied to the accumulators before the one store;
// partial tiles use masked loads/stores so nothing outside the m x n tile is touched.
#include <immintrin.h>

#include "gemm_internal.h"

// GCC 12 flags _mm512_undefined_ps() inside _mm512_max_ps as maybe-uninitialized (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace fastmlp::gemm_detail {

namespace {

#define FASTMLP_INLINE inline __attribute__((always_inline))

template <int NV>
FASTMLP_INLINE void make_masks(int64_t n, __mmask16 (&mk)[NV]) {
    for (int v = 0; v < NV; ++v) {
        const int64_t left = n - 16 * v;
        mk[v] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
    }
}

template <int MR, int NV, int AM, bool MASKED>
FASTMLP_INLINE void accumulate(const TileArgs& t, __m512 (&acc)[MR][NV], const __mmask16 (&mk)[NV]) {
    const float* a = t.a;
    const float* b = t.b;
    const int64_t ldb = t.ldb, ld = t.lda;
    const int64_t k = t.k;
    const float* ar[MR];
    if (AM == A_ROWS)
        for (int i = 0; i < MR; ++i) ar[i] = a + i * ld;
#pragma GCC unroll 2
    for (int64_t p = 0; p < k; ++p) {
        __m512 bv[NV];
        for (int v = 0; v < NV; ++v)
            bv[v] = MASKED ? _mm512_maskz_loadu_ps(mk[v], b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
        for (int i = 0; i < MR; ++i) {
            float s;
            if (AM == A_PACKED) s = a[i];
            else if (AM == A_COLS) s = a[i];
            else s = ar[i][p];
            const __m512 av = _mm512_set1_ps(s);
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
        b += ldb;
        if (AM == A_PACKED) a += MR;
        else if (AM == A_COLS) a += ld;
    }
}

template <int MR, int NV, int AM>
void tile(const TileArgs& t) {
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    __mmask16 mk[NV];
    make_masks<NV>(t.n, mk);
    for (int i = 0; i < MR; ++i)
        if (i < t.m) _mm_prefetch(reinterpret_cast<const char*>(t.c + i * t.ldc), _MM_HINT_T0);
    if (t.n == 16 * NV)
        accumulate<MR, NV, AM, false>(t, acc, mk);
    else
        accumulate<MR, NV, AM, true>(t, acc, mk);

    // Fused epilogue and store.
    const __m512 alpha = _mm512_set1_ps(t.alpha), beta = _mm512_set1_ps(t.beta);
    const __m512 zero = _mm512_setzero_ps();
    const bool use_beta = t.beta != 0.0f;
    __m512 bias[NV];
    for (int v = 0; v < NV; ++v)
        bias[v] = t.bias ? _mm512_maskz_loadu_ps(mk[v], t.bias + 16 * v) : zero;
    for (int i = 0; i < MR; ++i) {
        if (i >= t.m) break;
        float* c = t.c + i * t.ldc;
        for (int v = 0; v < NV; ++v) {
            __m512 r = _mm512_mul_ps(alpha, acc[i][v]);
            if (use_beta) r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mk[v], c + 16 * v), r);
            if (t.bias) r = _mm512_add_ps(r, bias[v]);
            // max(0, r) returns r (its second operand) when r is NaN: relu(NaN) = NaN.
            if (t.relu) r = _mm512_max_ps(zero, r);
            _mm512_mask_storeu_ps(c + 16 * v, mk[v], r);
        }
    }
}

constexpr int MR = 12, NV = 2, SMR = 8;

// Cache blocks (Sapphire Rapids class Xeon: L1d 48 KiB, L2 2 MiB per core, large shared L3):
//   kc = 256: the 256 x 32 B micro-panel (32 KiB) stays in L1 next to a streaming 12-row A panel,
//   mc = 192: the 192 x 256 A block (192 KiB) sits in L2 with room for the C tiles,
//   nc = 4096: the 256 x 4096 B block (4 MiB) in L3, shared by both cores.
const KernelSet kSet = {
    "avx512",
    MR, 16 * NV,
    /*mc=*/192, /*kc=*/256, /*nc=*/4096,
    &tile<MR, NV, A_PACKED>,
    SMR,
    {16, 32},
    {{&tile<SMR, 1, A_PACKED>, &tile<SMR, 1, A_ROWS>, &tile<SMR, 1, A_COLS>},
     {&tile<SMR, 2, A_PACKED>, &tile<SMR, 2, A_ROWS>, &tile<SMR, 2, A_COLS>}},
};

}  // namespace

const KernelSet& kernels_avx512() { return kSet; }

}  // namespace fastmlp::gemm_detail
