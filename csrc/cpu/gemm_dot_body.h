// The dot tiles of the sgemm dot path (C = A @ W^T with few rows), written once for the ISA the
// including kernel file is compiled for (gemm_kernel_avx2.cpp, gemm_kernel_avx512.cpp): one
// register of simd_vf.h's vf holds kVW consecutive p of a row. Internal linkage (an anonymous
// namespace): each per-ISA translation unit has its own copy.
#pragma once
#if !defined(__AVX2__) && !defined(__AVX512F__)
#error "gemm_dot_body.h is for the AVX2 and AVX-512 kernel files"
#endif
#include <immintrin.h>

#include <cstdint>

#include "gemm_internal.h"
#include "simd_vf.h"

namespace fastmlp::gemm_detail {
namespace {

using simd_vf::fmav;
using simd_vf::kVW;
using simd_vf::ldv;
using simd_vf::vf;

// Lanes [0, left) of p[0 .. kVW), zeros past them (nothing read there), 0 < left <= kVW.
inline vf ld_first(const float* p, int64_t left) {
#if defined(__AVX512F__)
    return (vf)_mm512_maskz_loadu_ps(__mmask16((1u << left) - 1), p);
#else
    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(left)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return (vf)_mm256_maskload_ps(p, mk);
#endif
}

// The sum of the lanes, in a fixed order.
inline float hsum(vf v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps((__m512)v);
#else
    const __m256 x = (__m256)v;
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
#endif
}

// alpha * acc (+ beta * c) (+ bias[j]) (relu) for one element of C.
inline float epi1(const TileArgs& t, float acc, const float* c, int64_t j) {
    float v = t.alpha * acc;
    if (t.beta != 0.0f) v += t.beta * *c;
    if (t.bias) v += t.bias[j];
    if (t.relu) v = v > 0.0f ? v : (v != v ? v : 0.0f);
    return v;
}

// C[i][j] = sum_p a[i*lda + p] * b[j*ldb + p]: kVW lanes of p per FMA, DMR x DNR accumulators,
// reduced at the end (the same order for every tile: the result does not depend on the tiling).
// Tile rows/columns past m/n reread the last one (results dropped).
template <int DMR, int DNR>
void dot_tile(const TileArgs& t) {
    const float* ar[DMR];
    const float* br[DNR];
#pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i) ar[i] = t.a + (i < t.m ? i : t.m - 1) * t.lda;
#pragma GCC unroll 16
    for (int j = 0; j < DNR; ++j) br[j] = t.b + (j < t.n ? j : t.n - 1) * t.ldb;
    vf acc[DMR][DNR];
#pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i)
#pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j) acc[i][j] = vf{};
    const int64_t k = t.k;
    for (int64_t p = 0; p < k; p += kVW) {
        const int64_t left = k - p;
        vf bv[DNR];
#pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j) bv[j] = left >= kVW ? ldv(br[j] + p) : ld_first(br[j] + p, left);
#pragma GCC unroll 16
        for (int i = 0; i < DMR; ++i) {
            const vf av = left >= kVW ? ldv(ar[i] + p) : ld_first(ar[i] + p, left);
#pragma GCC unroll 16
            for (int j = 0; j < DNR; ++j) acc[i][j] = fmav(av, bv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < DMR; ++i) {
        if (i >= t.m) continue;
        float* c = t.c + i * t.ldc;
#pragma GCC unroll 16
        for (int j = 0; j < DNR; ++j)
            if (j < t.n) c[j] = epi1(t, hsum(acc[i][j]), c + j, j);
    }
}

// One row of A: 1 x 2*DNR tiles (no redundant rows), else a DMR x DNR tile.
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

}  // namespace
}  // namespace fastmlp::gemm_detail
