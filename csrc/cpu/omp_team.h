// This thread's place in its OpenMP team (internal header): team_id() in [0, team_size()).
// Outside a parallel region, or in a build without OpenMP, the thread is 0 of a team of 1.
// GCC folds the direct omp_get_thread_num() calls in a parallel region's own body (not in the
// functions it calls) into one, which it cannot do through this wrapper: a region body that
// asks twice keeps the direct calls (mlp_train.cpp's epoch team).
// TeamBarrier: the barrier of the hand-made teams (the packed GEMM's, the trainers' data-parallel
// partitions').
#pragma once

#include <atomic>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastmlp {

inline int team_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// A barrier for the n threads of one team: a counter and a generation the waiters spin on
// (pause), yielding the CPU after `spins` rounds, so a thread that shares its CPU with the one it
// waits for lets it run instead of spinning to the next scheduler tick (libgomp's barrier keeps
// spinning for GOMP_SPINCOUNT). The two atomics sit on their own cache lines.
// Measured on the 2-core AVX2 EPYC, quiet: in the packed GEMM (two meetings per ~20 ms block),
// 2048^3 NN at 2 threads 73.3 vs 73.3 GFLOP/s against an orphaned `#pragma omp barrier`; in the
// general trainer's data-parallel step (6-64-64-1 Tanh/Huber/Adam b64, rdtsc per phase) the wait
// at the step's second barrier, where both threads arrive nearly together, 0.3-1.0 us with the
// OpenMP barrier, 0.1-0.3 us with this one.
class TeamBarrier {
public:
    explicit TeamBarrier(int n, int spins = 2000) : n_(n), spins_(spins) {}
    TeamBarrier(const TeamBarrier&) = delete;
    TeamBarrier& operator=(const TeamBarrier&) = delete;
    void wait() {
        const int g = gen_.load(std::memory_order_acquire);
        if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.store(g + 1, std::memory_order_release);
            return;
        }
        for (int spin = 0; gen_.load(std::memory_order_acquire) == g; ++spin) {
            if (spin < spins_) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            } else {
                std::this_thread::yield();
            }
        }
    }

private:
    const int n_, spins_;
    alignas(64) std::atomic<int> count_{0};
    alignas(64) std::atomic<int> gen_{0};
};

}  // namespace fastmlp
