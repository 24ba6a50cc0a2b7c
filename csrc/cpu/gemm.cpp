// sgemm: the portable driver (BLIS / Goto structure). ISA-specific code lives only in the
// micro-kernels (gemm_kernel_*.cpp); packing absorbs the transposes (gemm_pack.cpp).
//
// Two paths, chosen from the shape alone (never from the thread count, so results do not depend
// on it):
//  * small path (MLP-sized products, narrow N, short M, little work): no packing of A; the
//    micro-kernel reads op(A) in place (rows or columns) and op(B) rows in place (a transposed B
//    is first copied into a row-major scratch). Tiles of C are split over threads when
//    threads_for() says the work pays for a fork/join.
//  * packed path: for jc (NC columns of C) / pc (KC of K) / ic (MC rows): B block packed once
//    into KC x NC micro-panels (L3), A block into MC x KC micro-panels (L2), then every
//    (jr, ir) register tile runs the micro-kernel with the B micro-panel held in L1.
//    Threads share one packed B block (packed cooperatively between two barriers) and take
//    disjoint MR-panel row ranges of C with their own packed A (few rows: column slices, all
//    private); K is never split, so every element sees the same sequence of FMAs for any
//    thread count. The first K
//    block applies beta (beta == 0: C is not read), later ones accumulate; bias and ReLU are
//    applied in the store of the last K block.
// An epilogue activation other than ReLU (epi.act) is applied by this driver to each register
// tile right after the micro-kernel stored it (the last K block only), while it is in L1: one
// pass over C, no second sweep (activations.h act_forward_tile, the ISA's SIMD version).
#include <algorithm>
#include <atomic>
#include <exception>

#include <sched.h>

#include "fastmlp/activations.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/gemm.h"
#include "gemm_internal.h"
#include "omp_team.h"

namespace fastmlp {

namespace gemm_detail {

const KernelSet& kernels_for(Isa isa) {
#if defined(FASTMLP_HAVE_X86_KERNELS)
    if (isa == Isa::avx512) return kernels_avx512();
    if (isa == Isa::avx2) return kernels_avx2();
#endif
    (void)isa;
    return kernels_generic();
}

}  // namespace gemm_detail

namespace {

using namespace gemm_detail;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A worker woken from sleep can be queued on the CPU of the thread that woke it even though
// another CPU is idle (seen on KVM guests, whose scheduler avoids a halted vCPU it takes for
// preempted): the two halves of a product then share one CPU, and the worker's spinning in
// libgomp keeps the caller off it until the next scheduler tick (4 ms stalls on a 30 us call).
// A worker that finds itself on the caller's CPU moves off it once: its affinity without that
// CPU (the kernel migrates it now), then the original affinity back (no migration back).
void leave_cpu(int caller_cpu) {
#ifdef __linux__
    if (caller_cpu < 0 || caller_cpu >= CPU_SETSIZE || sched_getcpu() != caller_cpu) return;
    cpu_set_t mask, others;
    if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return;
    others = mask;
    CPU_CLR(caller_cpu, &others);
    if (CPU_COUNT(&others) == 0) return;
    if (sched_setaffinity(0, sizeof(others), &others) == 0) sched_setaffinity(0, sizeof(mask), &mask);
#else
    (void)caller_cpu;
#endif
}

// Runs body(tid, nth) on nt threads (inline when nt <= 1). An exception on any thread (a scratch
// buffer that cannot grow) is rethrown on the caller's thread, never let out of the OpenMP
// region, which would terminate the process.
template <class Body>
void parallel_run(int nt, Body&& body) {
    if (nt <= 1) {
        body(0, 1);
        return;
    }
    std::exception_ptr err;
    std::atomic<int> done{0};
#ifdef __linux__
    const int caller_cpu = sched_getcpu();
#else
    const int caller_cpu = -1;
#endif
#pragma omp parallel num_threads(nt)
    {
        const int tid = team_id(), nth = team_size();
        if (tid != 0) leave_cpu(caller_cpu);
        try {
            body(tid, nth);
        } catch (...) {
#pragma omp critical(fastmlp_gemm_error)
            if (!err) err = std::current_exception();
        }
        // Wait for the others by yielding rather than in libgomp's spinning barrier, so that a
        // worker still sharing this CPU gets it at once instead of at the next scheduler tick.
        done.fetch_add(1, std::memory_order_acq_rel);
        while (done.load(std::memory_order_acquire) < nth) sched_yield();
    }
    if (err) std::rethrow_exception(err);
}

// The driver's part of the epilogue on one finished tile tc (m x n) of C: keep the pre-activation
// (epi.pre_act, at the same offset from its base as tc from C), then apply epi.act in place.
inline void tile_act(const GemmEpilogue& epi, const float* C, float* tc, int64_t ldc, int64_t m,
                     int64_t n) {
    if (epi.pre_act) {
        float* z = epi.pre_act + (tc - C);
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) z[i * ldc + j] = tc[i * ldc + j];
    }
    act_forward_tile(tc, ldc, m, n, epi.act);
}

inline float relu1(float v) { return v > 0.0f ? v : (v != v ? v : 0.0f); }

// K == 0: C = alpha*0 + beta*C (+bias) (relu), as the reference computes it.
void scale_only(int64_t M, int64_t N, float alpha, float beta, float* C, int64_t ldc,
                GemmEpilogue epi) {
    const float zero = alpha * 0.0f;
    for (int64_t i = 0; i < M; ++i) {
        float* c = C + i * ldc;
        for (int64_t j = 0; j < N; ++j) {
            float v = zero;
            if (beta != 0.0f) v += beta * c[j];
            if (epi.bias) v += epi.bias[j];
            if (epi.relu) v = relu1(v);
            c[j] = v;
        }
    }
    if (epilogue_relu(epi) && !epi.relu) {
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = relu1(C[i * ldc + j]);
    } else if (epilogue_tile_act(epi)) {
        tile_act(epi, C, C, ldc, M, N);
    }
}

// ---- tile paths (dot, narrow, small) ------------------------------------------------------
// The TileArgs fields every tile of one product shares.
TileArgs base_args(int64_t K, int64_t lda, int64_t ldb, int64_t ldc, float alpha, float beta,
                   const GemmEpilogue& epi) {
    TileArgs t{};
    t.k = K;
    t.lda = lda;
    t.ldb = ldb;
    t.ldc = ldc;
    t.alpha = alpha;
    t.beta = beta;
    t.relu = epilogue_relu(epi);
    return t;
}

// Runs tiles [0, tiles) of an M x N x K product: contiguous ranges, one per thread (as many
// threads as threads_for() says the work pays for), body(t, q0, q1) with t a copy of `base` for
// that thread. Every tile is computed by one thread alone, so the result does not depend on
// the split.
template <class Body>
void run_tiles(int64_t M, int64_t N, int64_t K, int64_t tiles, const TileArgs& base, Body&& body) {
    const int nt = int(std::min<int64_t>(threads_for(2.0 * double(M) * double(N) * double(K)), tiles));
    parallel_run(nt, [&](int tid, int nth) {
        TileArgs t = base;
        body(t, tiles * tid / nth, tiles * (tid + 1) / nth);
    });
}

// The small path is used when packing would cost more than it saves: few columns (a narrow
// output such as the last layer), few rows, or little work in total.
bool use_small_path(const KernelSet& ks, int64_t M, int64_t N, int64_t K) {
    if (N <= ks.snr[1]) return true;
    if (M <= 2 * ks.smr) return true;
    const double work = double(M) * double(N) * double(K);
    return work <= 96.0 * 96.0 * 96.0;
}

// ---- dot path: C = A @ W^T with few rows ---------------------------------------------------
// Rows of A and rows of W are both contiguous along K: dot products need no packing at all,
// where the small path would transpose all of W and the packed path would waste most of an
// MR-row tile.
bool use_dot_path(int64_t M, int64_t N, bool trans_a, bool trans_b) {
    return trans_b && !trans_a && M <= 16 && N > 32;
}

void sgemm_dot(const KernelSet& ks, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
               GemmEpilogue epi) {
    // One row: the kernel takes 1 x 2*dnr tiles (see dot_any).
    const int64_t dn = M == 1 ? 2 * ks.dnr : ks.dnr;
    const int64_t mt = ceil_div(M, ks.dmr), ntl = ceil_div(N, dn);
    const bool post = epilogue_tile_act(epi);
    run_tiles(M, N, K, mt * ntl, base_args(K, lda, ldb, ldc, alpha, beta, epi),
              [&](TileArgs& t, int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
            // column tiles outer: a W row block is read once, all (few) rows of A stay in cache
            const int64_t jt = q / mt, it = q % mt;
            const int64_t i0 = it * ks.dmr, j0 = jt * dn;
            t.m = std::min<int64_t>(ks.dmr, M - i0);
            t.n = std::min<int64_t>(dn, N - j0);
            t.a = A + i0 * lda;
            t.b = B + j0 * ldb;
            t.c = C + i0 * ldc + j0;
            t.bias = epi.bias ? epi.bias + j0 : nullptr;
            ks.dot(t);
            if (post) tile_act(epi, C, t.c, ldc, t.m, t.n);
        }
    });
}

// ---- narrow path: N <= 16 columns, not a multiple of 8 -------------------------------------
// A 10-class head (784/1024 -> 10) would use 10 of the 16 lanes of a small-path tile. Here every
// FMA does useful work: with op(A) rows contiguous along K (NN, NT) a tile is dot products of A
// rows with rows of op(B)^T (a row-major B is transposed first: N x K floats, cheap next to the
// M x N x K work); with op(A) columns contiguous (TN, TT) vectors run down the columns of C and
// op(B) entries are broadcast (a transposed B copied row-major first). A tile spans all N
// columns; threads take whole tiles (rows), so every element is computed the same way for any
// thread count.
bool use_narrow_path(const KernelSet& ks, int64_t N, int64_t K, bool trans_a) {
    if (!(trans_a ? ks.narrow_cols : ks.narrow_dot)) return false;
    return N <= 16 && N % 8 != 0 && K >= 64;
}

void sgemm_narrow(const KernelSet& ks, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                  float beta, float* C, int64_t ldc, GemmEpilogue epi) {
    const float* b = B;
    int64_t bld = ldb;
    if (!trans_a && !trans_b) {
        // rows of op(B)^T: bt[j*K + p] = B[p*ldb + j]
        float* bp = scratch(SCRATCH_B, size_t(K) * size_t(N));
        pack_transposed(bp, K, B, ldb, N, K);
        b = bp;
        bld = K;
    } else if (trans_a && trans_b) {
        // op(B) row-major: b[p*N + j] = B[j*ldb + p]
        float* bp = scratch(SCRATCH_B, size_t(K) * size_t(N));
        pack_transposed(bp, N, B, ldb, K, N);
        b = bp;
        bld = N;
    }
    const int64_t rows = trans_a ? ks.ncmr : ks.ndmr;
    const MicroKernel kern = trans_a ? ks.narrow_cols : ks.narrow_dot;
    TileArgs base = base_args(K, lda, bld, ldc, alpha, beta, epi);
    base.b = b;
    base.n = N;
    base.bias = epi.bias;
    const bool post = epilogue_tile_act(epi);
    run_tiles(M, N, K, ceil_div(M, rows), base, [&](TileArgs& t, int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
            const int64_t i0 = q * rows;
            t.m = std::min<int64_t>(rows, M - i0);
            t.a = trans_a ? A + i0 : A + i0 * lda;
            t.c = C + i0 * ldc;
            kern(t);
            if (post) tile_act(epi, C, t.c, ldc, t.m, N);
        }
    });
}

// ---- small path --------------------------------------------------------------------------
void sgemm_small(const KernelSet& ks, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float beta, float* C, int64_t ldc, GemmEpilogue epi) {
    const int wide = N > ks.snr[0] ? 1 : 0;
    const int smr = ks.smr, snr = ks.snr[wide];
    // op(B) row-major: in place, or a transposed copy in this thread's scratch.
    const float* b = B;
    int64_t bld = ldb;
    if (trans_b) {
        bld = ceil_div(N, 16) * 16;
        float* bp = scratch(SCRATCH_B, size_t(K) * size_t(bld));
        pack_transposed(bp, bld, B, ldb, K, N);
        b = bp;
    }
    const AMode am = trans_a ? A_COLS : A_ROWS;
    const MicroKernel full = ks.small[wide][am];
    const MicroKernel edge = ks.small[wide][A_PACKED];
    const MicroKernel last = ks.small_last[wide][am];
    // element (i, p) of op(A) at A[i*a_rs + p*a_ps]
    const int64_t a_rs = trans_a ? 1 : lda, a_ps = trans_a ? lda : 1;
    const int64_t mt = ceil_div(M, smr), ntl = ceil_div(N, snr);
    const bool post = epilogue_tile_act(epi);
    run_tiles(M, N, K, mt * ntl, base_args(K, lda, bld, ldc, alpha, beta, epi),
              [&](TileArgs& t, int64_t t0, int64_t t1) {
        int64_t packed_row = -1;
        float* ap = nullptr;
        for (int64_t q = t0; q < t1; ++q) {
            const int64_t it = q / ntl, jt = q % ntl;
            const int64_t i0 = it * smr, j0 = jt * snr;
            t.m = std::min<int64_t>(smr, M - i0);
            t.n = std::min<int64_t>(snr, N - j0);
            t.b = b + j0;
            t.c = C + i0 * ldc + j0;
            t.bias = epi.bias ? epi.bias + j0 : nullptr;
            if (t.m == smr || last) {
                t.a = A + i0 * a_rs;
                t.lda = lda;  // rsa (A_ROWS) or csa (A_COLS)
                (t.m == smr ? full : last)(t);
            } else {
                // Last rows without a last-rows kernel (avx2, generic): a zero-padded copy, so
                // the kernel never reads past op(A).
                if (packed_row != i0) {
                    ap = scratch(SCRATCH_EDGE, size_t(K) * size_t(smr));
                    pack_panels(ap, A + i0 * a_rs, a_rs, a_ps, t.m, K, smr, 0, 1);
                    packed_row = i0;
                }
                t.a = ap;
                t.lda = smr;
                edge(t);
            }
            if (post) tile_act(epi, C, t.c, ldc, t.m, t.n);
        }
    });
}

// ---- packed path -------------------------------------------------------------------------
// The packed path's threads meet at a TeamBarrier (omp_team.h): spin briefly (the two halves of
// a packed product reach it within microseconds of each other), then yield.

// Blocking of one packed product: a function of the shape and the ISA only (never of the thread
// count), so the K blocks, and with them every element's sequence of FMAs, are the same however
// the product is split.
struct PackedPlan {
    int64_t KC, NC, MC, kc_max;
    int64_t a_rs, a_ps, b_js, b_ps;  // op(A)(i,p) at A[i*a_rs + p*a_ps], op(B)(p,j) at B[j*b_js + p*b_ps]
};

PackedPlan packed_plan(const KernelSet& ks, bool trans_a, bool trans_b, int64_t M, int64_t N,
                       int64_t K, int64_t lda, int64_t ldb) {
    PackedPlan pl;
    // K split into equal blocks (K = 2048 with kc 384 gives 6 x 342, not 5 x 384 + 128: a short
    // last block would pay the C-tile load/store for little work).
    const int64_t KC0 = ks.kc;
    pl.KC = std::min<int64_t>(KC0, ceil_div(ceil_div(K, ceil_div(K, KC0)), 8) * 8);
    pl.NC = std::min<int64_t>(ks.nc, ceil_div(N, ks.nr) * ks.nr);
    pl.MC = std::min<int64_t>(ks.mc, ceil_div(M, ks.mr) * ks.mr);
    pl.kc_max = std::min<int64_t>(pl.KC, K);
    pl.a_rs = trans_a ? 1 : lda;
    pl.a_ps = trans_a ? lda : 1;
    pl.b_js = trans_b ? ldb : 1;
    pl.b_ps = trans_b ? 1 : ldb;
    return pl;
}

// The five BLIS loops over rows [i_begin, i_end) of C (all N columns) for thread tid of a team
// of nth: for every (jc, pc) B block the team packs one shared copy into bp (thread tid the
// micro-panels [np*tid/nth, np*(tid+1)/nth)), meets at the barrier, then each thread runs its
// own MC-row blocks, packed into its own ap, over the whole shared block; a second barrier
// keeps the next block's packing from overwriting a block still in use. With nth == 1 (bar
// null) this is the serial algorithm. Every C tile is computed by one thread with the K blocks
// of the plan in order, so the result does not depend on the team.
// Tried and not kept (AVX2 Zen, 2 threads, 2048^3, medians of 12 calls interleaved in one
// process, quiet; this code 73.5 / 73.7 / 72.7 GFLOP/s NN / NT / TN, OpenBLAS ~74):
//  * B double-buffered (block b in buffer b % 2, one barrier per block instead of two):
//    72.5-72.7 / 72.9-73.5 / 72.9-73.1 - the second barrier costs nothing measurable, and two
//    1.4 MiB buffers take more of the shared L3.
//  * prefetching the next tile's C rows (L2 or L1 hint) at the start of each tile, beside the
//    late prefetch in the kernel: 72.8-73.2 / 73.3-73.5 / 73.1-73.6, and 4096^3 NN 72.9-74.1 vs
//    73.7 - within the +-1% the shared machine resolves.
//  * prefetching the op(A) block packed next (spread over the current block's column panels):
//    4096^3 NN 71.0 vs 72.1 without.
//  * nc 2048 at 4096^3 NN: 67.9 vs 70.0 (medians of 8 on a noisy run; 3: 72.7 vs 68.4).
void packed_rows(const KernelSet& ks, const PackedPlan& pl, int64_t i_begin, int64_t i_end,
                 int64_t N, int64_t K, float alpha, const float* A, const float* B, float beta,
                 float* C, int64_t ldc, const GemmEpilogue& epi, float* ap, float* bp, int tid,
                 int nth, TeamBarrier* bar) {
    const int MR = ks.mr, NR = ks.nr;
    const int64_t KC = pl.KC, NC = pl.NC, MC = pl.MC;
    TileArgs t;
    t.ldc = ldc;
    t.alpha = alpha;
    t.lda = MR;
    t.ldb = NR;
    bool packed_before = false;
    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = std::min(NC, N - jc);
        const int64_t np = ceil_div(nc, NR);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            const bool first = pc == 0, last = pc + kc >= K;
            if (bar && packed_before) bar->wait();  // the team is done with the previous block
            ks.pack(bp, B + jc * pl.b_js + pc * pl.b_ps, pl.b_js, pl.b_ps, nc, kc, NR,
                    np * tid / nth, np * (tid + 1) / nth);
            packed_before = true;
            if (bar) bar->wait();  // the whole block is packed
            t.k = kc;
            t.beta = first ? beta : 1.0f;  // later K blocks accumulate onto the first
            t.relu = last && epilogue_relu(epi);
            const bool post = last && epilogue_tile_act(epi);
            for (int64_t ic = i_begin; ic < i_end; ic += MC) {
                const int64_t mc = std::min(MC, i_end - ic);
                const int64_t mp = ceil_div(mc, MR);
                ks.pack(ap, A + ic * pl.a_rs + pc * pl.a_ps, pl.a_rs, pl.a_ps, mc, kc, MR, 0, mp);
                for (int64_t q = 0; q < np; ++q) {
                    const int64_t j0 = q * NR;
                    t.n = std::min<int64_t>(NR, nc - j0);
                    t.b = bp + q * kc * NR;
                    t.bias = (last && epi.bias) ? epi.bias + jc + j0 : nullptr;
                    for (int64_t r = 0; r < mp; ++r) {
                        const int64_t i0 = r * MR;
                        t.m = std::min<int64_t>(MR, mc - i0);
                        t.a = ap + r * kc * MR;
                        t.c = C + (ic + i0) * ldc + jc + j0;
                        ks.packed(t);
                        if (post) tile_act(epi, C, t.c, ldc, t.m, t.n);
                    }
                }
            }
        }
    }
}

// One thread, one (M x N) problem, with this thread's own packing buffers.
void packed_serial(const KernelSet& ks, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                   float beta, float* C, int64_t ldc, GemmEpilogue epi) {
    const PackedPlan pl = packed_plan(ks, trans_a, trans_b, M, N, K, lda, ldb);
    float* ap = scratch(SCRATCH_A, size_t(pl.MC) * size_t(pl.kc_max));
    float* bp = scratch(SCRATCH_B, size_t(pl.NC) * size_t(pl.kc_max));
    packed_rows(ks, pl, 0, M, N, K, alpha, A, B, beta, C, ldc, epi, ap, bp, 0, 1, nullptr);
}

// Several threads. With enough MR-row panels for every thread (the usual case) the team shares
// one packed B block (BLIS's ic-loop split, as OpenBLAS's level-3 driver does): B is packed
// once, cooperatively, not once per thread, which halves the B packing traffic and the L3 the
// packed B takes, and each thread packs only its own rows of A. Rows are split in whole MR
// panels. Otherwise (few rows, many columns) threads take disjoint NR-column slices of C and run
// the serial algorithm on them with their own buffers (A is small then). Either way every
// element of C is computed exactly as on one thread.
void sgemm_packed(const KernelSet& ks, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                  float beta, float* C, int64_t ldc, GemmEpilogue epi) {
    const int nt = threads_for(2.0 * double(M) * double(N) * double(K));
    if (nt <= 1) {
        packed_serial(ks, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
        return;
    }
    const int64_t b_js = trans_b ? ldb : 1;
    const int64_t np = ceil_div(N, ks.nr), mp = ceil_div(M, ks.mr);
    if (mp >= 4 * nt || np < 2 * nt) {
        const PackedPlan pl = packed_plan(ks, trans_a, trans_b, M, N, K, lda, ldb);
        // The caller's thread is thread 0 of the team: its SCRATCH_B holds the shared block;
        // every thread's SCRATCH_A its own A block.
        float* bp = scratch(SCRATCH_B, size_t(pl.NC) * size_t(pl.kc_max));
        TeamBarrier bar(nt);
        std::atomic<bool> failed{false};
        parallel_run(nt, [&](int tid, int nth) {
            if (nth != nt) {
                // A smaller team than asked for (an enclosing parallel region): no barrier of nt
                // can complete, so thread 0 does it all.
                if (tid == 0)
                    packed_rows(ks, pl, 0, M, N, K, alpha, A, B, beta, C, ldc, epi,
                                scratch(SCRATCH_A, size_t(pl.MC) * size_t(pl.kc_max)), bp, 0, 1,
                                nullptr);
                return;
            }
            float* ap = nullptr;
            try {
                ap = scratch(SCRATCH_A, size_t(pl.MC) * size_t(pl.kc_max));
            } catch (...) {
                failed.store(true);
                bar.wait();
                throw;
            }
            bar.wait();  // every thread has its buffer, or none goes on
            if (failed.load()) return;
            const int64_t i0 = std::min<int64_t>(M, mp * tid / nth * ks.mr);
            const int64_t i1 = std::min<int64_t>(M, mp * (tid + 1) / nth * ks.mr);
            packed_rows(ks, pl, i0, i1, N, K, alpha, A, B, beta, C, ldc, epi, ap, bp, tid, nth,
                        &bar);
        });
        return;
    }
    parallel_run(nt, [&](int tid, int nth) {
        const int64_t j0 = np * tid / nth * ks.nr;
        const int64_t j1 = std::min<int64_t>(N, np * (tid + 1) / nth * ks.nr);
        if (j1 > j0) {
            GemmEpilogue e = epi;
            if (e.bias) e.bias += j0;
            if (e.pre_act) e.pre_act += j0;
            packed_serial(ks, trans_a, trans_b, M, j1 - j0, K, alpha, A, lda, B + j0 * b_js, ldb,
                          beta, C + j0, ldc, e);
        }
    });
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, GemmEpilogue epi) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_only(M, N, alpha, beta, C, ldc, epi);
        return;
    }
    const KernelSet& ks = kernels_for(current_isa());
    if (use_dot_path(M, N, trans_a, trans_b))
        sgemm_dot(ks, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    else if (use_narrow_path(ks, N, K, trans_a))
        sgemm_narrow(ks, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    else if (use_small_path(ks, M, N, K))
        sgemm_small(ks, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    else
        sgemm_packed(ks, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
}

}  // namespace fastmlp
