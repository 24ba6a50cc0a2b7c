// Runs the GPU fused trainer (csrc/cuda/mlp_train_impl.h: workspace layout, epoch/batch loop, the
// launches of a step) on the CPU: the same host code as mlp_train.cu over an emulated backend whose
// "launches" run the real device code (gemm_kernels.cuh with gemm.cu's plans and split-K into the
// trainer's workspace, elementwise_kernels.cuh's MSE and guarded SGD, mlp_train_kernels.cuh's
// gather and gradient pass) in cuda_emulation.h. Checks the kernels of mlp_train_kernels.cuh and
// the guarded SGD step alone, then whole training runs against a float64 reference of the eager
// loop (torch.optim.SGD semantics): weights, biases, momentum buffers, per-epoch losses, steps and
// where a non-finite loss stopped training.
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/mlp_emulator.cpp -o mlp_emulator && ./mlp_emulator
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "emu_backend.h"
#include "elementwise_kernels.cuh"
#include "gemm_kernels.cuh"
#include "mlp_train_kernels.cuh"
#include "mlp_train_impl.h"

namespace ew = fastmlp::cuda::elementwise_impl;
namespace gm = fastmlp::cuda::gemm_impl;
namespace mk = fastmlp::cuda::mlp_impl;
using fastmlp::GemmEpilogue;
using fastmlp::MlpLayer;
using fastmlp::MlpTrainResult;
using fastmlp::SgdOptions;
using fastmlp::cuda::CudaMlpTrainOptions;
using fastmlp::cuda::SgdParam;

static int failures = 0, cases = 0;

static void expect(bool ok, const std::string& what) {
    ++cases;
    if (!ok) ++failures;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- the emulated backend (the launch configurations of mlp_train.cu / gemm.cu / elementwise.cu)

struct EmuOps : emu::GemmMemoryOps {
    int mse_partials(int64_t n) const {
        return int(std::min<int64_t>(std::max<int64_t>(cdiv(n, ew::kThreads * 8), 1), 1024));
    }
    void mse_forward(float* loss, double* loss64, const float* P, const float* Y, int64_t n,
                     double* partial) {
        const int blocks = mse_partials(n);
        ++launches;
        if (blocks == 1) {
            emu::launch(dim3(1), dim3(ew::kThreads), [&] { ew::mse_forward_kernel(nullptr, loss, loss64, P, Y, n, true); });
            return;
        }
        emu::launch(dim3(unsigned(blocks)), dim3(ew::kThreads), [&] { ew::mse_forward_kernel(partial, nullptr, nullptr, P, Y, n, false); });
        emu::launch(dim3(1), dim3(ew::kThreads), [&] { ew::mse_finish_kernel(loss, loss64, partial, blocks, n); });
    }
    void gather(float* xb, float* yb, const float* X, const float* Y, const int64_t* idx, int64_t B,
                int64_t din, int64_t dout) {
        const int64_t total = B * (din + dout);
        if (total <= 0) return;
        ++launches;
        const unsigned blocks = unsigned(std::min<int64_t>(cdiv(total, mk::kThreads), 4096));
        emu::launch(dim3(blocks), dim3(mk::kThreads), [&] { mk::gather_rows_kernel(xb, yb, X, Y, idx, B, din, dout); });
    }
    void grad_mask_colsum(float* d, const float* a, const float* target, float scale, bool mask,
                          float* dbias, int64_t B, int64_t C) {
        if (C <= 0) return;
        ++launches;
        emu::launch(dim3(unsigned(cdiv(C, mk::kCols))), dim3(mk::kCols, mk::kRows),
                    [&] { mk::grad_mask_colsum_kernel(d, a, target, scale, mask, dbias, B, C); });
    }
    void sgd_guarded(const SgdParam* table, int count, int64_t max_n, const SgdOptions& o, bool first,
                     const double* loss, int64_t* stop, int64_t tag, bool allow) {
        if (count <= 0 || max_n <= 0) return;
        ++launches;
        const unsigned gx = unsigned(std::min<int64_t>(std::max<int64_t>(cdiv(max_n, ew::kThreads), 1), 1024));
        emu::launch(dim3(gx, unsigned(count)), dim3(ew::kThreads),
                    [&] { ew::sgd_step_guarded_kernel(table, count, o, first, loss, stop, tag, allow); });
    }
};

// ---- float64 reference of the eager loop ------------------------------------------------------

struct Net {
    std::vector<int64_t> widths;
    std::vector<bool> relu;
    bool bias = true;
    int frozen_w = -1, frozen_b = -1;  // a layer whose weight / bias has requires_grad=False
    int64_t stop_after = -1;           // should_stop answers true before this step (-1: never)
    std::vector<std::vector<float>> W, b, Wbuf, bbuf;
};

struct RefNet {
    std::vector<std::vector<double>> W, b, Wbuf, bbuf;
};

static RefNet to_ref(const Net& net) {
    RefNet r;
    for (size_t l = 0; l < net.W.size(); ++l) {
        r.W.emplace_back(net.W[l].begin(), net.W[l].end());
        r.b.emplace_back(net.b[l].begin(), net.b[l].end());
        r.Wbuf.emplace_back(net.W[l].size(), 0.0);
        r.bbuf.emplace_back(net.b[l].size(), 0.0);
    }
    return r;
}

static MlpTrainResult ref_train(const Net& net, RefNet& r, const std::vector<float>& X,
                                const std::vector<float>& Y, int64_t n, int64_t epochs,
                                const CudaMlpTrainOptions& o) {
    MlpTrainResult res;
    const size_t L = net.W.size();
    const int64_t din = net.widths[0], dout = net.widths[L], bs = o.batch_size;
    const int64_t nbatches = o.drop_last ? n / bs : cdiv(n, bs);
    bool first = o.first_step;
    for (int64_t e = 0; e < epochs; ++e) {
        double sum = 0.0;
        int64_t used = 0;
        for (int64_t bi = 0; bi < nbatches; ++bi) {
            if (res.steps == net.stop_after) {
                res.interrupted = true;
                return res;
            }
            const int64_t start = bi * bs, B = std::min(bs, n - start);
            std::vector<std::vector<double>> A(L + 1);
            A[0].resize(size_t(B * din));
            std::vector<double> Yb(size_t(B * dout));
            for (int64_t i = 0; i < B; ++i) {
                const int64_t s = o.perm ? o.perm[(o.perm_per_epoch ? e * n : 0) + start + i] : start + i;
                for (int64_t c = 0; c < din; ++c) A[0][size_t(i * din + c)] = X[size_t(s * din + c)];
                for (int64_t c = 0; c < dout; ++c) Yb[size_t(i * dout + c)] = Y[size_t(s * dout + c)];
            }
            for (size_t l = 0; l < L; ++l) {
                const int64_t in = net.widths[l], out = net.widths[l + 1];
                A[l + 1].assign(size_t(B * out), 0.0);
                for (int64_t i = 0; i < B; ++i)
                    for (int64_t j = 0; j < out; ++j) {
                        double s = net.bias ? r.b[l][size_t(j)] : 0.0;
                        for (int64_t k = 0; k < in; ++k) s += A[l][size_t(i * in + k)] * r.W[l][size_t(j * in + k)];
                        A[l + 1][size_t(i * out + j)] = net.relu[l] ? (s > 0 ? s : (s != s ? s : 0.0)) : s;
                    }
            }
            double loss = 0.0;
            for (int64_t i = 0; i < B * dout; ++i) {
                const double d = A[L][size_t(i)] - Yb[size_t(i)];
                loss += d * d;
            }
            loss /= double(B * dout);
            if (!std::isfinite(loss) && !o.allow_nonfinite) {
                res.mark_nonfinite(e, bi, loss, sum, used, loss);
                return res;
            }
            std::vector<double> dz(size_t(B * dout));
            for (int64_t i = 0; i < B * dout; ++i) {
                dz[size_t(i)] = 2.0 * (A[L][size_t(i)] - Yb[size_t(i)]) / double(B * dout);
                if (net.relu[L - 1] && !(A[L][size_t(i)] > 0)) dz[size_t(i)] = 0.0;
            }
            std::vector<std::vector<double>> gW(L), gb(L);
            for (size_t l = L; l-- > 0;) {
                const int64_t in = net.widths[l], out = net.widths[l + 1];
                gW[l].assign(size_t(in * out), 0.0);
                gb[l].assign(size_t(out), 0.0);
                for (int64_t i = 0; i < B; ++i)
                    for (int64_t j = 0; j < out; ++j) {
                        gb[l][size_t(j)] += dz[size_t(i * out + j)];
                        for (int64_t k = 0; k < in; ++k)
                            gW[l][size_t(j * in + k)] += dz[size_t(i * out + j)] * A[l][size_t(i * in + k)];
                    }
                if (l > 0) {
                    std::vector<double> da(size_t(B * in), 0.0);
                    for (int64_t i = 0; i < B; ++i)
                        for (int64_t k = 0; k < in; ++k) {
                            double s = 0.0;
                            for (int64_t j = 0; j < out; ++j) s += dz[size_t(i * out + j)] * r.W[l][size_t(j * in + k)];
                            da[size_t(i * in + k)] = (net.relu[l - 1] && !(A[l][size_t(i * in + k)] > 0)) ? 0.0 : s;
                        }
                    dz = da;
                }
            }
            auto sgd = [&](std::vector<double>& p, const std::vector<double>& g, std::vector<double>& buf) {
                for (size_t i = 0; i < p.size(); ++i) {
                    double d = g[i] + double(o.sgd.weight_decay) * p[i];
                    if (o.sgd.momentum != 0.0f) {
                        buf[i] = first ? d : double(o.sgd.momentum) * buf[i] + (1.0 - double(o.sgd.dampening)) * d;
                        d = o.sgd.nesterov ? d + double(o.sgd.momentum) * buf[i] : buf[i];
                    }
                    p[i] -= double(o.sgd.lr) * d;
                }
            };
            for (size_t l = 0; l < L; ++l) {
                if (int(l) != net.frozen_w) sgd(r.W[l], gW[l], r.Wbuf[l]);
                if (net.bias && int(l) != net.frozen_b) sgd(r.b[l], gb[l], r.bbuf[l]);
            }
            first = false;
            ++res.steps;
            sum += loss * double(B);
            used += B;
        }
        res.epoch_loss.push_back(sum / double(used));
    }
    return res;
}

// ---- cases ------------------------------------------------------------------------------------

struct Case {
    std::string name;
    std::vector<int64_t> widths;
    std::vector<bool> relu;
    bool bias;
    int64_t n, bs, epochs;
    bool drop_last;
    int perm_mode;  // 0: in order, 1: one order for every epoch, 2: one per epoch
    SgdOptions sgd;
    int64_t nan_sample;  // a sample whose X is NaN (-1: none)
    bool allow_nonfinite;
    int frozen_w = -1, frozen_b = -1;  // requires_grad=False on one layer's weight / bias
    int64_t stop_after = -1;           // should_stop stops training before this step
};

static bool stop_when_zero(void* ctx) {  // should_stop: true once the countdown reaches 0
    int64_t& left = *static_cast<int64_t*>(ctx);
    return left-- <= 0;
}

static bool close(double got, double ref, double tol) {
    if (std::isnan(ref)) return std::isnan(got);
    return std::fabs(got - ref) <= tol;
}

static void run_case(const Case& c, std::mt19937& rng) {
    std::normal_distribution<float> nd;
    const size_t L = c.widths.size() - 1;
    Net net;
    net.widths = c.widths;
    net.relu = c.relu;
    net.bias = c.bias;
    net.frozen_w = c.frozen_w;
    net.frozen_b = c.frozen_b;
    net.stop_after = c.stop_after;
    for (size_t l = 0; l < L; ++l) {
        const int64_t in = c.widths[l], out = c.widths[l + 1];
        const float s = 1.0f / std::sqrt(float(in));
        std::vector<float> w(static_cast<size_t>(in * out)), b(static_cast<size_t>(out));
        for (auto& v : w) v = s * nd(rng);
        for (auto& v : b) v = 0.5f * s * nd(rng);
        net.W.push_back(w);
        net.b.push_back(b);
        net.Wbuf.emplace_back(w.size(), 7.0f);  // garbage: the first step must not read it
        net.bbuf.emplace_back(b.size(), 7.0f);
    }
    const int64_t din = c.widths[0], dout = c.widths[L];
    std::vector<float> X(size_t(c.n * din)), Y(size_t(c.n * dout));
    for (auto& v : X) v = nd(rng);
    for (auto& v : Y) v = nd(rng);
    if (c.nan_sample >= 0) X[size_t(c.nan_sample * din + din / 2)] = NAN;
    std::vector<int64_t> perm;
    CudaMlpTrainOptions o;
    o.batch_size = c.bs;
    o.drop_last = c.drop_last;
    o.sgd = c.sgd;
    o.allow_nonfinite = c.allow_nonfinite;
    int64_t countdown = c.stop_after;
    if (c.stop_after >= 0) {
        o.should_stop = &stop_when_zero;
        o.stop_ctx = &countdown;
    }
    if (c.perm_mode) {
        const int64_t rows = c.perm_mode == 2 ? c.epochs : 1;
        for (int64_t e = 0; e < rows; ++e) {
            std::vector<int64_t> p(static_cast<size_t>(c.n));
            for (int64_t i = 0; i < c.n; ++i) p[size_t(i)] = i;
            std::shuffle(p.begin(), p.end(), rng);
            perm.insert(perm.end(), p.begin(), p.end());
        }
        o.perm = perm.data();
        o.perm_per_epoch = c.perm_mode == 2;
    }
    RefNet ref = to_ref(net);
    std::vector<MlpLayer> layers(L);
    for (size_t l = 0; l < L; ++l) {
        layers[l].weight = net.W[l].data();
        layers[l].bias = c.bias ? net.b[l].data() : nullptr;
        layers[l].weight_buf = c.sgd.momentum != 0.0f ? net.Wbuf[l].data() : nullptr;
        layers[l].bias_buf = c.sgd.momentum != 0.0f && c.bias ? net.bbuf[l].data() : nullptr;
        layers[l].in = c.widths[l];
        layers[l].out = c.widths[l + 1];
        layers[l].relu = c.relu[l];
        layers[l].frozen_weight = int(l) == c.frozen_w;
        layers[l].frozen_bias = c.bias && int(l) == c.frozen_b;
    }
    EmuOps ops;
    const MlpTrainResult got = fastmlp::cuda::mlp_impl::train(ops, layers, X.data(), Y.data(), c.n, c.epochs, o);
    const MlpTrainResult want = ref_train(net, ref, X, Y, c.n, c.epochs, o);
    bool ok = !ops.ws_short && got.steps == want.steps &&
              got.stopped_nonfinite == want.stopped_nonfinite && got.bad_epoch == want.bad_epoch &&
              got.bad_batch == want.bad_batch && got.epoch_loss.size() == want.epoch_loss.size() &&
              got.interrupted == want.interrupted;
    std::string why = ok ? "" : " (steps/stop/epochs differ: steps " + std::to_string(got.steps) + " vs " +
                                    std::to_string(want.steps) + (ops.ws_short ? ", workspace short" : "") + ")";
    for (size_t e = 0; ok && e < got.epoch_loss.size(); ++e)
        if (!close(got.epoch_loss[e], want.epoch_loss[e], 1e-4 * std::fabs(want.epoch_loss[e]) + 1e-6)) {
            ok = false;
            why = " (epoch loss " + std::to_string(got.epoch_loss[e]) + " vs " + std::to_string(want.epoch_loss[e]) + ")";
        }
    auto cmp = [&](const std::vector<float>& g, const std::vector<double>& r, const char* what) {
        double scale = 0.0, err = 0.0;
        for (double v : r) if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
        for (size_t i = 0; i < g.size(); ++i) {
            if (std::isnan(r[i]) != std::isnan(g[i])) { err = INFINITY; break; }
            if (!std::isnan(r[i])) err = std::max(err, std::fabs(g[i] - r[i]));
        }
        if (!(err <= 2e-5 * std::max(scale, 1.0))) {
            ok = false;
            why = std::string(" (") + what + " max err " + std::to_string(err) + ")";
        }
    };
    for (size_t l = 0; l < L; ++l) {
        cmp(net.W[l], ref.W[l], "weight");
        if (c.bias) cmp(net.b[l], ref.b[l], "bias");
        if (c.sgd.momentum != 0.0f) {  // a frozen parameter's buffer is never used
            if (int(l) != c.frozen_w) cmp(net.Wbuf[l], ref.Wbuf[l], "weight buffer");
            if (c.bias && int(l) != c.frozen_b) cmp(net.bbuf[l], ref.bbuf[l], "bias buffer");
        }
    }
    expect(ok, "train " + c.name + " (" + std::to_string(ops.launches) + " launches, " +
                   std::to_string(ops.splitk) + " split-K)" + why);
}

int main() {
    std::mt19937 rng(11);
    // gather_rows_kernel: rows of X and Y by index, short grid (stride loop)
    {
        const int64_t n = 37, din = 13, dout = 3, B = 29;
        std::vector<float> X(size_t(n * din)), Y(size_t(n * dout)), xb(size_t(B * din), NAN), yb(size_t(B * dout), NAN);
        for (size_t i = 0; i < X.size(); ++i) X[i] = float(i);
        for (size_t i = 0; i < Y.size(); ++i) Y[i] = -float(i);
        std::vector<int64_t> idx(static_cast<size_t>(B));
        for (int64_t i = 0; i < B; ++i) idx[size_t(i)] = (i * 7 + 3) % n;
        for (unsigned grid : {1u, 2u, 9u}) {
            emu::launch(dim3(grid), dim3(mk::kThreads), [&] { mk::gather_rows_kernel(xb.data(), yb.data(), X.data(), Y.data(), idx.data(), B, din, dout); });
            bool ok = true;
            for (int64_t i = 0; i < B; ++i) {
                for (int64_t c = 0; c < din; ++c) ok &= xb[size_t(i * din + c)] == X[size_t(idx[size_t(i)] * din + c)];
                for (int64_t c = 0; c < dout; ++c) ok &= yb[size_t(i * dout + c)] == Y[size_t(idx[size_t(i)] * dout + c)];
            }
            expect(ok, "gather_rows grid=" + std::to_string(grid));
        }
    }
    // grad_mask_colsum_kernel: every combination of target / mask / bias
    for (auto [B, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 3}, {64, 1}, {40, 70}, {100, 33}}) {
        std::normal_distribution<float> nd;
        for (int mode = 0; mode < 8; ++mode) {
            const bool tgt = mode & 1, mask = mode & 2, bias = mode & 4;
            std::vector<float> a(size_t(B * C)), t(size_t(B * C)), d(size_t(B * C)), db(size_t(C), NAN);
            for (auto& v : a) v = nd(rng);
            for (auto& v : t) v = nd(rng);
            for (auto& v : d) v = nd(rng);
            if (B * C > 2) { a[0] = 0.0f; a[1] = NAN; }
            if (tgt) a[1] = 1.0f;  // the prediction holds no NaN in this check
            const std::vector<float> d0 = d;
            emu::launch(dim3(unsigned(cdiv(C, mk::kCols))), dim3(mk::kCols, mk::kRows), [&] {
                mk::grad_mask_colsum_kernel(d.data(), a.data(), tgt ? t.data() : nullptr, 0.375f, mask, bias ? db.data() : nullptr, B, C);
            });
            bool ok = true;
            for (int64_t c = 0; c < C; ++c) {
                double s = 0.0;
                for (int64_t r = 0; r < B; ++r) {
                    const size_t i = size_t(r * C + c);
                    float v = tgt ? 0.375f * (a[i] - t[i]) : d0[i];
                    if (mask) v = a[i] > 0.0f ? v : 0.0f;
                    ok &= d[i] == v;
                    s += v;
                }
                if (bias) ok &= close(db[size_t(c)], s, 1e-6 * (1.0 + std::fabs(s)));
                else ok &= std::isnan(db[size_t(c)]);
            }
            expect(ok, "grad_mask_colsum " + std::to_string(B) + "x" + std::to_string(C) +
                           (tgt ? " target" : "") + (mask ? " mask" : "") + (bias ? " bias" : ""));
        }
    }
    // sgd_step_guarded_kernel: steps on a finite loss, sets the flag on a non-finite one, then idles
    {
        SgdOptions o;
        o.lr = 0.1f;
        o.momentum = 0.9f;
        std::vector<float> p(300, 1.0f), g(300, 0.5f), buf(300, 0.0f), p2(5, 2.0f), g2(5, 1.0f), buf2(5, 0.0f);
        std::vector<SgdParam> table{{p.data(), g.data(), buf.data(), 300}, {p2.data(), g2.data(), buf2.data(), 5}};
        int64_t stop = 0;
        double loss = 1.5;
        auto step = [&](bool allow, int64_t tag) {
            emu::launch(dim3(2, 2), dim3(ew::kThreads), [&] { ew::sgd_step_guarded_kernel(table.data(), 2, o, tag == 1, &loss, &stop, tag, allow); });
        };
        step(false, 1);
        bool ok = stop == 0 && p[299] == 1.0f - 0.1f * 0.5f && p2[4] == 2.0f - 0.1f && buf[0] == 0.5f;
        loss = NAN;
        step(true, 2);  // allowed: steps anyway
        ok &= stop == 0 && p2[4] < 1.9f - 0.1f;
        const float before = p[0];
        loss = INFINITY;
        step(false, 3);
        ok &= stop == 3 && p[0] == before;
        loss = 1.0;
        step(false, 4);
        ok &= stop == 3 && p[0] == before;
        expect(ok, "sgd_step_guarded: step, allowed NaN, stop on inf, idle after");
    }

    SgdOptions plain;
    plain.lr = 0.05f;
    SgdOptions mom = plain;
    mom.momentum = 0.9f;
    SgdOptions nest = mom;
    nest.nesterov = true;
    nest.weight_decay = 0.01f;
    SgdOptions damp = mom;
    damp.dampening = 0.3f;
    damp.weight_decay = 0.02f;
    const std::vector<Case> all = {
        {"seed 10-20-1 in order", {10, 20, 1}, {true, false}, true, 100, 16, 2, false, 0, plain, -1, false},
        {"seed 10-20-1 per-epoch perm", {10, 20, 1}, {true, false}, true, 100, 16, 2, false, 2, plain, -1, false},
        {"3-layer perm momentum", {7, 33, 17, 3}, {true, true, false}, true, 90, 32, 2, false, 1, mom, -1, false},
        {"3-layer nesterov wd", {7, 33, 17, 3}, {true, true, false}, true, 90, 32, 2, false, 2, nest, -1, false},
        {"dampening wd", {5, 9, 2}, {true, false}, true, 50, 8, 2, false, 2, damp, -1, false},
        {"ends in ReLU", {6, 12, 4}, {true, true}, true, 64, 16, 2, false, 2, plain, -1, false},
        {"no bias, no relu", {6, 12, 4}, {false, false}, false, 64, 16, 1, false, 1, mom, -1, false},
        {"single Linear", {9, 2}, {false}, true, 30, 7, 2, false, 2, mom, -1, false},
        {"drop_last", {10, 20, 1}, {true, false}, true, 100, 16, 2, true, 2, mom, -1, false},
        {"batch > n", {10, 20, 1}, {true, false}, true, 10, 64, 2, false, 0, plain, -1, false},
        {"split-K products", {300, 64, 4}, {true, false}, true, 48, 40, 1, false, 2, mom, -1, false},
        {"non-finite stops (epoch 2)", {10, 20, 1}, {true, false}, true, 64, 16, 2, false, 0, mom, 37, false},
        {"non-finite stops in batch 0", {10, 20, 1}, {true, false}, true, 64, 16, 2, false, 0, plain, 3, false},
        {"non-finite allowed", {10, 20, 1}, {true, false}, true, 64, 16, 1, false, 0, plain, 37, true},
    };
    for (const Case& c : all) run_case(c, rng);
    // The non-finite case with a per-epoch order: the NaN sample lands wherever the order puts it.
    {
        Case c = all[11];
        c.name = "non-finite stops, per-epoch perm";
        c.perm_mode = 2;
        run_case(c, rng);
    }
    // Frozen parameters (requires_grad=False) are not updated; with momentum and weight decay.
    for (size_t i : {size_t(0), size_t(3)}) {
        Case c = all[i];
        c.name += ", frozen weight 0 and bias of the last layer";
        c.frozen_w = 0;
        c.frozen_b = int(c.widths.size()) - 2;
        c.sgd.momentum = 0.9f;
        c.sgd.weight_decay = 0.01f;
        run_case(c, rng);
    }
    // should_stop (Ctrl-C): no step is queued after it answers true, mid-epoch and at step 0.
    for (int64_t k : {int64_t(0), int64_t(5)}) {
        Case c = all[0];
        c.name += ", should_stop before step " + std::to_string(k);
        c.epochs = 3;
        c.stop_after = k;
        run_case(c, rng);
    }
    // forward: chunked inference equals a float64 chain
    {
        std::normal_distribution<float> nd;
        const std::vector<int64_t> widths{12, 30, 20, 3};
        std::vector<std::vector<float>> W, b;
        std::vector<MlpLayer> layers(3);
        for (size_t l = 0; l < 3; ++l) {
            W.emplace_back(size_t(widths[l] * widths[l + 1]));
            b.emplace_back(size_t(widths[l + 1]));
            for (auto& v : W.back()) v = nd(rng) * 0.3f;
            for (auto& v : b.back()) v = nd(rng) * 0.1f;
        }
        for (size_t l = 0; l < 3; ++l) {
            layers[l].weight = W[l].data();
            layers[l].bias = l == 1 ? nullptr : b[l].data();
            layers[l].in = widths[l];
            layers[l].out = widths[l + 1];
            layers[l].relu = l != 1;
        }
        const int64_t n = 45;
        std::vector<float> X(size_t(n * 12)), out(size_t(n * 3), NAN);
        for (auto& v : X) v = nd(rng);
        EmuOps ops;
        fastmlp::cuda::mlp_impl::forward(ops, out.data(), layers, X.data(), n, 16);  // chunks 16,16,13
        bool ok = true;
        for (int64_t i = 0; i < n; ++i) {
            std::vector<double> a(X.begin() + i * 12, X.begin() + (i + 1) * 12);
            for (size_t l = 0; l < 3; ++l) {
                std::vector<double> z(size_t(widths[l + 1]));
                for (int64_t j = 0; j < widths[l + 1]; ++j) {
                    double s = layers[l].bias ? b[l][size_t(j)] : 0.0;
                    for (int64_t k = 0; k < widths[l]; ++k) s += a[size_t(k)] * W[l][size_t(j * widths[l] + k)];
                    z[size_t(j)] = layers[l].relu ? std::max(s, 0.0) : s;
                }
                a = z;
            }
            for (int64_t j = 0; j < 3; ++j) ok &= close(out[size_t(i * 3 + j)], a[size_t(j)], 1e-5);
        }
        expect(ok, "forward 12-30-20-3 in chunks of 16");
    }
    std::printf("%d/%d cases agree\n", cases - failures, cases);
    return failures ? 1 : 0;
}
