// The parts of an emulated trainer backend (the `Ops` of csrc/cuda/mlp_train_impl.h and
// mlp_fit_impl.h) that the trainers' emulators share: sgemm as gemm.cu launches it (its plans, the
// 128x128 / 64x64 tiles, split-K into the caller's workspace and its reduce kernel) on the fibers
// of cuda_emulation.h, and host memory standing in for device memory (filled with NaN, so that a
// read of a workspace slot nothing wrote shows). Include after cuda_emulation.h.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "cuda_emulation.h"
#include "gemm_kernels.cuh"

namespace emu {

namespace gm = fastmlp::cuda::gemm_impl;

template <int BM, int BN, int BK>
void run_tiled(bool ta, bool tb, const gm::GemmParams& p, int splits) {
    const unsigned tiles = unsigned(gm::ceil_div(p.M, BM) * gm::ceil_div(p.N, BN));
    auto go = [&](auto kern) { launch(dim3(tiles, 1, unsigned(splits)), dim3(gm::kThreads), [&] { kern(p); }); };
    if (!ta && !tb) go(gm::sgemm_tiled_kernel<BM, BN, BK, false, false>);
    else if (!ta && tb) go(gm::sgemm_tiled_kernel<BM, BN, BK, false, true>);
    else if (ta && !tb) go(gm::sgemm_tiled_kernel<BM, BN, BK, true, false>);
    else go(gm::sgemm_tiled_kernel<BM, BN, BK, true, true>);
}

struct HostMemory {
    std::unique_ptr<double[]> buf;
    explicit HostMemory(size_t bytes) : buf(new double[bytes / 8 + 32]) {
        std::memset(buf.get(), 0xff, (bytes / 8 + 32) * 8);  // NaN everywhere: uninitialised reads show
    }
    void* get() const { return buf.get(); }
};

// The gemm and memory half of an emulated backend; a trainer's EmuOps adds its own kernels.
struct GemmMemoryOps {
    int sms = 132;
    int64_t launches = 0, splitk = 0;
    bool ws_short = false;  // a split-K product found less workspace than it needs

    size_t gemm_workspace_bytes(int64_t M, int64_t N, int64_t K) const {
        if (M <= 0 || N <= 0) return 0;
        const gm::Plan pl = gm::make_plan(M, N, K, sms);
        return pl.splits <= 1 ? 0 : size_t(pl.splits) * size_t(M) * size_t(N) * sizeof(float);
    }
    void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
              fastmlp::GemmEpilogue epi, void* ws, size_t ws_bytes) {
        if (M <= 0 || N <= 0) return;
        gm::GemmParams p = gm::make_params(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
        const gm::Plan pl = gm::make_plan(M, N, K, sms);
        ++launches;
        if (pl.splits <= 1) {
            if (pl.tile == gm::Tile::t128) run_tiled<128, 128, 8>(ta, tb, p, 1);
            else run_tiled<64, 64, 16>(ta, tb, p, 1);
            return;
        }
        ++splitk;
        if (!ws || ws_bytes < gemm_workspace_bytes(M, N, K)) { ws_short = true; return; }
        p.partial = static_cast<float*>(ws);
        p.k_chunk = pl.k_chunk;
        run_tiled<64, 64, 16>(ta, tb, p, pl.splits);
        launch(dim3(unsigned(std::min<int64_t>((M * N + 255) / 256, 65535))), dim3(256),
               [&] { gm::sgemm_splitk_reduce_kernel(p, pl.splits); });
    }
    HostMemory allocate(size_t bytes) const { return HostMemory(bytes); }
    void to_device(void* dst, const void* src, size_t bytes) const { if (bytes) std::memcpy(dst, src, bytes); }
    void to_host(void* dst, const void* src, size_t bytes) const { if (bytes) std::memcpy(dst, src, bytes); }
    void fill_zero(void* dst, size_t bytes) const { std::memset(dst, 0, bytes); }
    void finish() const {}
};

}  // namespace emu
