// Runs fastmlp's CUDA elementwise kernels and reductions (csrc/cuda/elementwise_kernels.cuh) on the
// CPU (cuda_emulation.h) with the launch configurations of elementwise.cu, and checks them against
// plain double-precision loops: bias forward/backward, ReLU forward/backward (NaN, 0), the
// two-pass MSE reduction, MSE backward, SGD (every option) and the multi-tensor SGD step.
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/elementwise_emulator.cpp -o elementwise_emulator && ./elementwise_emulator
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "elementwise_kernels.cuh"

using namespace fastmlp::cuda::elementwise_impl;
using fastmlp::SgdOptions;
using fastmlp::cuda::SgdParam;

static int failures = 0, cases = 0;

static void expect(bool ok, const std::string& what) {
    ++cases;
    if (!ok) ++failures;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

static bool close(double got, double ref, double rtol, double atol) {
    if (std::isnan(ref)) return std::isnan(got);
    return std::fabs(got - ref) <= atol + rtol * std::fabs(ref);
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static unsigned grid_for(int64_t n, int64_t max_blocks = 65535) {
    return unsigned(std::min<int64_t>(std::max<int64_t>(cdiv(n, kThreads), 1), max_blocks));
}

static std::vector<float> randn(std::mt19937& rng, int64_t n) {
    std::normal_distribution<float> nd;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = nd(rng);
    return v;
}

int main() {
    std::mt19937 rng(7);
    // bias forward / backward
    for (auto [B, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 3}, {64, 10}, {3, 300}, {100, 33}, {40, 1}}) {
        auto x = randn(rng, B * C), bias = randn(rng, C), out(x);
        emu::launch(dim3(unsigned(cdiv(C, kThreads)), unsigned(std::min<int64_t>(B, 65535))), dim3(kThreads),
                    [&] { bias_forward_kernel(out.data(), x.data(), bias.data(), B, C); });
        bool ok = true;
        for (int64_t i = 0; i < B * C; ++i) ok &= out[size_t(i)] == x[size_t(i)] + bias[size_t(i % C)];
        expect(ok, "bias_forward " + std::to_string(B) + "x" + std::to_string(C));
        for (int acc = 0; acc < 2; ++acc) {
            std::vector<float> db(static_cast<size_t>(C), 0.5f);
            emu::launch(dim3(unsigned(cdiv(C, kBiasCols))), dim3(kBiasCols, kBiasRows),
                        [&] { bias_backward_kernel(db.data(), x.data(), B, C, acc != 0); });
            ok = true;
            for (int64_t c = 0; c < C; ++c) {
                double s = acc ? 0.5 : 0.0;
                for (int64_t r = 0; r < B; ++r) s += x[size_t(r * C + c)];
                ok &= close(db[size_t(c)], s, 1e-6, 1e-6);
            }
            expect(ok, "bias_backward " + std::to_string(B) + "x" + std::to_string(C) + (acc ? " accumulate" : ""));
        }
    }
    // relu forward / backward, mse backward
    for (int64_t n : {1, 5, 256, 1000, 70000}) {
        auto x = randn(rng, n), g = randn(rng, n), t = randn(rng, n);
        if (n >= 3) { x[0] = NAN; x[1] = 0.0f; x[2] = -0.0f; }
        std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n)), dm(static_cast<size_t>(n));
        const unsigned grid = n > 5000 ? 3 : grid_for(n);  // a short grid also tests the stride loop
        emu::launch(dim3(grid), dim3(kThreads), [&] { relu_forward_kernel(y.data(), x.data(), n); });
        emu::launch(dim3(grid), dim3(kThreads), [&] { relu_backward_kernel(dx.data(), g.data(), x.data(), n); });
        emu::launch(dim3(grid), dim3(kThreads), [&] { mse_backward_kernel(dm.data(), x.data(), t.data(), n, 0.25f); });
        bool ok_f = true, ok_b = true, ok_m = true;
        for (int64_t i = 0; i < n; ++i) {
            const float v = x[size_t(i)];
            const float r = v > 0 ? v : (std::isnan(v) ? v : 0.0f);
            ok_f &= std::isnan(r) ? std::isnan(y[size_t(i)]) : y[size_t(i)] == r;
            ok_b &= dx[size_t(i)] == (v > 0 ? g[size_t(i)] : 0.0f);
            ok_m &= std::isnan(v) ? std::isnan(dm[size_t(i)]) : dm[size_t(i)] == 0.25f * (v - t[size_t(i)]);
        }
        expect(ok_f, "relu_forward n=" + std::to_string(n));
        expect(ok_b, "relu_backward n=" + std::to_string(n));
        expect(ok_m, "mse_backward n=" + std::to_string(n));
    }
    // mse forward: one block, or partials + a fixed-order finish (as elementwise.cu launches it)
    for (int64_t n : {0, 1, 7, 2048, 2049, 50000, 300000}) {
        auto p = randn(rng, n), t = randn(rng, n);
        float loss = -1.0f;
        double loss64 = -1.0;
        const int blocks = int(std::min<int64_t>(std::max<int64_t>(cdiv(n, kThreads * 8), 1), 1024));
        if (blocks == 1) {
            emu::launch(dim3(1), dim3(kThreads), [&] {
                mse_forward_kernel(nullptr, &loss, &loss64, p.data(), t.data(), n, true);
            });
        } else {
            std::vector<double> part(size_t(blocks), NAN);
            emu::launch(dim3(unsigned(blocks)), dim3(kThreads), [&] {
                mse_forward_kernel(part.data(), nullptr, nullptr, p.data(), t.data(), n, false);
            });
            emu::launch(dim3(1), dim3(kThreads), [&] { mse_finish_kernel(&loss, &loss64, part.data(), blocks, n); });
        }
        double s = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double d = double(p[size_t(i)]) - t[size_t(i)];
            s += d * d;
        }
        const double ref = n ? s / double(n) : NAN;
        expect(close(loss64, ref, 1e-12, 0) && close(loss, ref, 1e-7, 0),
               "mse_forward n=" + std::to_string(n) + " blocks=" + std::to_string(blocks));
    }
    // SGD: one parameter, and many in one launch, vs a double reference of torch.optim.SGD
    std::vector<SgdOptions> opts(6);
    opts[0].lr = 0.1f;
    opts[1].lr = 0.1f; opts[1].weight_decay = 0.01f;
    opts[2].lr = 0.1f; opts[2].maximize = true;
    opts[3].lr = 0.05f; opts[3].momentum = 0.9f;
    opts[4].lr = 0.05f; opts[4].momentum = 0.9f; opts[4].dampening = 0.2f; opts[4].weight_decay = 0.1f;
    opts[5].lr = 0.05f; opts[5].momentum = 0.9f; opts[5].nesterov = true;
    for (size_t oi = 0; oi < opts.size(); ++oi) {
        const SgdOptions o = opts[oi];
        const std::vector<int64_t> sizes = {1, 20, 300, 1000};
        std::vector<std::vector<float>> ps, bufs, ps1, bufs1;
        std::vector<std::vector<double>> ref, rbuf;
        for (int64_t n : sizes) {
            ps.push_back(randn(rng, n));
            bufs.push_back(std::vector<float>(size_t(n), 0.0f));
            ref.emplace_back(ps.back().begin(), ps.back().end());
            rbuf.push_back(std::vector<double>(size_t(n), 0.0));
        }
        ps1 = ps;
        bufs1 = bufs;
        for (int step = 0; step < 3; ++step) {
            const bool first = step == 0;
            std::vector<std::vector<float>> gs;
            std::vector<SgdParam> table;
            int64_t max_n = 0;
            for (size_t i = 0; i < sizes.size(); ++i) {
                gs.push_back(randn(rng, sizes[i]));
                table.push_back({ps[i].data(), gs[i].data(), o.momentum != 0.0f ? bufs[i].data() : nullptr, sizes[i]});
                max_n = std::max(max_n, sizes[i]);
            }
            emu::launch(dim3(grid_for(max_n, 1024), unsigned(table.size())), dim3(kThreads), [&] {
                sgd_step_many_kernel(table.data(), int(table.size()), o, first);
            });
            for (size_t i = 0; i < sizes.size(); ++i) {
                const int64_t n = sizes[i];
                float* bp = o.momentum != 0.0f ? bufs1[i].data() : nullptr;
                emu::launch(dim3(grid_for(n)), dim3(kThreads),
                            [&] { sgd_step_kernel(ps1[i].data(), gs[i].data(), bp, n, o, first); });
                for (int64_t k = 0; k < n; ++k) {
                    double g = o.maximize ? -double(gs[i][size_t(k)]) : double(gs[i][size_t(k)]);
                    g += double(o.weight_decay) * ref[i][size_t(k)];
                    if (o.momentum != 0.0f) {
                        double& b = rbuf[i][size_t(k)];
                        b = first ? g : double(o.momentum) * b + (1.0 - o.dampening) * g;
                        g = o.nesterov ? g + double(o.momentum) * b : b;
                    }
                    ref[i][size_t(k)] -= double(o.lr) * g;
                }
            }
        }
        bool ok_many = true, ok_one = true;
        for (size_t i = 0; i < sizes.size(); ++i)
            for (int64_t k = 0; k < sizes[i]; ++k) {
                ok_many &= close(ps[i][size_t(k)], ref[i][size_t(k)], 1e-5, 1e-6);
                ok_one &= ps1[i][size_t(k)] == ps[i][size_t(k)];
            }
        expect(ok_many, "sgd_step_many options#" + std::to_string(oi));
        expect(ok_one, "sgd_step == sgd_step_many options#" + std::to_string(oi));
    }
    std::printf("%d/%d cases agree\n", cases - failures, cases);
    return failures ? 1 : 0;
}
