// FP32 FMA peak of this machine for the SIMD path fastmlp uses on it: AVX-512 where the CPU has it,
// otherwise AVX2+FMA (256-bit), otherwise nothing to measure. 12 independent FMA chains per thread
// (enough to cover a 4-5 cycle latency on two FMA pipes), no memory traffic. The ISA is chosen at
// run time (function target attributes), so it builds with no -m flags on any x86-64 compiler:
//   cc -O2 -fopenmp bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak [--isa avx2|avx512]
// Prints one line per run: the ISA, threads 1 (one core) and threads N (OMP_NUM_THREADS or all),
// each the best of 5 runs in GFLOP/s (timed in each thread's CPU time, see peak()), e.g.
//   isa avx2 threads 1 best 94.1 GFLOP/s
//   isa avx2 threads 2 best 187.3 GFLOP/s
// (bench/gemm.py and bench/grid.py run this for you and read those lines.)
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ITERS 20000000L

__attribute__((target("avx2,fma"))) static float chains_avx2(long iters) {
    __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-9f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
           a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
           a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
           a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
#define F8(x) x = _mm256_fmadd_ps(x, b, c);
    for (long it = 0; it < iters; it++) {
        F8(a0) F8(a1) F8(a2) F8(a3) F8(a4) F8(a5) F8(a6) F8(a7) F8(a8) F8(a9) F8(a10) F8(a11)
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5),
                         "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

__attribute__((target("avx512f"))) static float chains_avx512(long iters) {
    __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-9f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
           a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
           a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
           a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
#define F16(x) x = _mm512_fmadd_ps(x, b, c);
    for (long it = 0; it < iters; it++) {
        F16(a0) F16(a1) F16(a2) F16(a3) F16(a4) F16(a5) F16(a6) F16(a7) F16(a8) F16(a9) F16(a10) F16(a11)
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                         "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}

static double thread_cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

// Best of 5 runs on nt threads, GFLOP/s (12 chains x lanes x 2 flops per iteration). Each thread
// times itself in its own CPU time and the rates add up: on a shared machine a thread that is
// descheduled for a while does not lower the figure, which is the hardware's peak for nt cores.
static double peak(int avx512, int nt) {
    const double lanes = avx512 ? 16.0 : 8.0;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        float res = 0;
        double rate = 0;
#pragma omp parallel num_threads(nt) reduction(+ : res, rate)
        {
            double t0 = thread_cpu_seconds();
            res += avx512 ? chains_avx512(ITERS) : chains_avx2(ITERS);
            rate += ITERS * 12.0 * lanes * 2.0 / (thread_cpu_seconds() - t0) / 1e9;
        }
        sink += res;
        if (rate > best) best = rate;
    }
    (void)sink;
    return best;
}

int main(int argc, char** argv) {
    __builtin_cpu_init();
    int have512 = __builtin_cpu_supports("avx512f");
    int have2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = have512;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--isa")) avx512 = !strcmp(argv[i + 1], "avx512");
    if ((avx512 && !have512) || (!avx512 && !have2)) {
        fprintf(stderr, "fma_peak: this CPU has no %s\n", avx512 ? "AVX-512" : "AVX2+FMA");
        return 2;
    }
    const char* isa = avx512 ? "avx512" : "avx2";
    int nt = omp_get_max_threads();
    printf("isa %s threads 1 best %.1f GFLOP/s\n", isa, peak(avx512, 1));
    fflush(stdout);
    if (nt > 1) printf("isa %s threads %d best %.1f GFLOP/s\n", isa, nt, peak(avx512, nt));
    return 0;
}
