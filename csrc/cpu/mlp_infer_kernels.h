// The per-ISA kernels of the inference forward (mlp_infer.h); internal, not part of the API.
//
// What the driver (mlp_infer.cpp) sees: the kernel table and one getter per ISA. The kernels
// themselves are in mlp_infer_kernels_body.h, compiled once per ISA by
// mlp_infer_kernels_{generic,avx2,avx512}.cpp, each with its own flags; the driver picks the set
// of the current ISA.
#pragma once
#include <cstdint>

namespace fastmlp::infer_detail {

constexpr int64_t kLanes = 16;  // the tiles path pads the samples of a chunk to a multiple of this

struct InferKernels {
    // rows: y (O) = W (O, I) @ x (I) + b (O, or null), then ReLU (NaN kept) if relu. Outputs are
    // split over threads when the product is large; each output's sum has a fixed order.
    void (*rows)(float* y, const float* W, const float* b, const float* x, int64_t O, int64_t I,
                 bool relu);
    // tiles: c (O, ldc) columns [0, Bp) = W (O, I) @ a (I, lda) columns [0, Bp), + bias (O, or
    // null), then ReLU if relu. Bp is a multiple of kLanes. Serial; with team, called by every
    // thread of an enclosing parallel region, which split the tiles (an orphaned `omp for`, whose
    // barrier ends the call).
    void (*tiles)(float* c, int64_t ldc, const float* W, const float* bias, const float* a,
                  int64_t lda, int64_t O, int64_t I, int64_t Bp, bool relu, bool team);
    // transpose: dst (cols, ldd) = src (rows, cols)^T (src rows lds apart): dst[j * ldd + i] =
    // src[i * lds + j] for i < rows, j < cols. Pure data movement (8 x 8 register blocks on
    // AVX2/AVX-512).
    void (*transpose)(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows,
                      int64_t cols);
};

const InferKernels& infer_kernels_generic();
#ifdef FASTMLP_HAVE_X86_KERNELS
const InferKernels& infer_kernels_avx2();
const InferKernels& infer_kernels_avx512();
#endif

}  // namespace fastmlp::infer_detail
