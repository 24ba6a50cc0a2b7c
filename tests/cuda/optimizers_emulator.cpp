// Runs fastmlp's CUDA multi-tensor optimizer kernel (csrc/cuda/optimizer_kernels.cuh) on the CPU
// (cuda_emulation.h) with the launch configuration of optimizers.cu, and checks it against plain
// double-precision loops of torch.optim's formulas, for every kind and option (SGD with momentum/
// nesterov, Adam/AdamW with amsgrad, RMSprop centered/momentum, Adagrad with lr_decay, maximize,
// weight decay), several parameters of different sizes in one launch (also a grid small enough
// for several grid-stride passes), per-parameter step counts, a parameter skipped for a step; and bitwise against the CPU's scalar rules (optimizer.h).
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/optimizers_emulator.cpp -o optimizers_emulator && ./optimizers_emulator
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "optimizer_kernels.cuh"

using namespace fastmlp;
using namespace fastmlp::cuda::optimizer_impl;
using fastmlp::cuda::OptimParam;

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

// torch.optim's update in double, one element (state s[0..2] as optimizer.h's table).
static void reference(const OptimOptions& o, int64_t t, double& p, double grad, double* s) {
    double g = o.maximize ? -grad : grad;
    switch (o.kind) {
        case Optim::sgd:
            if (o.weight_decay != 0) g += o.weight_decay * p;
            if (o.momentum != 0) {
                s[0] = t == 1 ? g : o.momentum * s[0] + (1 - o.dampening) * g;
                g = o.nesterov ? g + o.momentum * s[0] : s[0];
            }
            p -= o.lr * g;
            break;
        case Optim::adam:
        case Optim::adamw: {
            if (o.weight_decay != 0) {
                if (o.kind == Optim::adamw) p *= 1 - o.lr * o.weight_decay;
                else g += o.weight_decay * p;
            }
            s[0] += (1 - o.beta1) * (g - s[0]);
            s[1] = o.beta2 * s[1] + (1 - o.beta2) * g * g;
            double v = s[1];
            if (o.amsgrad) v = s[2] = std::max(s[2], s[1]);
            const double bc1 = 1 - std::pow(o.beta1, double(t)), bc2 = 1 - std::pow(o.beta2, double(t));
            p -= o.lr / bc1 * s[0] / (std::sqrt(v) / std::sqrt(bc2) + o.eps);
            break;
        }
        case Optim::rmsprop: {
            if (o.weight_decay != 0) g += o.weight_decay * p;
            s[0] = o.alpha * s[0] + (1 - o.alpha) * g * g;
            double avg;
            if (o.centered) {
                s[2] += (1 - o.alpha) * (g - s[2]);
                avg = std::sqrt(s[0] - s[2] * s[2]) + o.eps;
            } else {
                avg = std::sqrt(s[0]) + o.eps;
            }
            if (o.momentum > 0) {
                s[1] = o.momentum * s[1] + g / avg;
                p -= o.lr * s[1];
            } else {
                p -= o.lr * g / avg;
            }
            break;
        }
        case Optim::adagrad: {
            if (o.weight_decay != 0) g += o.weight_decay * p;
            s[0] += g * g;
            const double clr = o.lr / (1 + double(t - 1) * o.lr_decay);
            p -= clr * g / (std::sqrt(s[0]) + o.eps);
            break;
        }
    }
}

static bool uses(const OptimOptions& o, int slot) {
    switch (o.kind) {
        case Optim::sgd: return slot == 0 && o.momentum != 0;
        case Optim::adam:
        case Optim::adamw: return slot < 2 || o.amsgrad;
        case Optim::rmsprop: return slot == 0 || (slot == 1 && o.momentum > 0) || (slot == 2 && o.centered);
        case Optim::adagrad: return slot == 0;
    }
    return false;
}

int main() {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    std::vector<OptimOptions> opts;
    auto add = [&](OptimOptions o) { opts.push_back(o); };
    OptimOptions o;
    o.kind = Optim::sgd; o.lr = 0.1; o.momentum = 0.9; o.nesterov = true; o.weight_decay = 0.01; add(o);
    o = OptimOptions(); o.kind = Optim::sgd; o.lr = 0.05; o.momentum = 0.5; o.dampening = 0.3; o.maximize = true; add(o);
    o = OptimOptions(); o.kind = Optim::adam; o.lr = 0.01; add(o);
    o.amsgrad = true; o.weight_decay = 0.1; add(o);
    o = OptimOptions(); o.kind = Optim::adamw; o.lr = 0.02; o.weight_decay = 0.05; o.beta1 = 0.3; o.maximize = true; add(o);
    o = OptimOptions(); o.kind = Optim::rmsprop; o.lr = 0.01; add(o);
    o.centered = true; o.momentum = 0.9; o.weight_decay = 0.01; add(o);
    o = OptimOptions(); o.kind = Optim::rmsprop; o.lr = 0.001; o.alpha = 0.9; o.momentum = 0.3; add(o);
    o = OptimOptions(); o.kind = Optim::adagrad; o.lr = 0.1; o.lr_decay = 0.01; o.eps = 1e-10; add(o);
    o.maximize = true; o.weight_decay = 0.2; o.initial_accumulator_value = 0.1; add(o);

    const std::vector<int64_t> sizes{1, 300, 5, 3000};
    for (size_t oi = 0; oi < opts.size(); ++oi) {
        const OptimOptions& op = opts[oi];
        const size_t np = sizes.size();
        std::vector<std::vector<float>> p(np), s[3], cp(np), cs[3];
        std::vector<std::vector<double>> rp(np), rs[3];
        for (int k = 0; k < 3; ++k) { s[k].resize(np); cs[k].resize(np); rs[k].resize(np); }
        for (size_t i = 0; i < np; ++i) {
            const size_t n = size_t(sizes[i]);
            p[i].resize(n);
            for (auto& x : p[i]) x = nd(rng);
            for (int k = 0; k < 3; ++k)
                s[k][i].assign(n, (op.kind == Optim::adagrad && k == 0) ? float(op.initial_accumulator_value) : 0.0f);
            cp[i] = p[i];
            rp[i].assign(p[i].begin(), p[i].end());
            for (int k = 0; k < 3; ++k) {
                cs[k][i] = s[k][i];
                rs[k][i].assign(s[k][i].begin(), s[k][i].end());
            }
        }
        bool ok_ref = true, ok_cpu = true;
        std::vector<int64_t> step(np, 0);
        for (int it = 0; it < 4; ++it) {
            std::vector<std::vector<float>> g(np);
            std::vector<OptimParam> table;
            int64_t max_n = 0;
            for (size_t i = 0; i < np; ++i) {
                if (it == 1 && i == 2) continue;  // a parameter without a gradient this step
                ++step[i];
                g[i].resize(p[i].size());
                for (auto& x : g[i]) x = nd(rng);
                OptimParam d{p[i].data(), g[i].data(), uses(op, 0) ? s[0][i].data() : nullptr,
                             uses(op, 1) ? s[1][i].data() : nullptr,
                             uses(op, 2) ? s[2][i].data() : nullptr, sizes[i],
                             optim_coeffs(op, step[i])};
                table.push_back(d);
                max_n = std::max(max_n, sizes[i]);
                // the CPU's scalar rule and the double reference
                const OptimCoeffs c = optim_coeffs(op, step[i]);
                for (size_t e = 0; e < p[i].size(); ++e) {
                    float u[3] = {0, 0, 0};
                    float& a = uses(op, 0) ? cs[0][i][e] : u[0];
                    float& b = uses(op, 1) ? cs[1][i][e] : u[1];
                    float& h = uses(op, 2) ? cs[2][i][e] : u[2];
                    optim_step_scalar(op.kind, cp[i][e], g[i][e], a, b, h, c);
                    double st[3] = {rs[0][i][e], rs[1][i][e], rs[2][i][e]};
                    reference(op, step[i], rp[i][e], double(g[i][e]), st);
                    for (int k = 0; k < 3; ++k) rs[k][i][e] = st[k];
                }
            }
            // optimizers.cu's grid on even steps; on odd steps a 4-block grid, so that the
            // grid-stride loop makes several passes (as the real grid does past 1024 * 256)
            const int64_t cap = it % 2 == 0 ? 1024 : 4;
            const int64_t blocks = std::min<int64_t>(std::max<int64_t>((max_n + kThreads - 1) / kThreads, 1), cap);
            const int count = int(table.size());
            emu::launch(dim3(unsigned(blocks), unsigned(count)), dim3(kThreads),
                        [&] { optim_step_many_kernel(table.data(), count, op.kind); });
        }
        for (size_t i = 0; i < np; ++i)
            for (size_t e = 0; e < p[i].size(); ++e) {
                ok_cpu &= p[i][e] == cp[i][e];
                ok_ref &= close(p[i][e], rp[i][e], 2e-4, 2e-5);
                for (int k = 0; k < 3; ++k) ok_cpu &= s[k][i][e] == cs[k][i][e];
            }
        expect(ok_ref, "optim_step_many vs float64 reference, options#" + std::to_string(oi));
        expect(ok_cpu, "optim_step_many == CPU scalar rule (bitwise), options#" + std::to_string(oi));
    }
    std::printf("%d of %d cases agree\n", cases - failures, cases);
    return failures ? 1 : 0;
}
