// Packing for the sgemm driver: op(A) and op(B) blocks copied into contiguous, zero-padded
// micro-panels, so the micro-kernel reads both operands at unit stride whatever the transposes.
// Compiled for the baseline ISA (SSE2 on x86-64, 4x4 register transposes); scalar elsewhere.
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "gemm_internal.h"

#if defined(__SSE2__)
#include <immintrin.h>
#define FASTMLP_PACK_SSE 1
#endif

namespace fastmlp::gemm_detail {

namespace {

// dst[p*ldd + r] = src[r*ls + p] for r < rows, p < k: 4 rows at a time through 4 x 4 register
// transposes where SSE2 is there, the rest element by element.
void transpose_rows(float* dst, int64_t ldd, const float* src, int64_t ls, int64_t rows, int64_t k) {
    int64_t r0 = 0;
#if FASTMLP_PACK_SSE
    for (; r0 + 4 <= rows; r0 += 4) {
        const float* s0 = src + (r0 + 0) * ls;
        const float* s1 = src + (r0 + 1) * ls;
        const float* s2 = src + (r0 + 2) * ls;
        const float* s3 = src + (r0 + 3) * ls;
        int64_t p = 0;
        for (; p + 4 <= k; p += 4) {
            __m128 x0 = _mm_loadu_ps(s0 + p), x1 = _mm_loadu_ps(s1 + p);
            __m128 x2 = _mm_loadu_ps(s2 + p), x3 = _mm_loadu_ps(s3 + p);
            _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
            float* d = dst + p * ldd + r0;
            _mm_storeu_ps(d, x0);
            _mm_storeu_ps(d + ldd, x1);
            _mm_storeu_ps(d + 2 * ldd, x2);
            _mm_storeu_ps(d + 3 * ldd, x3);
        }
        for (; p < k; ++p) {
            float* d = dst + p * ldd + r0;
            d[0] = s0[p];
            d[1] = s1[p];
            d[2] = s2[p];
            d[3] = s3[p];
        }
    }
#endif
    for (; r0 < rows; ++r0) {
        const float* s = src + r0 * ls;
        for (int64_t p = 0; p < k; ++p) dst[p * ldd + r0] = s[p];
    }
}

// One panel: rows [0, rows) (rows <= w) of X, k columns, into dst (k groups of w floats).
void pack_one(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t k,
              int w) {
    if (rs == 1) {
        // Rows contiguous at each p: straight copies.
        for (int64_t p = 0; p < k; ++p) {
            const float* s = src + p * ps;
            float* d = dst + p * w;
            int64_t r = 0;
            for (; r < rows; ++r) d[r] = s[r];
            for (; r < w; ++r) d[r] = 0.0f;
        }
        return;
    }
    if (ps == 1) {
        // p contiguous in every row: transpose.
        transpose_rows(dst, w, src, rs, rows, k);
        if (rows < w)
            for (int64_t p = 0; p < k; ++p)
                for (int64_t r = rows; r < w; ++r) dst[p * w + r] = 0.0f;
        return;
    }
    for (int64_t p = 0; p < k; ++p)
        for (int64_t r = 0; r < w; ++r) dst[p * w + r] = r < rows ? src[r * rs + p * ps] : 0.0f;
}

}  // namespace

void pack_panels(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t k,
                 int w, int64_t panel_begin, int64_t panel_end) {
    for (int64_t q = panel_begin; q < panel_end; ++q) {
        const int64_t r0 = q * w;
        const int64_t nr = rows - r0 < w ? (rows > r0 ? rows - r0 : 0) : w;
        pack_one(dst + q * k * w, src + r0 * rs, rs, ps, nr, k, w);
    }
}

void pack_transposed(float* dst, int64_t ldd, const float* src, int64_t ldb, int64_t k, int64_t n) {
    // dst[p*ldd + j] = src[j*ldb + p]: the n source rows j transposed.
    transpose_rows(dst, ldd, src, ldb, n, k);
}

// ---- per-thread scratch ----------------------------------------------------------------------
namespace {
struct Scratch {
    float* ptr[SCRATCH_SLOTS] = {};
    size_t cap[SCRATCH_SLOTS] = {};
    ~Scratch() {
        for (float* p : ptr) std::free(p);
    }
};
thread_local Scratch t_scratch;
}  // namespace

float* scratch(ScratchSlot slot, size_t floats) {
    Scratch& s = t_scratch;
    if (floats > s.cap[slot]) {
        // Grow by at least 1.5x so a sequence of growing calls allocates O(log) times.
        size_t want = floats + floats / 2 + 64;
        // Large buffers on 2 MiB boundaries, marked for transparent huge pages: the packed
        // B block (~1.5 MiB) then needs one TLB entry instead of hundreds.
        const size_t align = want * sizeof(float) >= (size_t(1) << 20) ? (size_t(2) << 20) : 64;
        size_t bytes = (want * sizeof(float) + align - 1) / align * align;
        void* p = std::aligned_alloc(align, bytes);
        if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (align > 64) madvise(p, bytes, MADV_HUGEPAGE);
#endif
        std::free(s.ptr[slot]);
        s.ptr[slot] = static_cast<float*>(p);
        s.cap[slot] = bytes / sizeof(float);
    }
    return s.ptr[slot];
}

}  // namespace fastmlp::gemm_detail
