// CUDA device queries.
#include <cuda_runtime.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.cuh"
#include "fastmlp/cuda_device.h"

namespace fastmlp::cuda {

using detail::check;

int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the (non-sticky) error so later calls start clean
        return 0;
    }
    return n;
}

std::string status() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    }
    return n == 0 ? "no CUDA device found" : "";
}

std::string device_name(int device) {
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    return prop.name;
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

int runtime_version() {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
}

int driver_version() {
    int v = 0;
    cudaDriverGetVersion(&v);
    return v;
}

int current_device() {
    int d = 0;
    check(cudaGetDevice(&d), "cudaGetDevice");
    return d;
}

void set_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }

int sm_count(int device) {
    // Cached per device: asked on every GEMM launch to pick the tiling.
    static std::mutex mu;
    static std::vector<int> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (device < 0) throw std::runtime_error("fastmlp CUDA: bad device ordinal");
    if (size_t(device) < cache.size() && cache[size_t(device)] > 0) return cache[size_t(device)];
    int n = 0;
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute(MultiProcessorCount)");
    if (cache.size() <= size_t(device)) cache.resize(size_t(device) + 1, 0);
    cache[size_t(device)] = n;
    return n;
}

int pointer_device(const void* p) {
    cudaPointerAttributes attr;
    check(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
    if (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) return attr.device;
    return -1;
}

void check_error(int e, const char* what) { check(static_cast<cudaError_t>(e), what); }

}  // namespace fastmlp::cuda
