// Per-thread reuse of the fused trainers' large scratch buffers (internal header).
//
// A fit call sizes its workspaces (activations, gradients, the data-parallel partitions' copies)
// for its batch and frees them on return. Blocks of a few MiB come from fresh mmap'd pages each
// call, and faulting them in cost a call more than its steps at a few steps a call: on a 2-core
// Zen 5, 20-256-256-1 b1024 on the small path, 2 threads, 4 steps a call, 1578 page faults (6.3
// MiB) a call, 11.1 ms a call with them and 7.4 ms with the pages kept (glibc's mmap threshold
// raised for the test). The fused trainers' path cost model times calls of a few steps, so it saw
// the small path (more scratch than the gemm path) up to 30% slow and chose the gemm path where
// the small path is faster.
//
// ScratchVec is a std::vector<float> whose blocks of kScratchMinBytes or more go back to a cache
// of the thread that frees them instead of to the system, and are handed out again to a request
// of at most their size and at least half of it. The cache holds at most kScratchCacheBytes a
// thread (more is freed at once) and is freed when the thread ends. Values are never carried over:
// std::vector value-initialises (or the caller assigns) what it hands out, as before.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace fastmlp::detail {

constexpr size_t kScratchMinBytes = size_t(64) << 10;   // smaller blocks: plain operator new
constexpr size_t kScratchCacheBytes = size_t(64) << 20;  // cached bytes per thread at most

// A block of at least `bytes` bytes (64-byte aligned): from this thread's cache or new.
void* scratch_block_get(size_t bytes);
// Gives a block of `bytes` (as asked of scratch_block_get) back: cached, or freed.
void scratch_block_put(void* p, size_t bytes) noexcept;
// Bytes this thread's cache holds now (tests).
size_t scratch_cache_bytes() noexcept;

template <class T>
struct ScratchAllocator {
    using value_type = T;
    ScratchAllocator() noexcept = default;
    template <class U>
    ScratchAllocator(const ScratchAllocator<U>&) noexcept {}
    T* allocate(size_t n) {
        if (n > size_t(-1) / sizeof(T)) throw std::bad_alloc();
        return static_cast<T*>(scratch_block_get(n * sizeof(T)));
    }
    void deallocate(T* p, size_t n) noexcept { scratch_block_put(p, n * sizeof(T)); }
};
template <class T, class U>
bool operator==(const ScratchAllocator<T>&, const ScratchAllocator<U>&) noexcept { return true; }
template <class T, class U>
bool operator!=(const ScratchAllocator<T>&, const ScratchAllocator<U>&) noexcept { return false; }

using ScratchVec = std::vector<float, ScratchAllocator<float>>;

}  // namespace fastmlp::detail
