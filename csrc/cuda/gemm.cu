// fastmlp CUDA SGEMM: C = alpha * op(A) @ op(B) + beta * C (+ bias per column, ReLU).
// Contract: csrc/include/fastmlp/cuda_gemm.h.
//
// The kernel follows the progression of siboehm's SGEMM_CUDA (kernels 5-10): a block computes a
// BM x BN tile of C, walking K in BK-deep slices staged through shared memory; each of the 256
// threads holds a (BM/16) x (BN/16) register tile made of 4x4 sub-tiles 64 rows / columns apart,
// so that a warp reads A and B fragments from shared memory as float4 without bank conflicts
// (a warp covers 32 x 16 outputs of each 64 x 64 quadrant). Global loads are 16-byte vectors where
// the pointer and leading dimension allow it (scalar, bounds-checked loads otherwise and at the
// edges); the next slice is loaded into registers while the current one is multiplied, and shared
// memory is double-buffered, so there is one __syncthreads per slice.
//
// Shared memory always holds slices as S[k][m] (resp. S[k][n]): the transposes live in the
// loaders only. A K-contiguous panel (A not transposed, B transposed) is transposed while storing.
//
// Tile choice by problem size: 128x128 when there are enough tiles to fill the GPU, else 64x64,
// and when even those leave SMs idle and K is long, split-K: each split writes its partial
// product to scratch memory and a second kernel adds the splits in a fixed order and applies
// alpha, beta, bias and ReLU. No float atomics anywhere: results are deterministic.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.cuh"
#include "fastmlp/cuda_device.h"
#include "fastmlp/cuda_gemm.h"
#include "gemm_kernels.cuh"

namespace fastmlp::cuda {

namespace {

using namespace gemm_impl;
using detail::check;
using detail::check_launch;

int elementwise_blocks(int64_t n, int threads) {
    return int(std::min<int64_t>(std::max<int64_t>(ceil_div(n, threads), 1), 65535));
}

template <int BM, int BN, int BK>
void launch_tiled(bool ta, bool tb, const GemmParams& p, int splits, cudaStream_t stream) {
    const int64_t tiles = ceil_div(p.M, BM) * ceil_div(p.N, BN);
    if (tiles > 0x7fffffffLL) throw std::runtime_error("fastmlp CUDA sgemm: matrix too large");
    const dim3 grid(unsigned(tiles), 1, unsigned(splits));
    if (!ta && !tb) sgemm_tiled_kernel<BM, BN, BK, false, false><<<grid, kThreads, 0, stream>>>(p);
    else if (!ta && tb) sgemm_tiled_kernel<BM, BN, BK, false, true><<<grid, kThreads, 0, stream>>>(p);
    else if (ta && !tb) sgemm_tiled_kernel<BM, BN, BK, true, false><<<grid, kThreads, 0, stream>>>(p);
    else sgemm_tiled_kernel<BM, BN, BK, true, true><<<grid, kThreads, 0, stream>>>(p);
    check_launch("sgemm_tiled_kernel");
}

}  // namespace

const char* sgemm_plan(int64_t M, int64_t N, int64_t K) {
    const Plan pl = make_plan(M, N, K, sm_count(current_device()));
    if (pl.tile == Tile::t128) return "128x128";
    static const char* split_names[kMaxSplits + 1] = {
        "64x64", "64x64", "64x64 split-K 2", "64x64 split-K 3", "64x64 split-K 4",
        "64x64 split-K 5", "64x64 split-K 6", "64x64 split-K 7", "64x64 split-K 8",
        "64x64 split-K 9", "64x64 split-K 10", "64x64 split-K 11", "64x64 split-K 12",
        "64x64 split-K 13", "64x64 split-K 14", "64x64 split-K 15", "64x64 split-K 16"};
    return split_names[pl.splits];
}

size_t sgemm_workspace_bytes(int64_t M, int64_t N, int64_t K) {
    if (M <= 0 || N <= 0) return 0;
    const Plan pl = make_plan(M, N, K, sm_count(current_device()));
    return pl.splits <= 1 ? 0 : size_t(pl.splits) * size_t(M) * size_t(N) * sizeof(float);
}

void sgemm_with_workspace(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc, GemmEpilogue epi, void* workspace,
                          size_t workspace_bytes, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return;
    GemmParams p = make_params(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    const Plan pl = make_plan(M, N, K, sm_count(current_device()));
    if (pl.splits <= 1) {
        if (pl.tile == Tile::t128) launch_tiled<128, 128, 8>(trans_a, trans_b, p, 1, stream);
        else launch_tiled<64, 64, 16>(trans_a, trans_b, p, 1, stream);
        return;
    }
    const size_t need = size_t(pl.splits) * size_t(M) * size_t(N) * sizeof(float);
    detail::Scratch own(workspace && workspace_bytes >= need ? 0 : need, stream);
    p.partial = own.as<float>() ? own.as<float>() : static_cast<float*>(workspace);
    p.k_chunk = pl.k_chunk;
    launch_tiled<64, 64, 16>(trans_a, trans_b, p, pl.splits, stream);
    sgemm_splitk_reduce_kernel<<<elementwise_blocks(M * N, 256), 256, 0, stream>>>(p, pl.splits);
    check_launch("sgemm_splitk_reduce_kernel");
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, GemmEpilogue epi, cudaStream_t stream) {
    sgemm_with_workspace(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi,
                         nullptr, 0, stream);
}

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, GemmEpilogue epi, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return;
    const GemmParams p = make_params(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    sgemm_reference_kernel<<<elementwise_blocks(M * N, 256), 256, 0, stream>>>(p, trans_a, trans_b);
    check_launch("sgemm_reference_kernel");
}

}  // namespace fastmlp::cuda
