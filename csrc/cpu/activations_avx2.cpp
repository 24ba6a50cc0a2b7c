// AVX2 + FMA activation kernels (this file alone is compiled with -mavx2 -mfma; used only when
// the CPU supports them). The math is activations_simd.h, over 8-float vectors.
#include <immintrin.h>

#include "activations_internal.h"

namespace fastmlp::act_detail {

namespace {

struct V8 {
    using F = __m256;
    using M = __m256;
    static constexpr int W = 8;
    static inline F set1(float v) { return _mm256_set1_ps(v); }
    static inline F load(const float* p) { return _mm256_loadu_ps(p); }
    static inline void store(float* p, F v) { _mm256_storeu_ps(p, v); }
    static inline F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static inline F vmax(F a, F b) { return _mm256_max_ps(a, b); }
    static inline F vmin(F a, F b) { return _mm256_min_ps(a, b); }
    static inline F vabs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
    static inline F or_sign(F mag, F sgn) {
        return _mm256_or_ps(mag, _mm256_and_ps(_mm256_set1_ps(-0.0f), sgn));
    }
    static inline M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static inline M le(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
    static inline M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
    static inline M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
    static inline M isnan(F a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
    static inline M m_and(M a, M b) { return _mm256_and_ps(a, b); }
    static inline M m_or(M a, M b) { return _mm256_or_ps(a, b); }
    static inline F sel(M m, F a, F b) { return _mm256_blendv_ps(b, a, m); }
    static inline F round_even(F a) {
        return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    static inline F pow2(F n) {  // n integral in [-126, 127]
        const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
    }
    static inline float hsum(F v) {  // fixed order: lanes 0..7
        alignas(32) float l[8];
        _mm256_store_ps(l, v);
        return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
};

}  // namespace

#include "activations_simd.h"

const ActKernels& act_kernels_avx2() { return act_kernels_simd<V8>("avx2"); }

}  // namespace fastmlp::act_detail
