// AVX2 + FMA sgemm micro-kernels (this file alone is compiled with -mavx2 -mfma; chosen at run
// time only when the CPU and OS support them).
//
// Packed path: 6 x 16 register tile = 12 ymm accumulators + 2 ymm of B + 1 broadcast of A (15 of
// 16 registers). Per k step: 2 loads of B, 6 broadcasts, 12 FMAs.
// Packing: its own routine (pack_avx2) for the 6-row A and 16-column B micro-panels.
// Small path: 6 x 8 (narrow, N <= 8) and 6 x 16 tiles reading A in place.
// Narrow path (N <= 16, not a multiple of 8): 2-row dot tiles (NN/NT) and 16-row column tiles
// (TN/TT) over all N columns in groups of <= 6, no padding lanes.
// Epilogue (alpha, beta, bias, ReLU) is applied to the accumulators before the one store;
// partial tiles use masked loads/stores so nothing outside the m x n tile is touched.
#include <immintrin.h>

#include "gemm_dot_body.h"
#include "gemm_internal.h"

namespace fastmlp::gemm_detail {

namespace {

// Prefetch distance of the packed A micro-panel in the packed loop (bytes, 16 k steps; 0, 256,
// 384 and 768 measured alike on Zen 1: the hardware prefetcher mostly keeps up). The B
// micro-panel is not prefetched: it stays in L1 across the MC / MR tiles that use it, and a
// software prefetch of B 256, 512, 1024 or 2048 bytes ahead (4 lines per 4 k steps) measured
// 72.7-73.3 GFLOP/s against 73.0 without (2 threads, 2048^3 NN, interleaved medians).
constexpr int PF_A = 384;

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

// Fused epilogue and store of an MR x (8*NV) register tile (t.m rows, t.n columns).
template <int MR, int NV>
FASTMLP_INLINE void store_tile(const TileArgs& t, __m256 (&acc)[MR][NV]) {
    __m256i mk[NV];
    make_masks<NV>(t.n, mk);
    const __m256 alpha = _mm256_set1_ps(t.alpha), beta = _mm256_set1_ps(t.beta);
    const __m256 zero = _mm256_setzero_ps();
    const bool use_beta = t.beta != 0.0f;
    __m256 bias[NV];
    for (int v = 0; v < NV; ++v)
        bias[v] = t.bias ? _mm256_maskload_ps(t.bias + 8 * v, mk[v]) : zero;
    const int64_t m = t.m;
    // Full-width tiles use plain loads and stores: a masked store (vmaskmovps) is microcoded on
    // AMD Zen (~12 cycles each, 12 per tile per K block: ~3% of a 6 x 16 x 384 tile).
    if (t.n == 8 * NV) {
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            if (i >= m) continue;
            float* c = t.c + i * t.ldc;
            for (int v = 0; v < NV; ++v) {
                __m256 r = _mm256_mul_ps(alpha, acc[i][v]);
                if (use_beta) r = _mm256_fmadd_ps(beta, _mm256_loadu_ps(c + 8 * v), r);
                if (t.bias) r = _mm256_add_ps(r, bias[v]);
                if (t.relu) r = _mm256_max_ps(zero, r);
                _mm256_storeu_ps(c + 8 * v, r);
            }
        }
        return;
    }
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

// ---- packed tile -----------------------------------------------------------------------------
// The packed path's 6 x 16 tile (B's micro-panel stride NR = 16 floats, A's MR = 6; packed B is
// zero-padded, so full-width loads are always in bounds), its k loop in inline assembly: GCC,
// left to schedule the unrolled intrinsics, hoists the broadcasts, runs out of the 16 ymm
// registers and spills accumulators (~10% slower). One FMA per k step per element, p in order
// (bitwise equal to the 4-steps-per-asm-block loop it replaced). The whole k loop is one asm
// block: 8 k steps per iteration (one pointer update, counter decrement and branch per 96 FMAs),
// the A prefetch spread over the iteration (one line per 2.67 k steps, as A advances 24 bytes a
// step), and an epilogue fast path for the common full tile with alpha 1 and no bias / ReLU
// (beta 0: 12 stores; beta 1: 12 adds and 12 stores), with no per-row branches.
// Measured on the Zen 1 test machine (FMA peak 39.6 GFLOP/s, 1 thread; OpenBLAS 0.3.31 Haswell
// runs sgemm_kernel_8x4_haswell_2.c there: a 16 x 6 tile, the same 2 loads + 6 broadcasts per
// 12 FMAs as this 6 x 16, 8 k steps per loop, vbroadcastss from memory, C = alpha * acc + C with
// a memory-operand FMA):
//  * the macro-kernel alone (72 x 384 A block in L2, 384 x 1024 B block, 72 x 1024 C, 15
//    interleaved rounds, medians): the 4-step loop it replaced 38.8 / 38.4 GFLOP/s (beta 0 /
//    beta 1), this one 39.1 / 38.9 (98-99% of peak); with ldc 2048: 38.0 / 37.8 -> 38.4 / 38.4.
//  * the k loop alone on L1-resident panels: this loop reaches 37.9-39.6 GFLOP/s; the same with
//    BLIS's order (two broadcast registers, the next B loaded under the last FMAs) 38.3-38.9,
//    OpenBLAS's 8 x 12 form (vmovsldup / vmovshdup of A, vbroadcastsd of B pairs) 37.5-39.4,
//    4 x 24 (3 B loads, 4 broadcasts per 12 FMAs; needs kc 256 for an L1 B panel) 38.1-39.2:
//    none clearly ahead, so the 6 x 16 shape and its packing stay.
//  * the C tile prefetched with prefetchw instead of prefetcht0, or 6 iterations (48 k steps)
//    before the end instead of 3: 2048^3 at 1 and 2 threads within noise (0.983-1.027 of numpy
//    against 0.994-1.006), not kept.
#define FASTMLP_K6x16(k)                                                                     \
    "vmovups " #k "*64(%[b]), %%ymm12\n\t"                                                   \
    "vmovups " #k "*64+32(%[b]), %%ymm13\n\t"                                                \
    "vbroadcastss " #k "*24(%[a]), %%ymm14\n\t"                                              \
    "vfmadd231ps %%ymm12, %%ymm14, %[c00]\n\t"                                               \
    "vfmadd231ps %%ymm13, %%ymm14, %[c01]\n\t"                                               \
    "vbroadcastss " #k "*24+4(%[a]), %%ymm14\n\t"                                            \
    "vfmadd231ps %%ymm12, %%ymm14, %[c10]\n\t"                                               \
    "vfmadd231ps %%ymm13, %%ymm14, %[c11]\n\t"                                               \
    "vbroadcastss " #k "*24+8(%[a]), %%ymm14\n\t"                                            \
    "vfmadd231ps %%ymm12, %%ymm14, %[c20]\n\t"                                               \
    "vfmadd231ps %%ymm13, %%ymm14, %[c21]\n\t"                                               \
    "vbroadcastss " #k "*24+12(%[a]), %%ymm14\n\t"                                           \
    "vfmadd231ps %%ymm12, %%ymm14, %[c30]\n\t"                                               \
    "vfmadd231ps %%ymm13, %%ymm14, %[c31]\n\t"                                               \
    "vbroadcastss " #k "*24+16(%[a]), %%ymm14\n\t"                                           \
    "vfmadd231ps %%ymm12, %%ymm14, %[c40]\n\t"                                               \
    "vfmadd231ps %%ymm13, %%ymm14, %[c41]\n\t"                                               \
    "vbroadcastss " #k "*24+20(%[a]), %%ymm14\n\t"                                           \
    "vfmadd231ps %%ymm12, %%ymm14, %[c50]\n\t"                                               \
    "vfmadd231ps %%ymm13, %%ymm14, %[c51]\n\t"

// iters (> 0) iterations of 8 k steps; a and b advanced past them.
static_assert(PF_A == 384, "packed_iters8 prefetches at 384, 448 and 512 bytes: PF_A there");
FASTMLP_INLINE void packed_iters8(const float*& a, const float*& b, int64_t iters,
                                  __m256 (&acc)[6][2]) {
    __asm__(
        "1:\n\t"
        "prefetcht0 384(%[a])\n\t"
        FASTMLP_K6x16(0) FASTMLP_K6x16(1)
        "prefetcht0 448(%[a])\n\t"
        FASTMLP_K6x16(2) FASTMLP_K6x16(3) FASTMLP_K6x16(4)
        "prefetcht0 512(%[a])\n\t"
        FASTMLP_K6x16(5) FASTMLP_K6x16(6) FASTMLP_K6x16(7)
        "addq $192, %[a]\n\t"
        "addq $512, %[b]\n\t"
        "decq %[it]\n\t"
        "jnz 1b\n\t"
        : [c00] "+x"(acc[0][0]), [c01] "+x"(acc[0][1]), [c10] "+x"(acc[1][0]), [c11] "+x"(acc[1][1]), [c20] "+x"(acc[2][0]), [c21] "+x"(acc[2][1]), [c30] "+x"(acc[3][0]), [c31] "+x"(acc[3][1]), [c40] "+x"(acc[4][0]), [c41] "+x"(acc[4][1]), [c50] "+x"(acc[5][0]), [c51] "+x"(acc[5][1]),
          [a] "+r"(a), [b] "+r"(b), [it] "+r"(iters)
        :
        : "xmm12", "xmm13", "xmm14", "cc", "memory");
}
#undef FASTMLP_K6x16

// Iterations of 8 k steps left after the C tile is prefetched (24 k steps), not at the loop's
// start: over a kc = 384 loop the A and B streams (33 KiB) pass through Zen's 32 KiB L1 and evict
// lines fetched that early (as the AVX-512 kernel's PF_C).
constexpr int64_t PF_C8 = 3;

void packed_tile(const TileArgs& t) {
    __m256 acc[6][2];
#pragma GCC unroll 32
    for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const float* a = t.a;
    const float* b = t.b;
    const int64_t k = t.k, iters = k / 8;
    const int64_t early = iters > PF_C8 ? iters - PF_C8 : 0;
    if (early > 0) packed_iters8(a, b, early, acc);
    for (int i = 0; i < 6; ++i) {
        if (i < t.m) {
            _mm_prefetch(reinterpret_cast<const char*>(t.c + i * t.ldc), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(t.c + i * t.ldc + 15), _MM_HINT_T0);
        }
    }
    if (iters > early) packed_iters8(a, b, iters - early, acc);
    for (int64_t p = iters * 8; p < k; ++p) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i) {
            const __m256 av = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
        a += 6;
        b += 16;
    }
    if (t.m == 6 && t.n == 16 && t.alpha == 1.0f && !t.bias && !t.relu &&
        (t.beta == 0.0f || t.beta == 1.0f)) {
        float* c = t.c;
        const int64_t ldc = t.ldc;
        if (t.beta == 0.0f) {
#pragma GCC unroll 6
            for (int i = 0; i < 6; ++i) {
                _mm256_storeu_ps(c + i * ldc, acc[i][0]);
                _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
            }
        } else {
            // 1 * acc = acc and fma(1, c, acc) = c + acc: the general path's values exactly
#pragma GCC unroll 6
            for (int i = 0; i < 6; ++i) {
                _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(acc[i][0], _mm256_loadu_ps(c + i * ldc)));
                _mm256_storeu_ps(c + i * ldc + 8,
                                 _mm256_add_ps(acc[i][1], _mm256_loadu_ps(c + i * ldc + 8)));
            }
        }
        return;
    }
    store_tile<6, 2>(t, acc);
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

    store_tile<MR, NV>(t, acc);
}

// ---- narrow path (N <= 16, not a multiple of 8) ----------------------------------------------
// Columns [j0, j0 + G) of a narrow dot tile (NDMR rows of A, G rows of op(B)^T): per 8 lanes of
// p, NDMR + G loads for NDMR * G FMAs (2 x 5: 7 loads, 10 FMAs; 13 registers).
template <int NDMR, int G>
FASTMLP_INLINE void ndot_group(const TileArgs& t, const float* const (&ar)[NDMR], int64_t j0) {
    const float* br[G];
#pragma GCC unroll 8
    for (int j = 0; j < G; ++j) br[j] = t.b + (j0 + j) * t.ldb;
    __m256 acc[NDMR][G];
#pragma GCC unroll 8
    for (int i = 0; i < NDMR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) acc[i][j] = _mm256_setzero_ps();
    const int64_t k = t.k;
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 av[NDMR];
#pragma GCC unroll 8
        for (int i = 0; i < NDMR; ++i) av[i] = _mm256_loadu_ps(ar[i] + p);
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) {
            __m256 bv = _mm256_loadu_ps(br[j] + p);
            // One load per B vector: GCC would fold it into each of the NDMR FMAs (a load each).
            __asm__("" : "+x"(bv));
#pragma GCC unroll 8
            for (int i = 0; i < NDMR; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
    if (p < k) {
        const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(k - p)),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 av[NDMR];
#pragma GCC unroll 8
        for (int i = 0; i < NDMR; ++i) av[i] = _mm256_maskload_ps(ar[i] + p, mk);
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) {
            const __m256 bv = _mm256_maskload_ps(br[j] + p, mk);
#pragma GCC unroll 8
            for (int i = 0; i < NDMR; ++i) acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NDMR; ++i) {
        if (i >= t.m) continue;
        float* c = t.c + i * t.ldc + j0;
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) c[j] = epi1(t, hsum(acc[i][j]), c + j, j0 + j);
    }
}

// A narrow dot tile: t.m <= NDMR rows, all t.n <= 16 columns, in ceil(n/6) groups of balanced
// width (10: 5 + 5, 16: 6 + 5 + 5).
template <int NDMR>
void narrow_dot(const TileArgs& t) {
    const float* ar[NDMR];
#pragma GCC unroll 8
    for (int i = 0; i < NDMR; ++i) ar[i] = t.a + (i < t.m ? i : t.m - 1) * t.lda;
    const int64_t n = t.n;
    const int64_t g = (n + 5) / 6, base = n / g, rem = n % g;
    int64_t j0 = 0;
    for (int64_t q = 0; q < g; ++q) {
        const int64_t w = base + (q < rem ? 1 : 0);
        switch (w) {
            case 1: ndot_group<NDMR, 1>(t, ar, j0); break;
            case 2: ndot_group<NDMR, 2>(t, ar, j0); break;
            case 3: ndot_group<NDMR, 3>(t, ar, j0); break;
            case 4: ndot_group<NDMR, 4>(t, ar, j0); break;
            case 5: ndot_group<NDMR, 5>(t, ar, j0); break;
            default: ndot_group<NDMR, 6>(t, ar, j0); break;
        }
        j0 += w;
    }
}

// Columns [j0, j0 + G) of a narrow column tile: 16 rows of C as two vectors along i (a(i,p) =
// a[p*lda + i]), G broadcasts of b(p, j) per k step: 2 + G loads for 2 * G FMAs, p in order.
template <int G, bool MASKED>
FASTMLP_INLINE void ncols_group(const TileArgs& t, int64_t j0, const __m256i (&mk)[2]) {
    __m256 acc[2][G];
#pragma GCC unroll 8
    for (int j = 0; j < G; ++j) acc[0][j] = acc[1][j] = _mm256_setzero_ps();
    const float* a = t.a;
    const float* b = t.b + j0;
    const int64_t lda = t.lda, ldb = t.ldb, k = t.k;
#pragma GCC unroll 2
    for (int64_t p = 0; p < k; ++p) {
        const __m256 a0 = MASKED ? _mm256_maskload_ps(a, mk[0]) : _mm256_loadu_ps(a);
        const __m256 a1 = MASKED ? _mm256_maskload_ps(a + 8, mk[1]) : _mm256_loadu_ps(a + 8);
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) {
            const __m256 bv = _mm256_broadcast_ss(b + j);
            acc[0][j] = _mm256_fmadd_ps(a0, bv, acc[0][j]);
            acc[1][j] = _mm256_fmadd_ps(a1, bv, acc[1][j]);
        }
        a += lda;
        b += ldb;
    }
    alignas(32) float tmp[G][16];
#pragma GCC unroll 8
    for (int j = 0; j < G; ++j) {
        _mm256_store_ps(tmp[j], acc[0][j]);
        _mm256_store_ps(tmp[j] + 8, acc[1][j]);
    }
    const int64_t m = t.m;
    for (int64_t i = 0; i < m; ++i) {
        float* c = t.c + i * t.ldc + j0;
#pragma GCC unroll 8
        for (int j = 0; j < G; ++j) c[j] = epi1(t, tmp[j][i], c + j, j0 + j);
    }
}

template <bool MASKED>
void narrow_cols_any(const TileArgs& t, const __m256i (&mk)[2]) {
    const int64_t n = t.n;
    const int64_t g = (n + 5) / 6, base = n / g, rem = n % g;
    int64_t j0 = 0;
    for (int64_t q = 0; q < g; ++q) {
        const int64_t w = base + (q < rem ? 1 : 0);
        switch (w) {
            case 1: ncols_group<1, MASKED>(t, j0, mk); break;
            case 2: ncols_group<2, MASKED>(t, j0, mk); break;
            case 3: ncols_group<3, MASKED>(t, j0, mk); break;
            case 4: ncols_group<4, MASKED>(t, j0, mk); break;
            case 5: ncols_group<5, MASKED>(t, j0, mk); break;
            default: ncols_group<6, MASKED>(t, j0, mk); break;
        }
        j0 += w;
    }
}

// A narrow column tile: t.m <= 16 rows (masked loads past m, nothing read there), all t.n <= 16
// columns.
void narrow_cols(const TileArgs& t) {
    __m256i mk[2];
    make_masks<2>(t.m, mk);
    if (t.m == 16)
        narrow_cols_any<false>(t, mk);
    else
        narrow_cols_any<true>(t, mk);
}

// ---- packing ------------------------------------------------------------------------------
// The 6-row A and 16-column B micro-panels of the packed path (other widths: pack_panels).
//  * rs == 1 (copies: B of NN/TN, A of TN): each source row (one p) is walked once across all the
//    panels, in order, instead of a w-float piece of every row per panel; rows lie ldx apart
//    (pages), where the hardware prefetchers do not follow, so the row PF_PACK steps ahead is
//    fetched by hand.
//  * ps == 1 (transposes: A of NN/NT, B of NT): 8 x 8 register transposes of 8 p steps of the
//    panel's rows (6 rows and 2 zero rows for A).
// A partial last panel (rows < w, zero-filled) goes to pack_panels.
constexpr int64_t PF_PACK = 8;

// 6 floats (the first 6 lanes of v) at d: exactly, nothing past d + 6 written.
FASTMLP_INLINE void store6(float* d, __m256 v) {
    _mm_storeu_ps(d, _mm256_castps256_ps128(v));
    _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(v, 1));
}

// One full panel (w rows, w = 6 or 16) of a transposed source (ps == 1): dst[p*w + r] =
// src[r*rs + p].
template <int W>
void pack_transpose_panel(float* dst, const float* src, int64_t rs, int64_t k) {
    constexpr int H = W > 8 ? 2 : 1;  // 8-row halves
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
#pragma GCC unroll 2
        for (int h = 0; h < H; ++h) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i)
                r[i] = (8 * h + i < W) ? _mm256_loadu_ps(src + (8 * h + i) * rs + p)
                                       : _mm256_setzero_ps();
            simd_vf::transpose8x8(r);
            float* d = dst + p * W + 8 * h;
            if constexpr (W == 16) {
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + j * W, r[j]);
            } else {
                // 8-float stores 6 apart, in order: each one's 2 extra lanes are overwritten by
                // the next; the last is stored exactly (the panel may end there).
#pragma GCC unroll 8
                for (int j = 0; j < 7; ++j) _mm256_storeu_ps(d + j * W, r[j]);
                store6(d + 7 * W, r[7]);
            }
        }
    }
    for (; p < k; ++p)
        for (int i = 0; i < W; ++i) dst[p * W + i] = src[i * rs + p];
}

void pack_avx2(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t k,
               int w, int64_t panel_begin, int64_t panel_end) {
    if ((rs != 1 && ps != 1) || (w != 6 && w != 16)) {
        pack_panels(dst, src, rs, ps, rows, k, w, panel_begin, panel_end);
        return;
    }
    // full panels [panel_begin, full_end); a partial last one (rows < w) by pack_panels
    const int64_t full_end = panel_end < rows / w ? panel_end : rows / w;
    if (full_end > panel_begin) {
        if (rs == 1) {
            const int64_t lo = panel_begin * w, hi = full_end * w;
            for (int64_t p = 0; p < k; ++p) {
                const float* s = src + p * ps;
                if (p + PF_PACK < k)
                    for (int64_t r = lo; r < hi; r += 16)
                        _mm_prefetch(reinterpret_cast<const char*>(s + PF_PACK * ps + r), _MM_HINT_T0);
                float* d = dst + p * w;
                if (w == 16) {
                    for (int64_t q = panel_begin; q < full_end; ++q) {
                        _mm256_storeu_ps(d + q * k * 16, _mm256_loadu_ps(s + q * 16));
                        _mm256_storeu_ps(d + q * k * 16 + 8, _mm256_loadu_ps(s + q * 16 + 8));
                    }
                } else {
                    for (int64_t q = panel_begin; q < full_end; ++q) {
                        const float* sq = s + q * 6;
                        float* dq = d + q * k * 6;
                        _mm_storeu_ps(dq, _mm_loadu_ps(sq));
                        // floats 4-5 as one unaligned 64-bit load and store (the epi64 forms
                        // access through an unaligned type; a double* cast is misaligned UB)
                        _mm_storel_epi64(reinterpret_cast<__m128i*>(dq + 4),
                                         _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sq + 4)));
                    }
                }
            }
        } else {
            for (int64_t q = panel_begin; q < full_end; ++q) {
                if (w == 16)
                    pack_transpose_panel<16>(dst + q * k * 16, src + q * 16 * rs, rs, k);
                else
                    pack_transpose_panel<6>(dst + q * k * 6, src + q * 6 * rs, rs, k);
            }
        }
    }
    const int64_t rest = full_end > panel_begin ? full_end : panel_begin;
    if (rest < panel_end) pack_panels(dst, src, rs, ps, rows, k, w, rest, panel_end);
}

constexpr int MR = 6, NV = 2, SMR = 6;

// Cache blocks (measured single thread at 1024^3 on this machine: ~81 GFLOP/s, ~90% of the
// AVX2 FMA peak): kc = 384 (the 384 x 16 B micro-panel, 24 KiB, in L1), mc = 72 (beat 144 by
// ~8%), nc = 1024 (B block 1.5 MiB in L3; Zen 1's L2 is 512 KiB). kc 256 / mc 144 / nc 2048-4080
// (BLIS's Zen choice and near it) measured within noise of these on the shared machine.
// At 2 threads (2048^3 NN, 8 calls each interleaved in one process, medians, GFLOP/s): these
// 72.6; mc 96: 72.3, mc 144: 72.1, kc 512: 72.4, kc 320 / mc 120: 71.9, nc 512: 71.8,
// nc 2048: 71.2, kc 256 / mc 144: 70.9 - kept (the blocking must not depend on the thread
// count anyway: kc fixes every element's sequence of FMAs).
const KernelSet kSet = {
    "avx2",
    MR, 8 * NV,
    /*mc=*/72, /*kc=*/384, /*nc=*/1024,
    &packed_tile,
    &pack_avx2,
    SMR,
    {8, 16},
    {{&tile<SMR, 1, A_PACKED>, &tile<SMR, 1, A_ROWS>, &tile<SMR, 1, A_COLS>},
     {&tile<SMR, 2, A_PACKED>, &tile<SMR, 2, A_ROWS>, &tile<SMR, 2, A_COLS>}},
    2, 4, &dot_any<2, 4>,
    {},  // no last-rows kernels: the driver packs the last rows
    2, &narrow_dot<2>,
    16, &narrow_cols,
};

}  // namespace

const KernelSet& kernels_avx2() { return kSet; }

}  // namespace fastmlp::gemm_detail
