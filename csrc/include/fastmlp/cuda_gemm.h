// fastmlp CUDA GEMM: the same contract as gemm.h (read it), on device pointers, on a stream.
//
//   C = alpha * op(A) @ op(B) + beta * C,  then optionally  C += bias (per column),  C = relu(C)
//
// float32, row-major, explicit leading dimensions, int64 sizes. A, B, C and bias are device
// pointers (4-byte aligned; 16-byte aligned pointers with ld % 4 == 0 get vector loads, anything
// else falls back to scalar loads). beta == 0 never reads C. Every launch goes on `stream`
// (nullptr = the legacy default stream); nothing here synchronises the device.
// Deterministic: no float atomics; a split-K product sums its partial products in a fixed order
// in a second pass. The split depends only on the shape and the device's SM count.
// Kernels assume valid input (the bindings check it). CUDA errors throw std::runtime_error.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fastmlp/gemm.h"  // GemmEpilogue

namespace fastmlp::cuda {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, GemmEpilogue epi, cudaStream_t stream);

// Bytes of scratch sgemm needs for this shape on the current device (the split-K partial
// products), 0 when it needs none.
size_t sgemm_workspace_bytes(int64_t M, int64_t N, int64_t K);

// sgemm with caller-provided scratch: workspace holds workspace_bytes bytes (16-byte aligned);
// when that is less than sgemm_workspace_bytes(M, N, K) (or workspace is null) it allocates
// stream-ordered scratch as sgemm does. With enough workspace it allocates nothing.
void sgemm_with_workspace(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc, GemmEpilogue epi, void* workspace,
                          size_t workspace_bytes, cudaStream_t stream);

// The plain reference: one thread per output element, same contract. For tests.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, GemmEpilogue epi, cudaStream_t stream);

// Which kernel sgemm() would pick for this shape on the current device ("128x128", "64x64",
// "64x64 split-K 4", ...): for benchmarks and tests.
const char* sgemm_plan(int64_t M, int64_t N, int64_t K);

}  // namespace fastmlp::cuda
