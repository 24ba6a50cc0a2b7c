// A tiny CPU emulation of the CUDA subset fastmlp's kernels use, to check their index arithmetic
// without a GPU (tests/cuda/*_emulator.cpp). Each CUDA thread of a block is a ucontext fiber;
// __syncthreads() switches back to the scheduler, so one round over the block's fibers is one
// barrier phase (fibers run in alternating order, so same-phase shared-memory races show up).
// __shared__ arrays become statics shared by the fibers of the block being run; blocks run one
// after another. float4 loads check their 16-byte alignment.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
template <class T>
inline T __ldg(const T* p) {
    if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) {
        std::fprintf(stderr, "misaligned %zu-byte load at %p\n", sizeof(T), (const void*)p);
        std::abort();
    }
    return *p;
}
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
static dim3 threadIdx, blockIdx, blockDim, gridDim;
using std::max;
using std::min;

namespace emu {
inline ucontext_t main_ctx;
inline std::vector<ucontext_t> fiber;
inline std::vector<std::vector<char>> stacks;
inline std::vector<int> done;
inline unsigned current = 0;
inline void (*body)() = nullptr;
inline void entry(int i) {
    body();
    done[size_t(i)] = 1;
    swapcontext(&fiber[size_t(i)], &main_ctx);
}

// Runs kernel() for every thread of every block of grid x block.
template <class F>
void launch(dim3 grid, dim3 block, F kernel) {
    static F* kp;
    kp = &kernel;
    body = [] { (*kp)(); };
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x * block.y * block.z;
    fiber.resize(threads);
    stacks.resize(threads);
    done.assign(threads, 0);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = dim3(bx, by, bz);
                for (unsigned t = 0; t < threads; ++t) {
                    stacks[t].resize(256 * 1024);
                    getcontext(&fiber[t]);
                    fiber[t].uc_stack.ss_sp = stacks[t].data();
                    fiber[t].uc_stack.ss_size = stacks[t].size();
                    fiber[t].uc_link = &main_ctx;
                    makecontext(&fiber[t], (void (*)())entry, 1, int(t));
                    done[t] = 0;
                }
                // One pass = one barrier phase. The order of the fibers alternates between
                // passes, so a read of shared memory written in the same phase (a race on the
                // GPU) sees different data on different passes and shows up as a mismatch.
                unsigned pass = 0;
                for (bool any = true; any; ++pass) {
                    any = false;
                    for (unsigned i = 0; i < threads; ++i) {
                        const unsigned t = (pass + bx + by) % 2 ? threads - 1 - i : i;
                        if (done[t]) continue;
                        current = t;
                        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        swapcontext(&main_ctx, &fiber[t]);
                        any = any || !done[t];
                    }
                }
            }
}
}  // namespace emu

inline void __syncthreads() { swapcontext(&emu::fiber[emu::current], &emu::main_ctx); }
