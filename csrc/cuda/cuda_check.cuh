// Internal helpers of the CUDA kernel library: error checks that throw, launch checks, and
// stream-ordered scratch memory. Not part of the public API.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastmlp::cuda::detail {

inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("fastmlp CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// After a launch: reports a bad configuration at once (asynchronous faults surface later, at the
// next synchronising call, as CUDA errors do).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Device memory owned for the duration of one host call, ordered on `stream`: allocated with
// cudaMallocAsync and freed with cudaFreeAsync, so kernels queued before the free still see it.
class Scratch {
public:
    Scratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
        if (bytes) check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync (scratch)");
    }
    ~Scratch() {
        if (ptr_) cudaFreeAsync(ptr_, stream_);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class T>
    T* as() const { return static_cast<T*>(ptr_); }

private:
    void* ptr_ = nullptr;
    cudaStream_t stream_;
};

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace fastmlp::cuda::detail
