// Runs fastmlp's CUDA loss kernels (csrc/cuda/losses_kernels.cuh) on the CPU (cuda_emulation.h) with
// the launch configurations of losses.cu, and checks them against plain double-precision loops:
// softmax cross-entropy with class indices (weights, ignore_index, label smoothing, (N,C,D)
// layouts, rows longer and shorter than a block, a short grid's row stride, per-row upstream
// gradients, an out-of-range class giving NaN) and with class probabilities; the element-wise
// losses (mse, l1, smooth_l1, huber, bce_with_logits with pos_weight, weights) forward partials +
// fixed-order finish and backward.
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/losses_emulator.cpp -o losses_emulator && ./losses_emulator
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "losses_kernels.cuh"

using namespace fastmlp::cuda::losses_impl;
using fastmlp::Loss;
using fastmlp::LossParams;

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

static std::vector<float> randn(std::mt19937& rng, int64_t n, float scale = 1.0f) {
    std::normal_distribution<float> nd;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = scale * nd(rng);
    return v;
}

// Double reference of one class-index row: loss and the gradient coefficients.
static double ref_row(const std::vector<float>& x, int64_t off, int64_t C, int64_t D, int64_t y,
                      const float* w, double s, double g, std::vector<double>* grad) {
    double m = -INFINITY;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, double(x[size_t(off + c * D)]));
    double se = 0.0;
    for (int64_t c = 0; c < C; ++c) se += std::exp(double(x[size_t(off + c * D)]) - m);
    const double lse = m + std::log(se);
    double loss = 0.0, A = 0.0;
    std::vector<double> a(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
        const double wc = w ? w[c] : 1.0;
        a[size_t(c)] = (s / double(C)) * wc + (c == y ? (1.0 - s) * wc : 0.0);
        A += a[size_t(c)];
        loss -= a[size_t(c)] * (double(x[size_t(off + c * D)]) - lse);
    }
    if (grad)
        for (int64_t c = 0; c < C; ++c)
            (*grad)[size_t(off + c * D)] = g * (A * std::exp(double(x[size_t(off + c * D)]) - lse) - a[size_t(c)]);
    return loss;
}

int main() {
    std::mt19937 rng(11);
    struct Case { int64_t N, C, D; };
    const std::vector<Case> shapes = {{1, 1, 1}, {5, 3, 1}, {7, 300, 1}, {4, 6, 3}, {3, 257, 2}, {70, 4, 1}};
    for (const Case& k : shapes) {
        for (int variant = 0; variant < 4; ++variant) {
            const bool weighted = variant & 1;
            const float ls = (variant & 2) ? 0.2f : 0.0f;
            const int64_t N = k.N, C = k.C, D = k.D, R = N * D;
            auto x = randn(rng, N * C * D, 3.0f);
            std::vector<int64_t> t(static_cast<size_t>(R));
            std::uniform_int_distribution<int64_t> cls(0, C - 1);
            for (auto& v : t) v = cls(rng);
            const int64_t ii = -100;
            if (R > 2) t[1] = ii;
            std::vector<float> w = randn(rng, C);
            for (auto& v : w) v = std::fabs(v) + 0.1f;
            const float* wp = weighted ? w.data() : nullptr;
            auto drow = randn(rng, R);
            for (int mode = 0; mode < 2; ++mode) {  // 0: mean (divide by the weight sum), 1: per-row upstream
                std::vector<float> dx(x.size(), -7.0f), rows_f(static_cast<size_t>(R));
                std::vector<double> rows(static_cast<size_t>(R));
                double wsum = -1, wtot = -1, lsum = -1;
                emu::launch(dim3(1), dim3(kThreads), [&] { ce_weight_sum_kernel(&wsum, t.data(), wp, R, ii); });
                if (wp) emu::launch(dim3(1), dim3(kThreads), [&] { weights_total_kernel(&wtot, wp, C); });
                const unsigned grid = R > 20 ? 7u : unsigned(R);  // a short grid tests the row stride
                emu::launch(dim3(grid), dim3(kThreads), [&] {
                    ce_index_kernel(dx.data(), rows.data(), x.data(), t.data(), wp, mode == 0 ? &wsum : nullptr,
                                    mode == 1 ? drow.data() : nullptr, 1.5, N, C, D, ii, ls,
                                    wp ? &wtot : nullptr);
                });
                emu::launch(dim3(1), dim3(kThreads), [&] { sum_rows_kernel(&lsum, rows_f.data(), rows.data(), R); });
                double rws = 0.0, rls = 0.0;
                for (int64_t r = 0; r < R; ++r)
                    if (t[size_t(r)] != ii) rws += wp ? wp[t[size_t(r)]] : 1.0;
                std::vector<double> rg(x.size(), 0.0);
                bool ok_rows = true;
                for (int64_t r = 0; r < R; ++r) {
                    const int64_t n = r / D, d = r % D, off = n * C * D + d;
                    double l = 0.0;
                    if (t[size_t(r)] != ii) {
                        const double g = mode == 0 ? 1.5 / rws : 1.5 * drow[size_t(r)];
                        l = ref_row(x, off, C, D, t[size_t(r)], wp, ls, g, &rg);
                    }
                    rls += l;
                    ok_rows &= close(rows[size_t(r)], l, 1e-6, 1e-6) && close(rows_f[size_t(r)], l, 1e-6, 1e-6);
                }
                bool ok_g = true;
                for (size_t i = 0; i < x.size(); ++i) ok_g &= close(dx[i], rg[i], 1e-5, 1e-6);
                const std::string name = "cross_entropy N=" + std::to_string(N) + " C=" + std::to_string(C) +
                                         " D=" + std::to_string(D) + (weighted ? " weighted" : "") +
                                         (ls != 0.0f ? " smoothed" : "") + (mode ? " per-row" : " mean");
                expect(ok_rows && close(lsum, rls, 1e-6, 1e-6) && close(wsum, rws, 1e-12, 0), name + " loss");
                expect(ok_g, name + " grad");
            }
        }
    }
    // an out-of-range class gives a NaN row (no out-of-bounds read)
    {
        std::vector<float> x = {1.f, 2.f, 3.f, 0.f, 0.f, 0.f}, dx(6);
        std::vector<int64_t> t = {5, 0};
        std::vector<double> rows(2);
        emu::launch(dim3(2), dim3(kThreads), [&] {
            ce_index_kernel(dx.data(), rows.data(), x.data(), t.data(), nullptr, nullptr, nullptr, 1.0, 2, 3, 1,
                            -100, 0.0f, nullptr);
        });
        expect(std::isnan(rows[0]) && std::isnan(dx[0]) && !std::isnan(rows[1]), "cross_entropy bad class -> NaN");
    }
    // class probabilities
    for (const Case& k : shapes) {
        for (int variant = 0; variant < 4; ++variant) {
            const bool weighted = variant & 1;
            const float ls = (variant & 2) ? 0.3f : 0.0f;
            const int64_t N = k.N, C = k.C, D = k.D, R = N * D;
            auto x = randn(rng, N * C * D, 2.0f);
            auto p = randn(rng, N * C * D);
            for (auto& v : p) v = std::fabs(v);
            auto w = randn(rng, C);
            for (auto& v : w) v = std::fabs(v) + 0.1f;
            const float* wp = weighted ? w.data() : nullptr;
            std::vector<float> dx(x.size()), rows_f(static_cast<size_t>(R));
            std::vector<double> rows(static_cast<size_t>(R));
            double lsum = 0;
            emu::launch(dim3(R > 20 ? 5u : unsigned(R)), dim3(kThreads), [&] {
                ce_prob_kernel(dx.data(), rows.data(), x.data(), p.data(), wp, nullptr, 0.5, N, C, D, ls);
            });
            emu::launch(dim3(1), dim3(kThreads), [&] { sum_rows_kernel(&lsum, rows_f.data(), rows.data(), R); });
            bool ok = true;
            double rls = 0.0;
            for (int64_t r = 0; r < R; ++r) {
                const int64_t n = r / D, d = r % D, off = n * C * D + d;
                double m = -INFINITY, se = 0.0, A = 0.0, l = 0.0;
                for (int64_t c = 0; c < C; ++c) m = std::max(m, double(x[size_t(off + c * D)]));
                for (int64_t c = 0; c < C; ++c) se += std::exp(double(x[size_t(off + c * D)]) - m);
                const double lse = m + std::log(se);
                std::vector<double> a(static_cast<size_t>(C));
                for (int64_t c = 0; c < C; ++c) {
                    a[size_t(c)] = (wp ? wp[c] : 1.0) * ((1.0 - ls) * p[size_t(off + c * D)] + double(ls) / double(C));
                    A += a[size_t(c)];
                    l -= a[size_t(c)] * (double(x[size_t(off + c * D)]) - lse);
                }
                rls += l;
                ok &= close(rows[size_t(r)], l, 1e-6, 1e-6);
                for (int64_t c = 0; c < C; ++c)
                    ok &= close(dx[size_t(off + c * D)],
                                0.5 * (A * std::exp(double(x[size_t(off + c * D)]) - lse) - a[size_t(c)]), 1e-5, 1e-6);
            }
            expect(ok && close(lsum, rls, 1e-6, 1e-6),
                   "cross_entropy probabilities N=" + std::to_string(N) + " C=" + std::to_string(C) + " D=" +
                       std::to_string(D) + (weighted ? " weighted" : "") + (ls != 0.0f ? " smoothed" : ""));
        }
    }
    // element-wise losses
    const std::vector<std::pair<LossParams, std::string>> kinds = {
        {{Loss::mse, 1.0f}, "mse"}, {{Loss::l1, 1.0f}, "l1"}, {{Loss::smooth_l1, 0.5f}, "smooth_l1"},
        {{Loss::smooth_l1, 0.0f}, "smooth_l1 beta=0"}, {{Loss::huber, 0.7f}, "huber"},
        {{Loss::bce_with_logits, 1.0f}, "bce_with_logits"}};
    for (const auto& [p, name] : kinds) {
        for (int64_t n : {1, 12, 3000, 70000}) {
            for (int variant = 0; variant < 2; ++variant) {
                const int64_t P = n % 4 == 0 ? 4 : 1;
                auto x = randn(rng, n, 2.0f), t = randn(rng, n), w = randn(rng, n), pw = randn(rng, P), dout = randn(rng, n);
                if (p.kind == Loss::bce_with_logits)
                    for (auto& v : t) v = std::fabs(v) / 3.0f;
                for (auto& v : pw) v = std::fabs(v) + 0.5f;
                const float* wp = variant ? w.data() : nullptr;
                const float* pwp = (variant && p.kind == Loss::bce_with_logits) ? pw.data() : nullptr;
                const unsigned blocks = unsigned(std::min<int64_t>(std::max<int64_t>((n + kThreads * 8 - 1) / (kThreads * 8), 1), 1024));
                std::vector<double> part(blocks, NAN);
                std::vector<float> out(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
                double sum = -1;
                emu::launch(dim3(blocks), dim3(kThreads), [&] {
                    loss_elementwise_forward_kernel(part.data(), out.data(), x.data(), t.data(), wp, pwp, n, P, p);
                });
                emu::launch(dim3(1), dim3(kThreads), [&] { sum_rows_kernel(&sum, nullptr, part.data(), int64_t(blocks)); });
                const unsigned grid = n > 5000 ? 3u : unsigned((n + kThreads - 1) / kThreads);
                emu::launch(dim3(grid), dim3(kThreads), [&] {
                    loss_elementwise_backward_kernel(dx.data(), x.data(), t.data(), wp, pwp, dout.data(), n, P, p, 0.25f);
                });
                double rs = 0.0;
                bool ok_f = true, ok_b = true;
                for (int64_t i = 0; i < n; ++i) {
                    const double xi = x[size_t(i)], ti = t[size_t(i)], d = xi - ti, ad = std::fabs(d);
                    const double pwi = pwp ? pwp[i % P] : 1.0, wi = wp ? wp[i] : 1.0, b = p.p0;
                    double l, g;
                    switch (p.kind) {
                        case Loss::mse: l = d * d; g = 2 * d; break;
                        case Loss::l1: l = ad; g = (d > 0) - (d < 0); break;
                        case Loss::smooth_l1:
                            if (b == 0) { l = ad; g = (d > 0) - (d < 0); }
                            else { l = ad < b ? 0.5 * d * d / b : ad - 0.5 * b; g = ad < b ? d / b : (d > 0) - (d < 0); }
                            break;
                        case Loss::huber: l = ad <= b ? 0.5 * d * d : b * (ad - 0.5 * b); g = std::max(-b, std::min(b, d)); break;
                        default: {
                            const double lw = 1 + (pwi - 1) * ti, sp = std::log1p(std::exp(-std::fabs(xi))) + std::max(-xi, 0.0);
                            l = (1 - ti) * xi + lw * sp;
                            g = lw / (1 + std::exp(-xi)) - pwi * ti;
                        }
                    }
                    rs += wi * l;
                    ok_f &= close(out[size_t(i)], wi * l, 1e-5, 1e-6);
                    ok_b &= close(dx[size_t(i)], 0.25 * dout[size_t(i)] * wi * g, 1e-5, 1e-6);
                }
                const std::string nm = name + " n=" + std::to_string(n) + (variant ? " weighted" : "");
                expect(ok_f && close(sum, rs, 1e-5, 1e-5), nm + " forward");
                expect(ok_b, nm + " backward");
            }
        }
    }
    std::printf("%d of %d cases agree\n", cases - failures, cases);
    return failures ? 1 : 0;
}
