// Internal interface between the sgemm driver (gemm.cpp), the packing routines (gemm_pack.cpp) and
// the per-ISA micro-kernels (gemm_kernel_{generic,avx2,avx512}.cpp). Not part of the public API.
//
// A micro-kernel computes one register tile of C:
//   C[i][j] = alpha * sum_p a(i,p) * b(p,j)  (+ beta * C[i][j] unless beta == 0, C not read then)
//             (+ bias[j])  (then relu)           for i < m <= MR, j < n <= NR
// with a(i,p) read according to the kernel's A layout (see AMode) and b(p,j) = B[p*ldb + j]
// (j contiguous). The sum runs over p = 0..k-1 in order, one FMA per step, so every element's
// arithmetic depends only on k, never on the tile's position or the thread that runs it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "fastmlp/cpu_features.h"

namespace fastmlp::gemm_detail {

// How a micro-kernel reads A.
enum AMode : int {
    A_PACKED = 0,  // a(i,p) = A[p*MR + i]         (packed micro-panel, zero-padded rows)
    A_ROWS = 1,    // a(i,p) = A[i*rsa + p]        (op(A) row-major: NN, NT), needs m == MR
    A_COLS = 2,    // a(i,p) = A[p*csa + i]        (op(A) = stored A^T: TN, TT), needs m == MR
};

struct TileArgs {
    int64_t k;
    const float* a;
    int64_t lda;  // rsa for A_ROWS, csa for A_COLS, unused for A_PACKED
    const float* b;
    int64_t ldb;  // NR for packed B
    float* c;
    int64_t ldc;
    int64_t m, n;  // valid rows / columns of this tile (<= MR, <= NR)
    float alpha, beta;
    const float* bias;  // bias + j0 (this tile's first column), or null
    bool relu;
};

using MicroKernel = void (*)(const TileArgs&);
// Packs micro-panels; same contract as pack_panels below.
using PackFn = void (*)(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows,
                        int64_t k, int w, int64_t panel_begin, int64_t panel_end);

// The kernels of one ISA and the cache blocking that suits them.
struct KernelSet {
    const char* name;
    // Packed (BLIS) path: MR x NR register tile, A packed as MR-row micro-panels, B as NR-column ones.
    int mr, nr;
    int64_t mc, kc, nc;  // cache blocks: A block mc x kc (L2), B block kc x nc (L3), kc x nr in L1
    MicroKernel packed;
    PackFn pack;  // packing routine (ISA-specific where it pays, else pack_panels)
    // Small path (no packing of A): tiles of smr rows x snr columns; [0] narrow (n <= snr[0]),
    // [1] wide. Indexed by AMode; A_PACKED there serves edge tiles (m < smr) packed on the fly.
    int smr;
    int snr[2];
    MicroKernel small[2][3];
    // Dot path for C = A @ W^T with few rows (batch-1..16 forward, NT): tiles of dmr rows of A x
    // dnr rows of W, both read in place along K (a(i,p) = a[i*lda + p], b(p,j) = b[j*ldb + p]),
    // sums reduced in a fixed order. Tile rows past m reread row m-1 (results dropped); with
    // M == 1 the kernel takes 1 x 2*dnr tiles.
    int dmr, dnr;
    MicroKernel dot;
    // Small path, last rows (m < smr) of op(A) read in place, indexed like `small` (A_PACKED
    // unused); null where an ISA has none: the driver then packs those rows (zero-padded).
    MicroKernel small_last[2][3];
    // Narrow path (N <= 16, not a multiple of 8: e.g. a 10-class head), no 8-lane column padding:
    //  * narrow_dot (op(A) rows contiguous along K: NN, NT): a tile of up to ndmr rows x all
    //    t.n columns, a(i,p) = a[i*lda + p], b(p,j) = b[j*ldb + p] (rows of op(B)^T, the driver
    //    transposes a row-major B first); 8 lanes of p per FMA, reduced in a fixed order.
    //    Tile rows past m reread row m-1 (results dropped).
    //  * narrow_cols (op(A) columns contiguous along M: TN, TT): a tile of up to ncmr rows x all
    //    t.n columns, a(i,p) = a[p*lda + i], b(p,j) = b[p*ldb + j]; vectors run along i, one FMA
    //    per k step in order, the tile transposed on its store.
    // null where an ISA has none (the small path then serves these shapes).
    int ndmr;
    MicroKernel narrow_dot;
    int ncmr;
    MicroKernel narrow_cols;
};

const KernelSet& kernels_generic();
#if defined(FASTMLP_HAVE_X86_KERNELS)
const KernelSet& kernels_avx2();
const KernelSet& kernels_avx512();
#endif
const KernelSet& kernels_for(Isa isa);

// ---- packing (gemm_pack.cpp) ---------------------------------------------------------------
// Packs panels [panel_begin, panel_end) of a (rows x k) block X into dst, panel after panel:
// panel q holds rows [q*w, q*w+w) as k groups of w floats (dst[q*k*w + p*w + r]), rows past
// `rows` zero-filled. Element (r, p) of X is src[r*rs + p*ps]; either rs == 1 (plain copies) or
// ps == 1 (transposed in 4x4 blocks) is fast, anything else works.
void pack_panels(float* dst, const float* src, int64_t rs, int64_t ps, int64_t rows, int64_t k,
                 int w, int64_t panel_begin, int64_t panel_end);

// Copies the (k x n) matrix op(B) with element (p, j) at src[j*ldb + p] (a transposed B) into
// dst row-major with leading dimension ldd >= n.
void pack_transposed(float* dst, int64_t ldd, const float* src, int64_t ldb, int64_t k, int64_t n);

// ---- per-thread scratch ----------------------------------------------------------------------
// A 64-byte aligned buffer per thread and purpose, grown when too small, never freed until the
// thread exits: no allocation per call once warm.
enum ScratchSlot : int { SCRATCH_A = 0, SCRATCH_B = 1, SCRATCH_EDGE = 2, SCRATCH_SLOTS = 3 };
float* scratch(ScratchSlot slot, size_t floats);

}  // namespace fastmlp::gemm_detail
