// The per-thread block cache behind ScratchVec (scratch_cache.h).
#include "scratch_cache.h"

#include <cstdlib>

#include "fastmlp/mlp.h"

namespace fastmlp::detail {

namespace {

constexpr size_t kAlign = 64;
constexpr int kSlots = 32;

inline size_t rounded(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

struct BlockCache {
    void* ptr[kSlots] = {};
    size_t cap[kSlots] = {};
    size_t held = 0;
    // false once destroyed: a thread_local ScratchVec destroyed after the cache at thread exit
    // (small_forward_impl's scratch is made before its first block) frees its block directly
    bool alive = true;
    ~BlockCache() {
        for (int i = 0; i < kSlots; ++i) std::free(ptr[i]);
        held = 0;
        alive = false;
    }
};
thread_local BlockCache t_cache;

}  // namespace

void* scratch_block_get(size_t bytes) {
    const size_t want = rounded(bytes == 0 ? 1 : bytes);
    if (want >= kScratchMinBytes && t_cache.alive) {
        BlockCache& c = t_cache;
        int best = -1;
        for (int i = 0; i < kSlots; ++i)  // the smallest cached block that fits, at most 2x
            if (c.ptr[i] && c.cap[i] >= want && c.cap[i] / 2 <= want &&
                (best < 0 || c.cap[i] < c.cap[best]))
                best = i;
        if (best >= 0) {
            void* p = c.ptr[best];
            c.held -= c.cap[best];
            c.ptr[best] = nullptr;
            c.cap[best] = 0;
            return p;
        }
    }
    void* p = std::aligned_alloc(kAlign, want);
    if (!p) throw std::bad_alloc();
    return p;
}

void scratch_block_put(void* p, size_t bytes) noexcept {
    if (!p) return;
    const size_t cap = rounded(bytes == 0 ? 1 : bytes);
    BlockCache& c = t_cache;
    if (c.alive && cap >= kScratchMinBytes && c.held + cap <= kScratchCacheBytes) {
        for (int i = 0; i < kSlots; ++i)
            if (!c.ptr[i]) {
                c.ptr[i] = p;
                c.cap[i] = cap;
                c.held += cap;
                return;
            }
    }
    std::free(p);
}

size_t scratch_cache_bytes() noexcept { return t_cache.held; }

}  // namespace fastmlp::detail

size_t fastmlp::mlp_scratch_cached_bytes() { return detail::scratch_cache_bytes(); }
