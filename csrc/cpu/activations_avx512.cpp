// AVX-512 activation kernels (this file alone is compiled with -mavx512f (and friends); used only when
// the CPU supports them). The math is activations_simd.h, over 16-float vectors.
// GCC 12's own AVX-512 headers trip -Wmaybe-uninitialized: the masked intrinsics
// (_mm512_cvtps_epi32, _mm512_roundscale_ps, _mm512_slli_epi32) start from _mm512_undefined_*(),
// whose "__Y" it reports 233 times per build. A false positive of the system header, not of
// this file's code: silenced here only (the other kernels keep the warning on).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "activations_internal.h"

namespace fastmlp::act_detail {

namespace {

struct V16 {
    using F = __m512;
    using M = __mmask16;
    static constexpr int W = 16;
    static inline F set1(float v) { return _mm512_set1_ps(v); }
    static inline F load(const float* p) { return _mm512_loadu_ps(p); }
    static inline void store(float* p, F v) { _mm512_storeu_ps(p, v); }
    static inline F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static inline F vmax(F a, F b) { return _mm512_max_ps(a, b); }
    static inline F vmin(F a, F b) { return _mm512_min_ps(a, b); }
    static inline F vabs(F a) { return _mm512_abs_ps(a); }
    static inline F or_sign(F mag, F sgn) {
        const __m512i sm = _mm512_set1_epi32(int(0x80000000u));
        const __m512i s = _mm512_and_si512(sm, _mm512_castps_si512(sgn));
        return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), s));
    }
    static inline M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
    static inline M le(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
    static inline M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static inline M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
    static inline M isnan(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
    static inline M m_and(M a, M b) { return M(a & b); }
    static inline M m_or(M a, M b) { return M(a | b); }
    static inline F sel(M m, F a, F b) { return _mm512_mask_blend_ps(m, b, a); }
    static inline F round_even(F a) {
        return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    static inline F pow2(F n) {  // n integral in [-126, 127]
        const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
    }
    static inline float hsum(F v) {  // fixed order
        alignas(64) float l[16];
        _mm512_store_ps(l, v);
        float s[8];
        for (int i = 0; i < 8; ++i) s[i] = l[i] + l[i + 8];
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
};

}  // namespace

#include "activations_simd.h"

const ActKernels& act_kernels_avx512() { return act_kernels_simd<V16>("avx512"); }

}  // namespace fastmlp::act_detail
