// The device code of fastmlp's CUDA SGEMM (see gemm.cu for the design), kept apart from the host
// driver so that tests/cuda_emulation can compile it as plain C++ (one std::thread per CUDA thread)
// and check the index arithmetic on machines without a GPU. Needs only float4/make_float4/__ldg,
// threadIdx/blockIdx/blockDim/gridDim and __syncthreads from its includer.
#pragma once
#include <algorithm>
#include <cstdint>

#include "fastmlp/gemm.h"  // GemmEpilogue

namespace fastmlp::cuda::gemm_impl {

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int kThreads = 256;
constexpr int kPad = 4;        // shared-memory row padding (floats): keeps float4 alignment
constexpr int kGroupM = 8;     // tile-row group of the block swizzle (L2 reuse of B panels)
constexpr int kMaxSplits = 16;

struct GemmParams {
    int64_t M, N, K;
    float alpha, beta;
    const float* A;
    int64_t lda;
    const float* B;
    int64_t ldb;
    float* C;
    int64_t ldc;
    const float* bias;
    float* partial;   // split-K: (splits, M, N) raw products; null: write C with the epilogue
    int64_t k_chunk;  // K per split (a multiple of BK); K when not split
    bool relu;
    // An element-wise activation other than ReLU (activation.h), applied after bias; pre_act,
    // when set, receives the value before it (same layout as C).
    fastmlp::ActParams act;
    float* pre_act;
    bool vec_a, vec_b, vec_c;  // 16-byte vector access allowed (pointer and ld aligned)
};

__device__ __forceinline__ float relu_keep_nan(float v) { return (v > 0.0f || v != v) ? v : 0.0f; }

// The activation (any kind but ReLU) as a real call: keeps its code and registers out of the
// tiled kernels' bodies, so plain and ReLU GEMMs are compiled as before.
#if defined(__CUDACC__)
static __device__ __noinline__
#else
inline
#endif
float epilogue_act(float v, float* pre, fastmlp::ActParams act) {
    if (pre) *pre = v;
    return fastmlp::act_forward_scalar(v, act);
}

__device__ __forceinline__ float epilogue(const GemmParams& p, float acc, int64_t m, int64_t n) {
    float v = p.alpha * acc;
    if (p.beta != 0.0f) v += p.beta * p.C[m * p.ldc + n];  // beta == 0: C is never read
    if (p.bias) v += p.bias[n];
    if (p.relu) return relu_keep_nan(v);
    if (p.act.kind != fastmlp::Act::identity)
        return epilogue_act(v, p.pre_act ? p.pre_act + m * p.ldc + n : nullptr, p.act);
    return v;
}

// Loads a BK-deep slice of a BO-wide panel (BO rows of A, or BO columns of B) into registers and
// stores it into shared memory as S[k][o]. KCONTIG: the panel is contiguous along k in memory
// (A not transposed, B transposed); otherwise it is contiguous along o.
template <int BO, int BK, bool KCONTIG>
struct PanelLoader {
    static constexpr int kSlots = BO * BK / 4 / kThreads;  // float4 per thread per slice
    static_assert(kSlots >= 1 && BO * BK == kSlots * 4 * kThreads, "tile does not fit the threads");
    static constexpr int kVecPerRow = KCONTIG ? BK / 4 : BO / 4;

    float4 r[kSlots];
    int o[kSlots], kk[kSlots];  // this thread's slots inside the slice
    int olim[kSlots];           // valid elements along o: KCONTIG 0/1 (row in range), else 0..4
    const float* ptr[kSlots];   // where the slot's first element is, for the current slice
    int64_t step;               // pointer advance per slice

    __device__ void init(const float* X, int64_t ld, int64_t o0, int64_t O, int64_t k0, int t) {
#pragma unroll
        for (int s = 0; s < kSlots; ++s) {
            const int idx = t + s * kThreads;
            if (KCONTIG) {
                o[s] = idx / kVecPerRow;
                kk[s] = (idx % kVecPerRow) * 4;
                olim[s] = o0 + o[s] < O ? 1 : 0;
                ptr[s] = X + (olim[s] ? (o0 + o[s]) * ld + (k0 + kk[s]) : 0);
            } else {
                kk[s] = idx / kVecPerRow;
                o[s] = (idx % kVecPerRow) * 4;
                olim[s] = int(min(max(O - (o0 + o[s]), int64_t(0)), int64_t(4)));
                ptr[s] = X + (olim[s] ? (k0 + kk[s]) * ld + (o0 + o[s]) : 0);
            }
        }
        step = KCONTIG ? BK : BK * ld;
    }

    // Global -> registers for the current slice, of which `rem` k values (rem >= 1) are in range;
    // zero outside the matrix. Out-of-range rows keep their pointer at X and are never read.
    __device__ void load(int rem, bool vec) {
#pragma unroll
        for (int s = 0; s < kSlots; ++s) {
            const float* src = ptr[s];
            float v[4];
            if (KCONTIG) {
                if (vec && olim[s] && kk[s] + 3 < rem) {
                    r[s] = __ldg(reinterpret_cast<const float4*>(src));
                    continue;
                }
#pragma unroll
                for (int j = 0; j < 4; ++j) v[j] = (olim[s] && kk[s] + j < rem) ? __ldg(src + j) : 0.0f;
            } else {
                if (vec && kk[s] < rem && olim[s] == 4) {
                    r[s] = __ldg(reinterpret_cast<const float4*>(src));
                    continue;
                }
#pragma unroll
                for (int j = 0; j < 4; ++j) v[j] = (kk[s] < rem && j < olim[s]) ? __ldg(src + j) : 0.0f;
            }
            r[s] = make_float4(v[0], v[1], v[2], v[3]);
        }
    }

    __device__ void advance() {
#pragma unroll
        for (int s = 0; s < kSlots; ++s)
            if (olim[s]) ptr[s] += step;
    }

    __device__ void store(float (*S)[BO + kPad]) const {
#pragma unroll
        for (int s = 0; s < kSlots; ++s) {
            if (KCONTIG) {
                S[kk[s] + 0][o[s]] = r[s].x;
                S[kk[s] + 1][o[s]] = r[s].y;
                S[kk[s] + 2][o[s]] = r[s].z;
                S[kk[s] + 3][o[s]] = r[s].w;
            } else {
                *reinterpret_cast<float4*>(&S[kk[s]][o[s]]) = r[s];
            }
        }
    }
};

// C tile (BM, BN) of one block; A (M,K) or (K,M) if TA; B (K,N) or (N,K) if TB; blockIdx.z = split.
template <int BM, int BN, int BK, bool TA, bool TB>
__global__ void __launch_bounds__(kThreads, (BM * BN >= 128 * 128) ? 2 : 1)
sgemm_tiled_kernel(const GemmParams p) {
    constexpr int WM = BM / 64, WN = BN / 64;  // 4x4 sub-tiles per thread along M and N
    static_assert(WM >= 1 && WN >= 1 && BM % 64 == 0 && BN % 64 == 0, "tiles are multiples of 64");
    __shared__ __align__(16) float As[2][BK][BM + kPad];
    __shared__ __align__(16) float Bs[2][BK][BN + kPad];

    // Block swizzle: groups of kGroupM tile rows walk down a column of tiles together.
    const int64_t tiles_m = ceil_div(p.M, BM), tiles_n = ceil_div(p.N, BN);
    const int64_t bid = blockIdx.x;
    const int64_t per_group = int64_t(kGroupM) * tiles_n;
    const int64_t first_m = (bid / per_group) * kGroupM;
    const int64_t group_rows = min(tiles_m - first_m, int64_t(kGroupM));
    const int64_t in_group = bid % per_group;
    const int64_t m0 = (first_m + in_group % group_rows) * BM;
    const int64_t n0 = (in_group / group_rows) * BN;

    const int64_t kbeg = int64_t(blockIdx.z) * p.k_chunk;
    const int64_t kend = min(p.K, kbeg + p.k_chunk);

    const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
    const int ty = (warp >> 2) * 8 + (lane >> 2);  // 0..15: rows ty*4 + i*64
    const int tx = (warp & 3) * 4 + (lane & 3);    // 0..15: cols tx*4 + j*64

    PanelLoader<BM, BK, !TA> la;
    PanelLoader<BN, BK, TB> lb;
    la.init(p.A, p.lda, m0, p.M, kbeg, t);
    lb.init(p.B, p.ldb, n0, p.N, kbeg, t);
    float acc[WM * 4][WN * 4];
#pragma unroll
    for (int i = 0; i < WM * 4; ++i)
#pragma unroll
        for (int j = 0; j < WN * 4; ++j) acc[i][j] = 0.0f;

    int cur = 0;
    if (kbeg < kend) {
        const int rem = int(min(kend - kbeg, int64_t(BK)));
        la.load(rem, p.vec_a);
        lb.load(rem, p.vec_b);
        la.store(As[0]);
        lb.store(Bs[0]);
        __syncthreads();
    }
    for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
        const bool has_next = k0 + BK < kend;
        if (has_next) {  // prefetch the next slice into registers while this one is multiplied
            la.advance();
            lb.advance();
            const int rem = int(min(kend - (k0 + BK), int64_t(BK)));
            la.load(rem, p.vec_a);
            lb.load(rem, p.vec_b);
        }
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[WM * 4], b[WN * 4];
#pragma unroll
            for (int i = 0; i < WM; ++i) {
                const float4 v = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4 + i * 64]);
                a[i * 4 + 0] = v.x; a[i * 4 + 1] = v.y; a[i * 4 + 2] = v.z; a[i * 4 + 3] = v.w;
            }
#pragma unroll
            for (int j = 0; j < WN; ++j) {
                const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4 + j * 64]);
                b[j * 4 + 0] = v.x; b[j * 4 + 1] = v.y; b[j * 4 + 2] = v.z; b[j * 4 + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < WM * 4; ++i)
#pragma unroll
                for (int j = 0; j < WN * 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (has_next) {
            la.store(As[cur ^ 1]);
            lb.store(Bs[cur ^ 1]);
        }
        __syncthreads();
        cur ^= 1;
    }

    // Epilogue: split-K partials are stored raw; otherwise alpha, beta, bias, ReLU into C.
    float* out = p.partial ? p.partial + int64_t(blockIdx.z) * p.M * p.N : p.C;
    const int64_t ldo = p.partial ? p.N : p.ldc;
    const bool vec_out = p.partial ? (p.N % 4 == 0) : p.vec_c;
#pragma unroll
    for (int i = 0; i < WM; ++i) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int64_t m = m0 + ty * 4 + i * 64 + r;
            if (m >= p.M) continue;
#pragma unroll
            for (int j = 0; j < WN; ++j) {
                const int64_t n = n0 + tx * 4 + j * 64;
                const float* a4 = &acc[i * 4 + r][j * 4];
                float* dst = out + m * ldo + n;
                if (p.partial) {
                    if (vec_out && n + 3 < p.N) {
                        *reinterpret_cast<float4*>(dst) = make_float4(a4[0], a4[1], a4[2], a4[3]);
                    } else {
#pragma unroll
                        for (int c = 0; c < 4; ++c)
                            if (n + c < p.N) dst[c] = a4[c];
                    }
                } else if (vec_out && n + 3 < p.N) {
                    float4 v;
                    v.x = epilogue(p, a4[0], m, n + 0);
                    v.y = epilogue(p, a4[1], m, n + 1);
                    v.z = epilogue(p, a4[2], m, n + 2);
                    v.w = epilogue(p, a4[3], m, n + 3);
                    *reinterpret_cast<float4*>(dst) = v;
                } else {
#pragma unroll
                    for (int c = 0; c < 4; ++c)
                        if (n + c < p.N) dst[c] = epilogue(p, a4[c], m, n + c);
                }
            }
        }
    }
}

// Second pass of split-K: C (M,N) = epilogue(sum over s of partial (splits, M, N)), s in order.
__global__ void sgemm_splitk_reduce_kernel(const GemmParams p, int splits) {
    const int64_t total = p.M * p.N, plane = p.M * p.N;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < splits; ++z) s += p.partial[z * plane + i];
        const int64_t m = i / p.N, n = i % p.N;
        p.C[m * p.ldc + n] = epilogue(p, s, m, n);
    }
}

// Reference: one thread per element of C (M,N), plain dot product in K order.
__global__ void sgemm_reference_kernel(const GemmParams p, bool ta, bool tb) {
    const int64_t total = p.M * p.N;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t m = i / p.N, n = i % p.N;
        float s = 0.0f;
        for (int64_t k = 0; k < p.K; ++k) {
            const float a = ta ? p.A[k * p.lda + m] : p.A[m * p.lda + k];
            const float b = tb ? p.B[n * p.ldb + k] : p.B[k * p.ldb + n];
            s = fmaf(a, b, s);
        }
        p.C[m * p.ldc + n] = epilogue(p, s, m, n);
    }
}

bool aligned16(const void* ptr, int64_t ld) {
    return (reinterpret_cast<uintptr_t>(ptr) % 16 == 0) && (ld % 4 == 0);
}

enum class Tile { t128, t64 };

struct Plan {
    Tile tile;
    int splits;
    int64_t k_chunk;
};

Plan make_plan(int64_t M, int64_t N, int64_t K, int sms) {
    Plan pl{Tile::t128, 1, std::max<int64_t>(K, 1)};
    const int64_t tiles128 = ceil_div(M, 128) * ceil_div(N, 128);
    if (tiles128 >= sms) return pl;
    pl.tile = Tile::t64;
    const int64_t tiles64 = ceil_div(M, 64) * ceil_div(N, 64);
    if (tiles64 >= sms || K < 256) return pl;
    // Under-filled GPU and long K: split K so that about two blocks per SM run, each split at
    // least 128 deep. The split depends on the shape and SM count only (deterministic).
    int64_t splits = std::min<int64_t>(ceil_div(2 * int64_t(sms), tiles64), K / 128);
    splits = std::min<int64_t>(std::max<int64_t>(splits, 1), kMaxSplits);
    if (splits <= 1) return pl;
    const int64_t chunk = ceil_div(ceil_div(K, splits), 16) * 16;  // multiple of both BKs
    pl.k_chunk = chunk;
    pl.splits = int(ceil_div(K, chunk));
    return pl;
}

GemmParams make_params(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                       const GemmEpilogue& epi) {
    GemmParams p{};
    p.M = M; p.N = N; p.K = K;
    p.alpha = alpha; p.beta = beta;
    p.A = A; p.lda = lda; p.B = B; p.ldb = ldb; p.C = C; p.ldc = ldc;
    p.bias = epi.bias;
    p.relu = epilogue_relu(epi);
    p.act = epilogue_tile_act(epi) ? epi.act : fastmlp::ActParams{};
    p.pre_act = epilogue_tile_act(epi) ? epi.pre_act : nullptr;
    p.partial = nullptr;
    p.k_chunk = std::max<int64_t>(K, 1);
    p.vec_a = aligned16(A, lda);
    p.vec_b = aligned16(B, ldb);
    p.vec_c = aligned16(C, ldc);
    return p;
}

}  // namespace fastmlp::cuda::gemm_impl
