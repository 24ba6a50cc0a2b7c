// Runs fastmlp's CUDA activation kernels (csrc/cuda/activations_kernels.cuh) and the GEMM epilogue's
// activation (csrc/cuda/gemm_kernels.cuh) on the CPU (cuda_emulation.h) with the launch
// configurations of activations.cu / gemm.cu, against double-precision loops: every activation
// kind forward and backward (NaN, +-inf, short grids for the stride loop), softmax / log_softmax
// forward and backward (odd widths, rows with -inf / NaN), and Linear+activation through the tiled,
// split-K and reference GEMM kernels with the pre-activation stored.
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/activations_emulator.cpp -o activations_emulator && ./activations_emulator
#include <array>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "activations_kernels.cuh"
#include "gemm_kernels.cuh"

using namespace fastmlp::cuda::activations_impl;
using fastmlp::Act;
using fastmlp::ActParams;

static int failures = 0, cases = 0;

static void expect(bool ok, const std::string& what) {
    ++cases;
    if (!ok) ++failures;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

static bool close(double got, double ref, double rtol, double atol) {
    if (std::isnan(ref)) return std::isnan(got);
    if (std::isinf(ref)) return got == ref;
    return std::fabs(got - ref) <= atol + rtol * std::fabs(ref);
}

static double sig(double x) { return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)); }

// float64 forward / derivative of each kind (the rules of activation.h)
static double ref_f(Act k, double z, double a, double b) {
    switch (k) {
        case Act::identity: return z;
        case Act::relu: return z > 0 ? z : (z != z ? z : 0.0);
        case Act::tanh: return std::tanh(z);
        case Act::sigmoid: return sig(z);
        case Act::gelu: return z * 0.5 * std::erfc(-z / std::sqrt(2.0));
        case Act::gelu_tanh: return z * sig(2 * std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z));
        case Act::silu: return z * sig(z);
        case Act::leaky_relu: return z > 0 ? z : a * z;
        case Act::elu: return z > 0 ? z : a * std::expm1(z);
        case Act::softplus: return a * z > b ? z : std::log1p(std::exp(a * z)) / a;
        case Act::hardtanh: return z < a ? a : (z > b ? b : z);
    }
    return z;
}
static double ref_d(Act k, double z, double a, double b) {
    switch (k) {
        case Act::identity: return 1;
        case Act::relu: return z > 0 ? 1 : 0;
        case Act::tanh: return 1 - std::tanh(z) * std::tanh(z);
        case Act::sigmoid: return sig(z) * (1 - sig(z));
        case Act::gelu: return 0.5 * std::erfc(-z / std::sqrt(2.0)) + z * std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI);
        case Act::gelu_tanh: {
            const double k0 = std::sqrt(2 / M_PI), u2 = 2 * k0 * (z + 0.044715 * z * z * z), s = sig(u2);
            return s + 2 * z * s * sig(-u2) * k0 * (1 + 3 * 0.044715 * z * z);
        }
        case Act::silu: return sig(z) * (1 + z * sig(-z));
        case Act::leaky_relu: return z > 0 ? 1 : a;
        case Act::elu: return z > 0 ? 1 : a * std::exp(z);
        case Act::softplus: return a * z > b ? 1 : sig(a * z);
        case Act::hardtanh: return (z > a && z < b) ? 1 : 0;
    }
    return 1;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int main() {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    const float params[fastmlp::kActCount][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0},
                                                 {0, 0}, {0.1f, 0}, {1.3f, 0}, {1.5f, 20.f}, {-0.5f, 2.f}};
    // ---- element-wise kinds -------------------------------------------------------------------
    for (int ki = 0; ki < fastmlp::kActCount; ++ki) {
        const Act k = static_cast<Act>(ki);
        const ActParams p{k, params[ki][0], params[ki][1]};
        for (int64_t n : {1, 7, 300, 5000}) {
            std::vector<float> z(static_cast<size_t>(n)), g(static_cast<size_t>(n)), y(static_cast<size_t>(n)), d(static_cast<size_t>(n));
            for (auto& v : z) v = 4.0f * nd(rng);
            for (auto& v : g) v = nd(rng);
            if (n >= 7) { z[0] = NAN; z[1] = INFINITY; z[2] = -INFINITY; z[3] = 0.0f; z[4] = -30.0f; z[5] = 30.0f; }
            const unsigned grid = n > 1000 ? 3 : unsigned(cdiv(n, kThreads));
            emu::launch(dim3(grid), dim3(kThreads), [&] { act_forward_kernel(y.data(), z.data(), n, p); });
            emu::launch(dim3(grid), dim3(kThreads), [&] { act_backward_kernel(d.data(), g.data(), z.data(), y.data(), n, p); });
            bool okf = true, okb = true;
            for (int64_t i = 0; i < n; ++i) {
                const double zi = z[size_t(i)];
                if (k != Act::gelu && k != Act::gelu_tanh && k != Act::silu) {
                    okf &= close(y[size_t(i)], ref_f(k, zi, p.p0, p.p1), 1e-5, 1e-30);
                } else if (std::isfinite(zi)) {
                    okf &= close(y[size_t(i)], ref_f(k, zi, p.p0, p.p1), 1e-5, 1e-30);
                } else {
                    okf &= std::isnan(zi) ? std::isnan(y[size_t(i)]) : (zi > 0 ? y[size_t(i)] == zi : std::isnan(y[size_t(i)]));
                }
                if (std::isfinite(zi) && std::fabs(zi) < 25) {
                    // tanh/sigmoid read y (rounded): absolute slack of a few ulp of 1
                    okb &= close(d[size_t(i)], g[size_t(i)] * ref_d(k, zi, p.p0, p.p1), 1e-5,
                                 1e-6 * std::fabs(g[size_t(i)]));
                }
            }
            expect(okf, std::string("act_forward kind ") + std::to_string(ki) + " n=" + std::to_string(n));
            expect(okb, std::string("act_backward kind ") + std::to_string(ki) + " n=" + std::to_string(n));
        }
    }
    // ---- softmax / log_softmax ----------------------------------------------------------------
    for (auto [R, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {5, 256}, {2, 1000}, {70, 33}}) {
        for (int log = 0; log < 2; ++log) {
            std::vector<float> x(static_cast<size_t>(R * C)), g(static_cast<size_t>(R * C)), y(static_cast<size_t>(R * C)), d(static_cast<size_t>(R * C));
            for (auto& v : x) v = 5.0f * nd(rng);
            for (auto& v : g) v = nd(rng);
            if (R >= 3 && C >= 3) { x[0] = -INFINITY; x[size_t(C)] = NAN; }
            const unsigned grid = R > 10 ? 4 : unsigned(R);
            emu::launch(dim3(grid), dim3(kRowThreads), [&] { softmax_forward_kernel(y.data(), x.data(), R, C, log != 0); });
            emu::launch(dim3(grid), dim3(kRowThreads), [&] { softmax_backward_kernel(d.data(), g.data(), y.data(), R, C, log != 0); });
            bool okf = true, okb = true;
            for (int64_t r = 0; r < R; ++r) {
                const float* xr = x.data() + r * C;
                double m = -INFINITY;
                bool nan = false;
                for (int64_t j = 0; j < C; ++j) { m = std::max(m, double(xr[j])); nan |= std::isnan(xr[j]); }
                double s = 0;
                for (int64_t j = 0; j < C; ++j) s += std::exp(double(xr[j]) - m);
                std::vector<double> yr(static_cast<size_t>(C));
                for (int64_t j = 0; j < C; ++j) {
                    const double v = double(xr[j]) - m;
                    yr[size_t(j)] = nan ? NAN : (log ? v - std::log(s) : std::exp(v) / s);
                    
                    okf &= close(y[size_t(r * C + j)], yr[size_t(j)], 2e-5, 3e-7);  // float sum of exps
                }
                if (nan) continue;
                double gs = 0;
                for (int64_t j = 0; j < C; ++j) gs += log ? g[size_t(r * C + j)] : g[size_t(r * C + j)] * yr[size_t(j)];
                for (int64_t j = 0; j < C; ++j) {
                    const double gj = g[size_t(r * C + j)];
                    const double ref = log ? gj - std::exp(yr[size_t(j)]) * gs : yr[size_t(j)] * (gj - gs);
                    okb &= close(d[size_t(r * C + j)], ref, 1e-4, 1e-5);
                }
            }
            const std::string nm = std::string(log ? "log_softmax" : "softmax") + " " + std::to_string(R) + "x" + std::to_string(C);
            expect(okf, nm + " forward");
            expect(okb, nm + " backward");
        }
    }
    // ---- GEMM epilogue with an activation (Linear + act) ---------------------------------------
    using namespace fastmlp::cuda::gemm_impl;
    for (auto [M, N, K] : std::vector<std::array<int64_t, 3>>{{5, 7, 3}, {70, 130, 33}, {64, 64, 2048}}) {
        for (int ki : {int(Act::gelu), int(Act::tanh), int(Act::softplus)}) {
            const Act k = static_cast<Act>(ki);
            const ActParams p{k, params[ki][0], params[ki][1]};
            std::vector<float> A(static_cast<size_t>(M * K)), W(static_cast<size_t>(N * K)), bias(static_cast<size_t>(N)), C(static_cast<size_t>(M * N), NAN),
                Z(size_t(M * N), NAN), C2(size_t(M * N), NAN);
            for (auto& v : A) v = nd(rng);
            for (auto& v : W) v = nd(rng) / std::sqrt(float(K));
            for (auto& v : bias) v = nd(rng);
            fastmlp::GemmEpilogue epi;
            epi.bias = bias.data();
            epi.act = p;
            epi.pre_act = Z.data();
            // NT (x @ W^T): the plan gemm.cu picks for 132 SMs
            GemmParams gp = make_params(M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, C.data(), N, epi);
            const Plan pl = make_plan(M, N, K, 132);
            std::vector<float> partial;
            const unsigned tiles64 = unsigned(ceil_div(M, 64) * ceil_div(N, 64));
            if (pl.splits <= 1) {
                emu::launch(dim3(tiles64), dim3(fastmlp::cuda::gemm_impl::kThreads), [&] { sgemm_tiled_kernel<64, 64, 16, false, true>(gp); });
            } else {
                partial.assign(size_t(pl.splits) * size_t(M * N), NAN);
                gp.partial = partial.data();
                gp.k_chunk = pl.k_chunk;
                emu::launch(dim3(tiles64, 1, unsigned(pl.splits)), dim3(fastmlp::cuda::gemm_impl::kThreads), [&] { sgemm_tiled_kernel<64, 64, 16, false, true>(gp); });
                emu::launch(dim3(1), dim3(1), [&] { sgemm_splitk_reduce_kernel(gp, pl.splits); });
            }
            fastmlp::GemmEpilogue e2 = epi;
            e2.pre_act = nullptr;
            const GemmParams rp = make_params(M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, C2.data(), N, e2);
            emu::launch(dim3(4), dim3(256), [&] { sgemm_reference_kernel(rp, false, true); });
            bool ok = true, okr = true;
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < N; ++j) {
                    double z = bias[size_t(j)];
                    for (int64_t q = 0; q < K; ++q) z += double(A[size_t(i * K + q)]) * W[size_t(j * K + q)];
                    const double y = ref_f(k, z, p.p0, p.p1);
                    ok &= close(Z[size_t(i * N + j)], z, 1e-4, 1e-4) && close(C[size_t(i * N + j)], y, 1e-4, 1e-4);
                    okr &= close(C2[size_t(i * N + j)], y, 1e-4, 1e-4);
                }
            const std::string nm = "gemm NT + act " + std::to_string(ki) + " " + std::to_string(M) + "x" +
                                   std::to_string(N) + "x" + std::to_string(K) + (pl.splits > 1 ? " split-K" : "");
            expect(ok, nm);
            expect(okr, nm + " reference kernel");
        }
    }
    std::printf("%d of %d cases agree\n", cases - failures, cases);
    return failures ? 1 : 0;
}
