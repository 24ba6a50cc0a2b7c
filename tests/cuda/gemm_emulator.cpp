// Runs fastmlp's CUDA SGEMM device code (csrc/cuda/gemm_kernels.cuh) on the CPU (cuda_emulation.h),
// to check its index arithmetic (tiles, swizzle, loaders, vector/scalar paths, edges, split-K,
// epilogue) on machines without a GPU.
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/gemm_emulator.cpp -o gemm_emulator
//   ./gemm_emulator            # prints one line per case, exit status 1 on any mismatch
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "gemm_kernels.cuh"

using namespace fastmlp::cuda::gemm_impl;

template <int BM, int BN, int BK>
static void run_tiled(bool ta, bool tb, const GemmParams& p, int splits) {
    const unsigned tiles = unsigned(ceil_div(p.M, BM) * ceil_div(p.N, BN));
    auto go = [&](auto kern) { emu::launch(dim3(tiles, 1, unsigned(splits)), dim3(kThreads), [&] { kern(p); }); };
    if (!ta && !tb) go(sgemm_tiled_kernel<BM, BN, BK, false, false>);
    else if (!ta && tb) go(sgemm_tiled_kernel<BM, BN, BK, false, true>);
    else if (ta && !tb) go(sgemm_tiled_kernel<BM, BN, BK, true, false>);
    else go(sgemm_tiled_kernel<BM, BN, BK, true, true>);
}

// The host driver of gemm.cu's sgemm(), with the SM count as a parameter.
static std::string emu_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                             float* C, int64_t ldc, fastmlp::GemmEpilogue epi, int sms) {
    if (M <= 0 || N <= 0) return "none";
    GemmParams p = make_params(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
    const Plan pl = make_plan(M, N, K, sms);
    if (pl.splits <= 1) {
        if (pl.tile == Tile::t128) run_tiled<128, 128, 8>(ta, tb, p, 1);
        else run_tiled<64, 64, 16>(ta, tb, p, 1);
        return pl.tile == Tile::t128 ? "128x128" : "64x64";
    }
    std::vector<float> partial(size_t(pl.splits) * size_t(M) * size_t(N), NAN);
    p.partial = partial.data();
    p.k_chunk = pl.k_chunk;
    run_tiled<64, 64, 16>(ta, tb, p, pl.splits);
    emu::launch(dim3(1), dim3(1), [&] { sgemm_splitk_reduce_kernel(p, pl.splits); });
    return "64x64 split-K " + std::to_string(pl.splits);
}

// ---- cases --------------------------------------------------------------------------------------
struct Case {
    int64_t M, N, K;
    bool ta, tb;
    int pad;     // extra elements per row (leading dimension = width + pad)
    int offset;  // base pointer offset in floats (1: not 16-byte aligned)
    float alpha, beta;
    bool bias, relu;
    int sms;
};

static bool run_case(const Case& c, std::mt19937& rng) {
    std::normal_distribution<float> nd;
    const int64_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K;  // A as stored
    const int64_t br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;  // B as stored
    const int64_t lda = std::max<int64_t>(ac + c.pad, 1), ldb = std::max<int64_t>(bc + c.pad, 1),
                  ldc = c.N + c.pad;
    std::vector<float> abuf(size_t(ar * lda + c.offset + 4)), bbuf(size_t(br * ldb + c.offset + 4)),
        cbuf(size_t(c.M * ldc + c.offset + 4)), bias(size_t(c.N));
    for (auto& v : abuf) v = nd(rng);
    for (auto& v : bbuf) v = nd(rng);
    for (auto& v : bias) v = nd(rng);
    for (auto& v : cbuf) v = c.beta == 0.0f ? NAN : nd(rng);
    std::vector<float> c0 = cbuf;
    const float* A = abuf.data() + c.offset;
    const float* B = bbuf.data() + c.offset;
    float* C = cbuf.data() + c.offset;
    fastmlp::GemmEpilogue epi;
    epi.bias = c.bias ? bias.data() : nullptr;
    epi.relu = c.relu;
    const std::string plan =
        emu_sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A, lda, B, ldb, c.beta, C, ldc, epi, c.sms);
    double maxerr = 0.0;
    bool ok = true;
    for (int64_t m = 0; m < c.M; ++m)
        for (int64_t n = 0; n < ldc; ++n) {
            const size_t idx = size_t(c.offset + m * ldc + n);
            if (n >= c.N) {  // padding must be untouched
                if (!(std::isnan(cbuf[idx]) && std::isnan(c0[idx])) && cbuf[idx] != c0[idx]) ok = false;
                continue;
            }
            double s = 0.0;
            for (int64_t k = 0; k < c.K; ++k) {
                const double a = c.ta ? A[k * lda + m] : A[m * lda + k];
                const double b = c.tb ? B[n * ldb + k] : B[k * ldb + n];
                s += a * b;
            }
            double r = c.alpha * s;
            if (c.beta != 0.0f) r += double(c.beta) * c0[idx];
            if (c.bias) r += bias[size_t(n)];
            if (c.relu) r = std::max(r, 0.0);
            const double err = std::fabs(double(C[m * ldc + n]) - r);
            if (!(err <= 1e-4 * std::fabs(r) + 2e-6 * double(c.K) + 1e-6)) ok = false;  // NaN fails
            maxerr = std::max(maxerr, std::isnan(err) ? INFINITY : err);
        }
    std::printf("%s M=%lld N=%lld K=%lld %c%c pad=%d off=%d alpha=%g beta=%g bias=%d relu=%d sms=%d "
                "[%s] max_err=%.3g\n",
                ok ? "ok  " : "FAIL", (long long)c.M, (long long)c.N, (long long)c.K, c.ta ? 'T' : 'N',
                c.tb ? 'T' : 'N', c.pad, c.offset, c.alpha, c.beta, int(c.bias), int(c.relu), c.sms,
                plan.c_str(), maxerr);
    return ok;
}

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
    std::mt19937 rng(1234);
    struct Shape {
        int64_t M, N, K;
        int sms;
    };
    std::vector<Shape> shapes = {
        {1, 1, 1, 132},     {3, 5, 7, 132},     {64, 10, 20, 132},   {63, 65, 67, 132},
        {2, 3, 0, 132},     {129, 127, 9, 2},   {128, 128, 8, 1},    {200, 130, 100, 132},
        {70, 50, 1000, 132}, {64, 64, 520, 132}, {257, 129, 33, 1},  {5, 300, 260, 132},
    };
    if (quick) shapes.resize(9);
    int failures = 0, n = 0;
    for (const Shape& s : shapes)
        for (int t = 0; t < 4; ++t)
            for (int layout = 0; layout < 3; ++layout) {
                Case c{s.M, s.N, s.K, bool(t & 2), bool(t & 1), layout == 0 ? 0 : (layout == 1 ? 3 : 4),
                       layout == 2 ? 1 : 0, 1.0f, 0.0f, false, false, s.sms};
                if (layout == 1) {  // exercise the epilogue on the padded layout
                    c.alpha = 0.5f;
                    c.beta = (t & 1) ? 0.0f : 0.75f;
                    c.bias = true;
                    c.relu = t >= 2;
                }
                failures += !run_case(c, rng);
                ++n;
            }
    std::printf("%d/%d cases agree\n", n - failures, n);
    return failures ? 1 : 0;
}
