// The gemm and memory half of the GPU trainers' `Ops` backends (mlp_train.cu, mlp_fit.cu: the
// Ops of mlp_train_impl.h / mlp_fit_impl.h), shared by both: sgemm with the caller's split-K
// workspace, one scratch allocation per call, asynchronous copies and a zero fill on the stream,
// and the one synchronise at the end. Host code only (tests/cuda/emu_backend.h is its emulated
// twin).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "fastmlp/cuda_gemm.h"

namespace fastmlp::cuda::detail {

class DeviceMemory {
public:
    DeviceMemory(size_t bytes, cudaStream_t stream) : s_(bytes, stream) {}
    void* get() const { return s_.as<void>(); }

private:
    Scratch s_;
};

struct DeviceGemmMemoryOps {
    cudaStream_t stream;
    const char* sync_what;  // names the trainer in the synchronise's error message

    size_t gemm_workspace_bytes(int64_t M, int64_t N, int64_t K) const {
        return sgemm_workspace_bytes(M, N, K);
    }
    void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
              GemmEpilogue epi, void* ws, size_t ws_bytes) const {
        sgemm_with_workspace(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi, ws,
                             ws_bytes, stream);
    }
    DeviceMemory allocate(size_t bytes) const { return DeviceMemory(bytes, stream); }
    void to_device(void* dst, const void* src, size_t bytes) const {
        if (bytes)
            check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream),
                  "cudaMemcpyAsync (to the device)");
    }
    void to_host(void* dst, const void* src, size_t bytes) const {
        if (bytes)
            check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream),
                  "cudaMemcpyAsync (to the host)");
    }
    void fill_zero(void* dst, size_t bytes) const {
        if (bytes) check(cudaMemsetAsync(dst, 0, bytes, stream), "cudaMemsetAsync");
    }
    void finish() const { check(cudaStreamSynchronize(stream), sync_what); }
};

}  // namespace fastmlp::cuda::detail
