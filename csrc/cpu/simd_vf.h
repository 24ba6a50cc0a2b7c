// One SIMD register as a GCC/Clang vector, for the per-ISA register-tile kernels (the small
// trainer's mlp_train_small.h, the inference tiles of mlp_infer_kernels_body.h): an AVX-512 zmm,
// an AVX2 ymm, or 4 floats on the generic path, whichever ISA the including file is compiled for;
// and the pieces those kernels share: the broadcast-FMA register tile and the transposes (the
// in-register 16 x 16 (AVX-512; the AVX-512 sgemm's packing uses it too) and 8 x 8 (AVX2)
// blocks, and a whole-matrix transpose).
// Internal linkage (an anonymous namespace): each per-ISA translation unit has its own copy.
#pragma once
#pragma GCC diagnostic ignored "-Wpsabi"  // vf never crosses a non-inlined call

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cstdint>

namespace fastmlp::simd_vf {
namespace {

#if defined(__AVX512F__)
constexpr int kVW = 16;
#elif defined(__AVX2__)
constexpr int kVW = 8;
#else
constexpr int kVW = 4;
#endif
typedef float vf __attribute__((vector_size(kVW * 4)));

inline vf ldv(const float* p) {
    vf v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}
inline void stv(float* p, vf v) { __builtin_memcpy(p, &v, sizeof(v)); }
// One float in every lane (a broadcast load). Not `vf{} + s`: that is an add of +0, which the
// compiler must keep (it turns -0 into +0), a dependent vaddss + register broadcast per use in
// the tiles' inner loops.
inline vf bcv(float s) {
#if defined(__AVX512F__)
    return (vf)_mm512_set1_ps(s);
#elif defined(__AVX2__)
    return (vf)_mm256_set1_ps(s);
#else
    return vf{s, s, s, s};
#endif
}
// a * b + c: one fused rounding where the ISA has FMA (the generic path rounds twice).
inline vf fmav(vf a, vf b, vf c) {
#if defined(__AVX512F__)
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__AVX2__)
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

// The register tile of a broadcast product: acc[r][j] += sum over k < K, in order, of
// a[r * ars + k * aks] * b[k * ldb + j * kVW + lane]. One element of A broadcast per row and k,
// NC vectors of B loaded per k; the MR x NC accumulators stay in registers for the whole K loop
// (MR * NC plus NC must fit the register file). The callers' epilogues (bias, activation, stores
// or an optimizer update) read acc afterwards. Strides of 1 are folded by inlining.
template <int MR, int NC>
[[gnu::always_inline]] inline void bcast_fma_tile(vf (&acc)[MR][NC], const float* __restrict a,
                                                  int64_t ars, int64_t aks,
                                                  const float* __restrict b, int64_t ldb,
                                                  int64_t K) {
    for (int64_t k = 0; k < K; ++k) {
        vf bv[NC];
        for (int j = 0; j < NC; ++j) bv[j] = ldv(b + k * ldb + j * kVW);
        for (int r = 0; r < MR; ++r) {
            const vf av = bcv(a[r * ars + k * aks]);
            for (int j = 0; j < NC; ++j) acc[r][j] = fmav(av, bv[j], acc[r][j]);
        }
    }
}

#if defined(__AVX512F__)
// A 16 x 16 block in registers transposed: lane j of r[k] becomes lane k of r[j]. (r as a
// pointer, not an array reference as transpose8x8 takes: with the reference GCC's inliner takes
// other decisions across the small trainer's AVX-512 file.)
inline void transpose16x16(__m512 r[16]) {
    __m512 t[16];
    for (int k = 0; k < 8; ++k) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; ++k) {
        r[4 * k + 0] = _mm512_shuffle_ps(t[4 * k + 0], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k + 0], t[4 * k + 2], 0xEE);
        r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0x88);
        t[k + 4] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0xDD);
        t[k + 8] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0x88);
        t[k + 12] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0xDD);
    }
    for (int k = 0; k < 8; ++k) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xDD);
    }
}
#endif

#if defined(__AVX2__)
// An 8 x 8 block in registers transposed: lane j of r[k] becomes lane k of r[j].
[[gnu::always_inline]] inline void transpose8x8(__m256 (&r)[8]) {
    __m256 t[8], u[8];
    for (int k = 0; k < 4; ++k) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3
        u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], 0xEE);
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    // u[0..3]: rows 0-3, u[4..7]: rows 4-7; the 128-bit halves hold columns k and k + 4
    for (int k = 0; k < 4; ++k) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}
#endif

// dst (cols, ldd) = src (rows, cols)^T, src rows lds apart: dst[j * ldd + i] = src[i * lds + j]
// for i < rows, j < cols. Pure data movement: 8 x 8 register blocks where the ISA has AVX2 (the
// AVX-512 copies too), element by element for the edges and on the generic path.
inline void transpose(float* __restrict dst, int64_t ldd, const float* __restrict src,
                      int64_t lds, int64_t rows, int64_t cols) {
    int64_t i0 = 0;
#if defined(__AVX2__)
    for (; i0 + 8 <= rows; i0 += 8) {
        int64_t j0 = 0;
        for (; j0 + 8 <= cols; j0 += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + (i0 + k) * lds + j0);
            transpose8x8(r);
            for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + (j0 + k) * ldd + i0, r[k]);
        }
        for (; j0 < cols; ++j0)
            for (int64_t i = i0; i < i0 + 8; ++i) dst[j0 * ldd + i] = src[i * lds + j0];
    }
#endif
    for (; i0 < rows; ++i0)
        for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i0] = src[i0 * lds + j];
}

}  // namespace
}  // namespace fastmlp::simd_vf
