// Run-time ISA detection (CPUID + XGETBV so the OS really saves the wide registers) and the
// OpenMP thread setting, made safe across fork().
#include "fastmlp/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include <pthread.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define FASTMLP_X86 1
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastmlp {

namespace {

#ifdef FASTMLP_X86
uint64_t xgetbv0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t(edx) << 32) | eax;
}
#endif

std::vector<Isa> detect() {
    std::vector<Isa> out{Isa::generic};
#ifdef FASTMLP_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return out;
    const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
    if (!osxsave || !avx) return out;
    const uint64_t xcr0 = xgetbv0();
    const bool ymm_ok = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
    const bool zmm_ok = (xcr0 & 0xE6) == 0xE6;          // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return out;
    const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16);
    if (ymm_ok && avx2 && fma) out.push_back(Isa::avx2);
    if (zmm_ok && avx512f && avx2 && fma) out.push_back(Isa::avx512);
#endif
    return out;
}

const std::vector<Isa>& supported() {
    static const std::vector<Isa> isas = detect();
    return isas;
}

bool is_supported(Isa isa) {
    for (Isa s : supported())
        if (s == isa) return true;
    return false;
}

Isa initial_isa() {
    const char* env = std::getenv("FASTMLP_CPU");
    if (env && *env) {
        Isa want = isa_from_name(env);
        if (!is_supported(want))
            throw std::runtime_error(std::string("FASTMLP_CPU=") + env +
                                     " but this CPU does not support it; supported: " +
                                     isa_name(supported().back()) + " and below");
        return want;
    }
    return supported().back();
}

std::atomic<int>& isa_slot() {
    static std::atomic<int> slot{-1};
    return slot;
}

// fork() safety. GNU libgomp keeps its worker threads in a pool; fork() copies the pool's
// bookkeeping into the child but not the threads, so the child's next parallel region with more
// than one thread waits forever for workers that do not exist. Once this process has run a
// parallel region, a pthread_atfork child handler marks the pool unusable in the child, and from
// then on every kernel there runs on the calling thread only (threads_for() returns 1 and the OpenMP
// default is set to 1 for code that asks OpenMP directly). Results are unchanged: they never
// depend on the thread count.
std::atomic<bool> g_pool_used{false};
std::atomic<bool> g_forked_child{false};

void on_fork_child() {
    if (!g_pool_used.load(std::memory_order_relaxed)) return;
    g_forked_child.store(true, std::memory_order_relaxed);
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
}

// The thread count set by set_num_threads, for the whole process (0: not set, use OpenMP's
// default, i.e. OMP_NUM_THREADS or the CPU count). omp_set_num_threads alone would not do: it only
// changes the calling thread's setting, so kernels called from other Python threads ignored it.
std::atomic<int> g_num_threads{0};

const bool g_atfork_registered = [] {
    return pthread_atfork(nullptr, nullptr, &on_fork_child) == 0;
}();

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::generic: return "generic";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
    }
    return "unknown";
}

Isa isa_from_name(const std::string& name) {
    if (name == "generic") return Isa::generic;
    if (name == "avx2") return Isa::avx2;
    if (name == "avx512") return Isa::avx512;
    throw std::invalid_argument("unknown CPU kernel path '" + name +
                                "'; expected one of generic, avx2, avx512");
}

std::vector<Isa> supported_isas() { return supported(); }

Isa current_isa() {
    int v = isa_slot().load(std::memory_order_relaxed);
    if (v < 0) {
        v = int(initial_isa());
        isa_slot().store(v, std::memory_order_relaxed);
    }
    return Isa(v);
}

void set_isa(Isa isa) {
    if (!is_supported(isa))
        throw std::runtime_error(std::string("CPU kernel path '") + isa_name(isa) +
                                 "' is not supported by this CPU");
    isa_slot().store(int(isa), std::memory_order_relaxed);
}

int max_threads() {
#ifdef _OPENMP
    // omp_get_num_procs() is a sched_getaffinity system call each time; the CPU count is read
    // once (threads_for() asks on every kernel call, and a 64x10x20 product lasts ~0.5 us).
    static const int procs = omp_get_num_procs();
    return std::max(64, 4 * procs);
#else
    return 1;
#endif
}

bool in_forked_child() { return g_forked_child.load(std::memory_order_relaxed); }

int get_num_threads() {
    if (in_forked_child()) return 1;
    const int n = g_num_threads.load(std::memory_order_relaxed);
    if (n > 0) return n;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("number of threads must be >= 1, got " + std::to_string(n));
    if (n > max_threads())
        throw std::invalid_argument("number of threads must be <= " + std::to_string(max_threads()) +
                                    " (4 per CPU), got " + std::to_string(n));
    if (in_forked_child()) return;  // the pool cannot be used here: stay on one thread
    g_num_threads.store(n, std::memory_order_relaxed);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int threads_for(double flops) {
    // A fork/join costs ~1 us warm (~2000 flops at this machine's speed would be far too little
    // work); below ~1 MFLOP the split does not pay.
    // More threads than max_threads() (possible through OMP_NUM_THREADS) are clamped: libgomp
    // crashes when it cannot create them.
    if (flops < 1.0e6) return 1;  // before any OpenMP query: small calls pay nothing here
    const int t = std::min(get_num_threads(), max_threads());
    if (t <= 1) return 1;
    g_pool_used.store(true, std::memory_order_relaxed);
    (void)g_atfork_registered;
    return t;
}

}  // namespace fastmlp
