// AVX-512 sgemm micro-kernels (this file alone is compiled with -mavx512f etc.; chosen at run
// time only when the CPU and OS support AVX-512).
//
// Packed path: 12 x 32 register tile = 24 zmm accumulators + 2 zmm of B + 1 broadcast of A (27 of
// 32 registers). Per k step: 2 loads of B, 12 broadcasts of A (memory operand of the FMA), 24 FMAs,
// i.e. 12 cycles on two FMA ports, enough independent chains (24 > 4-cycle latency x 2 ports).
// Small path: 8 x 16 (narrow, N <= 16) and 8 x 32 tiles reading A in place, the last m < 8 rows
// too (LAST: rows past m reread row m-1 instead of a zero-padded copy of those rows).
// Epilogue (alpha, beta, bias, ReLU) is applied to the accumulators before the one store;
// partial tiles use masked loads/stores so nothing outside the m x n tile is touched.
// GCC 12 flags _mm512_undefined_ps() inside its own AVX-512 intrinsics (_mm512_max_ps,
// _mm512_reduce_add_ps) as maybe-uninitialized (a false positive); before the includes, so that
// gemm_dot_body.h's instantiations are covered too.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>

#include "gemm_dot_body.h"
#include "gemm_internal.h"
#include "simd_vf.h"

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

// Packed panels stream from L2 (the kc x 32 B micro-panel alone fills L1): every k step
// prefetches the A and B data PF_AB steps ahead into L1 (8 to 32 measured alike; without it
// 2048^3 and 256x1024x1024 ran 3-5% slower).
constexpr int64_t PF_AB = 16;

// LAST: a tile of the last m < MR rows read in place (A_ROWS / A_COLS): rows past m reread row
// m-1, so nothing outside op(A) is touched; their sums are computed and dropped by the store.
template <int MR, int NV, int AM, bool MASKED, bool LAST>
FASTMLP_INLINE void accumulate_range(const TileArgs& t, __m512 (&acc)[MR][NV], const __mmask16 (&mk)[NV],
                                     int64_t p0, int64_t p1) {
    const int64_t ldb = t.ldb, ld = t.lda;
    const float* b = t.b + p0 * ldb;
    const float* a = AM == A_PACKED ? t.a + p0 * MR : AM == A_COLS ? t.a + p0 * ld : t.a;
    const float* ar[MR];
    int64_t off[MR];
    if (AM == A_ROWS)
        for (int i = 0; i < MR; ++i) ar[i] = t.a + (LAST && i >= t.m ? t.m - 1 : i) * ld;
    if (AM == A_COLS && LAST)
        for (int i = 0; i < MR; ++i) off[i] = i >= t.m ? t.m - 1 : i;
#pragma GCC unroll 2
    for (int64_t p = p0; p < p1; ++p) {
        __m512 bv[NV];
        for (int v = 0; v < NV; ++v)
            bv[v] = MASKED ? _mm512_maskz_loadu_ps(mk[v], b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            float s;
            if (AM == A_PACKED) s = a[i];
            else if (AM == A_COLS) s = LAST ? a[off[i]] : a[i];
            else s = ar[i][p];
            const __m512 av = _mm512_set1_ps(s);
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
        if (AM == A_PACKED) {
            _mm_prefetch(reinterpret_cast<const char*>(b + PF_AB * ldb), _MM_HINT_T0);
            if (NV > 1) _mm_prefetch(reinterpret_cast<const char*>(b + PF_AB * ldb + 16), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(a + PF_AB * MR), _MM_HINT_T0);
        }
        b += ldb;
        if (AM == A_PACKED) a += MR;
        else if (AM == A_COLS) a += ld;
    }
}

// The C tile is prefetched (for writing) PF_C steps before the end of the k loop: early enough
// to hide an L2/L3 miss, late enough not to be evicted again by the A and B streams.
constexpr int64_t PF_C = 24;

template <int MR, int NV, int AM, bool MASKED, bool LAST>
FASTMLP_INLINE void accumulate(const TileArgs& t, __m512 (&acc)[MR][NV], const __mmask16 (&mk)[NV]) {
    const int64_t k = t.k;
    const int64_t k_main = k > PF_C ? k - PF_C : 0;
    accumulate_range<MR, NV, AM, MASKED, LAST>(t, acc, mk, 0, k_main);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
        if (i < t.m) {
            __builtin_prefetch(t.c + i * t.ldc, 1, 3);
            if (NV > 1) __builtin_prefetch(t.c + i * t.ldc + 16 * NV - 1, 1, 3);
        }
    }
    accumulate_range<MR, NV, AM, MASKED, LAST>(t, acc, mk, k_main, k);
}

template <int MR, int NV, int AM, bool LAST = false>
void tile(const TileArgs& t) {
    __m512 acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    __mmask16 mk[NV];
    make_masks<NV>(t.n, mk);
    if (t.n == 16 * NV)
        accumulate<MR, NV, AM, false, LAST>(t, acc, mk);
    else
        accumulate<MR, NV, AM, true, LAST>(t, acc, mk);

    // Fused epilogue and store.
    const __m512 alpha = _mm512_set1_ps(t.alpha), beta = _mm512_set1_ps(t.beta);
    const __m512 zero = _mm512_setzero_ps();
    const bool use_beta = t.beta != 0.0f;
    __m512 bias[NV];
    for (int v = 0; v < NV; ++v)
        bias[v] = t.bias ? _mm512_maskz_loadu_ps(mk[v], t.bias + 16 * v) : zero;
    const int64_t m = t.m;
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
        if (i >= m) continue;
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

// ---- packing ------------------------------------------------------------------------------
constexpr int64_t PF_PACK = 8;

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? 0 : __mmask16((1u << n) - 1); }

// One panel of width w (w <= 16 or w == 32), rows <= w valid rows, k columns.
void pack_one(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t k, int w) {
    const int halves = w > 16 ? 2 : 1;
    const int hw = w > 16 ? 16 : w;  // lanes stored per half
    if (rs == 1) {
        __mmask16 ld[2], st[2];
        for (int h = 0; h < halves; ++h) {
            ld[h] = lanes(rows - 16 * h);
            st[h] = lanes(hw);
        }
        for (int64_t p = 0; p < k; ++p) {
            const float* s = src + p * ps;
            float* d = dst + p * w;
            for (int h = 0; h < halves; ++h)
                _mm512_mask_storeu_ps(d + 16 * h, st[h], _mm512_maskz_loadu_ps(ld[h], s + 16 * h));
        }
        return;
    }
    // ps == 1: rows contiguous along p; transpose 16 x 16 blocks.
    const __mmask16 st = lanes(hw);
    for (int h = 0; h < halves; ++h) {
        const int64_t r0 = 16 * h;
        const int64_t nrow = rows - r0 < 16 ? rows - r0 : 16;
        for (int64_t p0 = 0; p0 < k; p0 += 16) {
            const int64_t kk = k - p0 < 16 ? k - p0 : 16;
            const __mmask16 pm = lanes(kk);
            __m512 r[16];
            for (int i = 0; i < 16; ++i)
                r[i] = i < nrow ? _mm512_maskz_loadu_ps(pm, src + (r0 + i) * rs + p0) : _mm512_setzero_ps();
            simd_vf::transpose16x16(r);
            float* d = dst + p0 * w + r0;
            for (int j = 0; j < 16; ++j)
                if (j < kk) _mm512_mask_storeu_ps(d + j * w, st, r[j]);
        }
    }
}

void pack_avx512(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t k,
                 int w, int64_t panel_begin, int64_t panel_end) {
    if ((rs != 1 && ps != 1) || !(w <= 16 || w == 32)) {
        pack_panels(dst, src, rs, ps, rows, k, w, panel_begin, panel_end);
        return;
    }
    if (rs == 1 && w == 32) {
        // Copies: walk each source row across all panels (one sequential stream per row
        // instead of a 128-byte piece per row and panel).
        for (int64_t p = 0; p < k; ++p) {
            const float* s = src + p * ps;
            for (int64_t q = panel_begin; q < panel_end; ++q) {
                const int64_t r0 = q * w;
                float* d = dst + q * k * w + p * w;
                if (rows - r0 >= 32) {
                    _mm512_storeu_ps(d, _mm512_loadu_ps(s + r0));
                    _mm512_storeu_ps(d + 16, _mm512_loadu_ps(s + r0 + 16));
                } else {
                    _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(lanes(rows - r0), s + r0));
                    _mm512_storeu_ps(d + 16, _mm512_maskz_loadu_ps(lanes(rows - r0 - 16), s + r0 + 16));
                }
            }
        }
        return;
    }
    if (rs == 1) {
        // Narrow panels (the 12-row A panels of TN, op(A) = stored A^T): the same row walk. Per
        // panel, each p would read a 48-byte piece of a source row, so every cache line of the
        // block was fetched once per panel it straddles; here each row is read once, in order.
        // Each row piece sits on its own page (stride lda), where the hardware prefetchers do
        // not follow: fetch the row PF_PACK steps ahead by hand.
        const __mmask16 st = lanes(w);
        const int64_t lo = panel_begin * w, hi = std::min<int64_t>(rows, panel_end * w);
        for (int64_t p = 0; p < k; ++p) {
            const float* s = src + p * ps;
            float* d = dst + p * w;
            if (p + PF_PACK < k)
                for (int64_t r = lo; r < hi; r += 16)
                    _mm_prefetch(reinterpret_cast<const char*>(s + PF_PACK * ps + r), _MM_HINT_T0);
            for (int64_t q = panel_begin; q < panel_end; ++q) {
                const int64_t r0 = q * w;
                _mm512_mask_storeu_ps(d + q * k * w, st, _mm512_maskz_loadu_ps(lanes(rows - r0 < w ? rows - r0 : w), s + r0));
            }
        }
        return;
    }
    for (int64_t q = panel_begin; q < panel_end; ++q) {
        const int64_t r0 = q * w;
        const int64_t nr = rows - r0 < w ? rows - r0 : w;
        pack_one(dst + q * k * w, src + r0 * rs, rs, ps, nr, k, w);
    }
}

constexpr int MR = 12, NV = 2, SMR = 8;

// Cache blocks, measured on this Sapphire/Emerald Rapids class Xeon (L1d 48 KiB, L2 2 MiB per
// core, shared L3), single thread, best-of runs at 1024^3 / 2048^3 / 4096^3:
//   kc = 384 (K split into equal blocks <= 384): the 12 x 384 A micro-panel (18 KiB) and the
//        384 x 32 B micro-panel (48 KiB) both stream from L2; 256 and 512 measured within noise,
//        128-192 ~3% slower (more passes over C).
//   mc = 48: four A micro-panels per B micro-panel visit; 48-96 beat 192 by 3-6%.
//   nc = 4096: the B block (384 x 4096, 6 MiB) in L3, as BLIS places it; the op(A) block is
//        packed once per nc columns, so nc = 1024 packed A four times at 4096^3. With the
//        prefetching kernel 4096 measured ~1% faster than 1024 at 2048^3 and 4096^3 (MLP shapes
//        have N <= 1024 and are unaffected).
const KernelSet kSet = {
    "avx512",
    MR, 16 * NV,
    /*mc=*/48, /*kc=*/384, /*nc=*/4096,
    &tile<MR, NV, A_PACKED>,
    &pack_avx512,
    SMR,
    {16, 32},
    {{&tile<SMR, 1, A_PACKED>, &tile<SMR, 1, A_ROWS>, &tile<SMR, 1, A_COLS>},
     {&tile<SMR, 2, A_PACKED>, &tile<SMR, 2, A_ROWS>, &tile<SMR, 2, A_COLS>}},
    4, 4, &dot_any<4, 4>,
    {{nullptr, &tile<SMR, 1, A_ROWS, true>, &tile<SMR, 1, A_COLS, true>},
     {nullptr, &tile<SMR, 2, A_ROWS, true>, &tile<SMR, 2, A_COLS, true>}},
    0, nullptr, 0, nullptr,  // no narrow-path kernels
};

}  // namespace

const KernelSet& kernels_avx512() { return kSet; }

}  // namespace fastmlp::gemm_detail
