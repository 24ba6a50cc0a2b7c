// fastmlp CUDA optimizer steps (contract: csrc/include/fastmlp/cuda_optimizers.h): one launch per
// parameter group, descriptors copied stream-ordered to the device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "fastmlp/cuda_optimizers.h"
#include "optimizer_kernels.cuh"

namespace fastmlp::cuda {

void optim_step_many(const OptimParam* params, int count, int64_t max_n, Optim kind,
                     cudaStream_t stream) {
    using optimizer_impl::kThreads;
    if (count <= 0 || max_n <= 0) return;
    const int64_t blocks = std::min<int64_t>(std::max<int64_t>(detail::ceil_div(max_n, kThreads), 1), 1024);
    const dim3 grid(unsigned(blocks), unsigned(std::min(count, 65535)));
    optimizer_impl::optim_step_many_kernel<<<grid, kThreads, 0, stream>>>(params, count, kind);
    detail::check_launch("optim_step_many_kernel");
}

void optim_step_list(const OptimParam* host_params, int count, Optim kind, cudaStream_t stream) {
    if (count <= 0) return;
    int64_t max_n = 0;
    for (int i = 0; i < count; ++i) max_n = std::max(max_n, host_params[i].n);
    if (max_n <= 0) return;
    const size_t bytes = size_t(count) * sizeof(OptimParam);
    detail::Scratch table(bytes, stream);
    // Pageable source: the runtime stages it before returning, so host_params may go away after.
    detail::check(cudaMemcpyAsync(table.as<void>(), host_params, bytes, cudaMemcpyHostToDevice,
                                  stream),
                  "cudaMemcpyAsync (optimizer descriptors)");
    optim_step_many(table.as<OptimParam>(), count, max_n, kind, stream);
}

}  // namespace fastmlp::cuda
