// One SIMD register as a GCC/Clang vector, for the per-ISA register-tile kernels (the small
// trainer's mlp_train_small.h, the inference tiles of mlp_infer_kernels.h): an AVX-512 zmm, an
// AVX2 ymm, or 4 floats on the generic path, whichever ISA the including file is compiled for.
// Internal linkage (an anonymous namespace): each per-ISA translation unit has its own copy.
#pragma once
#pragma GCC diagnostic ignored "-Wpsabi"  // vf never crosses a non-inlined call

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

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

}  // namespace
}  // namespace fastmlp::simd_vf
