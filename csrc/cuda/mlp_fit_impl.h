// The host side of the GPU general fused trainer (cuda_mlp_fit.h): workspace layout, the epoch /
// batch loop and the order of the launches of one step, written once over an `Ops` backend so
// that the same code runs on the GPU (mlp_fit.cu: launches on a stream) and in the CPU emulation
// of the kernels (tests/cuda/mlp_fit_emulator.cpp). Plain C++: no CUDA syntax here. The math is
// csrc/cpu/mlp_fit.cpp's, step for step (see mlp_fit.h).
//
// Ops provides, all ordered like launches on one stream (kernels of mlp_fit_kernels.cuh):
//   size_t gemm_workspace_bytes(M, N, K);  void gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
//        C, ldc, GemmEpilogue, void* ws, size_t ws_bytes);
//   void gather(xb, yb, yib, swb, X, Y, Yi, sw, idx, B, din, dout);
//   void dropout(out, mask, y, n, p, seed, step, layer);
//   void act_backward(d, mask, z, y, n, ActParams);
//   void act_forward(y, x, n, ActParams);        (the activation after a norm layer)
//   void norm_forward(FitNorm, mode, update, f, stop, y, xhat, rstd, x, B, C);
//   void norm_param_grad(gw, gb, d, xhat, B, C);  void norm_backward(FitNorm, mode, d, xhat, rstd, B, C);
//   void colsum(dbias, d, B, C);                 (grad_mask_colsum_kernel, bias gradient only)
//   void sum(double* dst, const float* v, n);
//   void elem_loss(dP, rows, P, Y, sw, pos_weight, B, O, LossParams, out_factor, loss_scale,
//        swsum, count_rows);  void elem_loss_finish(loss, rows, B, out_factor, loss_scale, swsum,
//        count_rows);
//   void ce_rows(lse, rl, rw, P, yi, sw, cw, B, C, ignore_index, smoothing);
//   void ce_finish(loss, scal, rl, rw, B);
//   void ce_grad(dP, P, lse, yi, sw, cw, scal, wsum, B, C, ignore_index, smoothing);
//   void l2_loss(loss, table, count, l2w_over_b);
//   void optim_guarded(table, count, max_n, Optim, coef, loss, stop, tag, allow_nonfinite);
//   Memory allocate(bytes);  to_device / to_host (dst, src, bytes);  fill_zero(dst, bytes);
//   finish() (wait for everything queued; results are on the host after).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "fastmlp/gemm.h"  // GemmEpilogue
#include "fastmlp/mlp_fit.h"
#include "mlp_fit_kernels.cuh"  // FitParam, StepCoeffs (plain structs)
#include "mlp_train_impl.h"     // Carver, workspace_bytes, place_workspace

namespace fastmlp::cuda::fit_impl {

using mlp_impl::Carver;
using mlp_impl::place_workspace;
using mlp_impl::workspace_bytes;

struct Work {
    float* xb = nullptr;        // (B, din) gathered inputs
    float* yb = nullptr;        // (B, dout) gathered float targets
    int64_t* yib = nullptr;     // (B) gathered class targets
    float* swb = nullptr;       // (B) gathered sample weights (ones without)
    std::vector<float*> y;      // y[l] (B, out_l): the activation's output (what gemm writes)
    std::vector<float*> z;      // z[l] (B, out_l): the pre-activation, where the backward reads it
    std::vector<float*> mask;   // mask[l] (B, out_l): dropout scale (dropout layers)
    std::vector<float*> drop;   // drop[l] (B, out_l): y * mask, the next layer's input
    float* d0 = nullptr;        // (B, maxw) gradient ping-pong buffers
    float* d1 = nullptr;
    std::vector<float*> gw, gb; // gradients of the trainable parameters (null: frozen / none)
    // Norm layers (FitNorm): nxhat[l] (B, out) the normalised values, nrstd[l] (B rows for
    // LayerNorm, out columns for BatchNorm1d), yact[l] (B, out) the activation's output before a
    // norm after it (non-identity activations); gnw/gnb the norm weight/bias gradients.
    std::vector<float*> nxhat, nrstd, yact, gnw, gnb;
    std::vector<int> nmode;     // norm_mode(layer's norm, training) per layer
    double* rows = nullptr;     // (B) per-row losses (element-wise) / rl (cross-entropy)
    double* rw = nullptr;       // (B) cross-entropy row weights
    double* lse = nullptr;      // (B) cross-entropy log-sum-exp
    double* scal = nullptr;     // [0] sum of sample weights, [1] 1 / CE mean weight, [2] sum of class weights
    double* losses = nullptr;   // (steps) batch losses
    int64_t* stop = nullptr;    // 0, or 1 + the step index whose loss stopped training
    int64_t* perm = nullptr;    // the orders
    FitParam* table = nullptr;  // trainable parameters
    FitParam* l2tab = nullptr;  // every layer's weight (the L2 penalty's value sums them all)
    StepCoeffs* coef = nullptr; // (steps) per-step update scalars
    void* gemm_ws = nullptr;
    size_t gemm_ws_bytes = 0;
    const float* input(size_t l) const { return l == 0 ? xb : (drop[l - 1] ? drop[l - 1] : y[l - 1]); }
};

// The update scalars of step k of this call (global step opt.step0 + k, bringing t to that + 1),
// for a batch of Bn rows: mlp_fit.cpp's schedule handling (fit_step_optim, mlp_fit.h).
inline StepCoeffs step_coeffs(const FitOptions& opt, int64_t k, int64_t Bn) {
    StepCoeffs sc;
    sc.c = optim_coeffs(fit_step_optim(opt, k), opt.step0 + k + 1);
    sc.l2 = float(double(opt.l2_weights) / double(Bn));
    return sc;
}

// A norm layer's training forward: y = norm(x) (y may be x), keeping xhat / rstd; a BatchNorm1d
// on the batch's statistics with running statistics updates them with factor momentum, or for
// momentum=None 1 / (count0 + k + 1) (k: this call's training forwards before this one).
template <class Ops>
void norm_train_forward(Ops& ops, const FitNorm& nm, const Work& w, size_t l, int64_t k, float* y,
                        const float* x, int64_t Bn, int64_t C) {
    const int mode = w.nmode[l];
    const bool update = mode == kBatchNorm && nm.running_mean && nm.running_var;
    const double f = nm.cumulative ? 1.0 / double(nm.count0 + k + 1) : nm.momentum;
    ops.norm_forward(nm, mode, update, f, w.stop, y, w.nxhat[l], w.nrstd[l], x, Bn, C);
}

// One training step on the gathered batch of Bn rows; its loss goes to *loss_slot.
template <class Ops>
void fit_step(Ops& ops, const std::vector<FitLayer>& layers, const Work& w, const FitData& data,
              const FitOptions& opt, int64_t Bn, int64_t step, double* loss_slot,
              const StepCoeffs* coef, int64_t tag, int count, int64_t max_n, bool has_l2) {
    const size_t L = layers.size();
    // BatchNorm1d's running-statistics factor for this call's forward number k (mlp_fit.cpp's)
    const int64_t k = step - opt.step0;
    for (size_t l = 0; l < L; ++l) {  // Y_l = act(A_l W_l^T + b_l) (z kept where needed), dropout
        const FitLayer& ly = layers[l];
        const FitNorm& nm = ly.norm;
        GemmEpilogue epi;
        epi.bias = ly.bias;
        if (nm.kind != Norm::none && nm.before_act) {
            // Z into y (bias only), N = norm(Z) into z (the activation's input, where its backward
            // reads it; else y in place), Y = act(N)
            ops.gemm(false, true, Bn, ly.out, ly.in, 1.0f, w.input(l), ly.in, ly.weight, ly.in,
                     0.0f, w.y[l], ly.out, epi, w.gemm_ws, w.gemm_ws_bytes);
            float* nb = w.z[l] ? w.z[l] : w.y[l];
            norm_train_forward(ops, nm, w, l, k, nb, w.y[l], Bn, ly.out);
            if (ly.act.kind != Act::identity) ops.act_forward(w.y[l], nb, Bn * ly.out, ly.act);
        } else {
            // Y0 = act(Z) (into yact before a norm that follows a non-identity activation), then
            // Y = norm(Y0)
            if (ly.act.kind == Act::relu) epi.relu = true;
            else epi.act = ly.act;
            epi.pre_act = w.z[l];
            float* y0 = w.yact[l] ? w.yact[l] : w.y[l];
            ops.gemm(false, true, Bn, ly.out, ly.in, 1.0f, w.input(l), ly.in, ly.weight, ly.in,
                     0.0f, y0, ly.out, epi, w.gemm_ws, w.gemm_ws_bytes);
            if (nm.kind != Norm::none) norm_train_forward(ops, nm, w, l, k, w.y[l], y0, Bn, ly.out);
        }
        if (w.drop[l])
            ops.dropout(w.drop[l], w.mask[l], w.y[l], Bn * ly.out, ly.dropout, opt.dropout_seed,
                        step, int64_t(l));
    }
    const int64_t O = layers[L - 1].out;
    const float* P = w.input(L);
    float* dz = w.d0;
    const bool weighted = data.sample_weight != nullptr;
    if (opt.loss.kind == Loss::cross_entropy) {
        ops.ce_rows(w.lse, w.rows, w.rw, P, w.yib, w.swb, opt.class_weight, Bn, O, opt.ignore_index,
                    opt.label_smoothing);
        ops.ce_finish(loss_slot, w.scal, w.rows, w.rw, Bn);
        ops.ce_grad(dz, P, w.lse, w.yib, w.swb, opt.class_weight, w.scal,
                    opt.class_weight ? w.scal + 2 : nullptr, Bn, O, opt.ignore_index,
                    opt.label_smoothing);
    } else {
        const double of = opt.loss_sum_outputs ? 1.0 : double(O);
        const double* swsum = nullptr;
        if (weighted) {
            ops.sum(w.scal, w.swb, Bn);
            swsum = w.scal;
        }
        ops.elem_loss(dz, w.rows, P, w.yb, w.swb, opt.pos_weight, Bn, O, opt.loss, of,
                      double(opt.loss_scale), swsum, double(Bn));
        ops.elem_loss_finish(loss_slot, w.rows, Bn, of, double(opt.loss_scale), swsum, double(Bn));
    }
    if (has_l2)
        ops.l2_loss(loss_slot, w.l2tab, int(L), double(opt.l2_weights) / double(Bn));
    for (size_t l = L; l-- > 0;) {  // backward, last layer first; every update after it
        const FitLayer& ly = layers[l];
        const FitNorm& nm = ly.norm;
        const int64_t nn = Bn * ly.out;
        auto norm_grad = [&]() {  // dz: dLoss/dY of the norm on entry, dLoss/dX on return
            if (w.gnw[l] || w.gnb[l]) ops.norm_param_grad(w.gnw[l], w.gnb[l], dz, w.nxhat[l], Bn, ly.out);
            ops.norm_backward(nm, w.nmode[l], dz, w.nxhat[l], w.nrstd[l], Bn, ly.out);
        };
        if (nm.kind != Norm::none && !nm.before_act) {  // dropout mask, norm, then the activation
            if (w.mask[l]) ops.act_backward(dz, w.mask[l], nullptr, nullptr, nn, ActParams{});
            norm_grad();
            ops.act_backward(dz, nullptr, w.z[l], w.yact[l] ? w.yact[l] : w.y[l], nn, ly.act);
        } else {
            ops.act_backward(dz, w.mask[l], w.z[l], w.y[l], nn, ly.act);
            if (nm.kind != Norm::none) norm_grad();
        }
        float* da = dz == w.d0 ? w.d1 : w.d0;
        if (l > 0)  // dA_l (Bn, in) = dZ_l (Bn, out) @ W_l (out, in)
            ops.gemm(false, false, Bn, ly.in, ly.out, 1.0f, dz, ly.out, ly.weight, ly.in, 0.0f, da,
                     ly.in, GemmEpilogue{}, w.gemm_ws, w.gemm_ws_bytes);
        if (w.gw[l])  // dW_l (out, in) = dZ_l^T (out, Bn) @ A_l (Bn, in)
            ops.gemm(true, false, ly.out, ly.in, Bn, 1.0f, dz, ly.out, w.input(l), ly.in, 0.0f,
                     w.gw[l], ly.in, GemmEpilogue{}, w.gemm_ws, w.gemm_ws_bytes);
        if (w.gb[l]) ops.colsum(w.gb[l], dz, Bn, ly.out);
        dz = da;
    }
    ops.optim_guarded(w.table, count, max_n, opt.optim.kind, coef, loss_slot, w.stop, tag,
                      opt.allow_nonfinite);
}

template <class Ops>
FitResult fit(Ops& ops, const std::vector<FitLayer>& layers, const FitData& data, int64_t epochs,
              const FitOptions& opt) {
    if (layers.empty()) throw std::invalid_argument("mlp_fit: no layers");
    if (opt.batch_size < 1) throw std::invalid_argument("mlp_fit: batch_size must be >= 1");
    if (opt.grad_allreduce)  // FitOptions' data-parallel hook: the CPU trainer's (mlp_fit.cpp) only
        throw std::invalid_argument("mlp_fit: the GPU trainer does not run data-parallel steps "
                                    "(grad_allreduce); fit(distributed=True) trains CPU models");
    FitResult res;
    if (epochs <= 0) return res;
    const int64_t n = data.n, L = int64_t(layers.size());
    const int64_t din = layers[0].in, dout = layers[size_t(L - 1)].out, bs = opt.batch_size;
    const int64_t nbatches = n <= 0 ? 0 : opt.drop_last ? n / bs : (n + bs - 1) / bs;
    if (nbatches == 0) {  // as the CPU trainer: no step, NaN epoch losses
        res.epoch_loss.assign(size_t(epochs), std::numeric_limits<double>::quiet_NaN());
        return res;
    }
    const bool index_targets = data.Yi != nullptr;
    const int64_t B = std::min(bs, n), rem = opt.drop_last ? 0 : n % bs;
    const int64_t steps_total = epochs * nbatches;
    const int64_t perm_len = opt.perm ? (opt.perm_per_epoch ? epochs * n : n) : n;
    int64_t maxw = 0, max_n = 0;
    int count = 0;
    const bool has_l2 = opt.l2_weights != 0.0f;
    size_t gemm_ws = 0;
    for (const FitLayer& ly : layers) {
        maxw = std::max(maxw, ly.out);
        if (!ly.frozen_weight) {
            max_n = std::max(max_n, ly.in * ly.out);
            ++count;
        }
        if (ly.bias && !ly.frozen_bias) {
            max_n = std::max(max_n, ly.out);
            ++count;
        }
        if (ly.norm.kind != Norm::none) {
            const int tn = int(ly.norm.weight && !ly.norm.frozen_weight) +
                           int(ly.norm.bias && !ly.norm.frozen_bias);
            if (tn) max_n = std::max(max_n, ly.out);
            count += tn;
        }
    }
    for (int64_t Bn : {B, rem}) {
        if (Bn <= 0) continue;
        for (size_t l = 0; l < layers.size(); ++l) {
            const FitLayer& ly = layers[l];
            gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(Bn, ly.out, ly.in));
            if (l > 0) gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(Bn, ly.in, ly.out));
            gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(ly.out, ly.in, Bn));
        }
    }
    Work w;
    auto layout = [&](Carver& cv) {
        w.xb = cv.take<float>(B * din);
        w.yb = index_targets ? nullptr : cv.take<float>(B * dout);
        w.yib = index_targets ? cv.take<int64_t>(B) : nullptr;
        w.swb = cv.take<float>(B);
        w.y.assign(size_t(L), nullptr);
        w.z.assign(size_t(L), nullptr);
        w.mask.assign(size_t(L), nullptr);
        w.drop.assign(size_t(L), nullptr);
        w.gw.assign(size_t(L), nullptr);
        w.gb.assign(size_t(L), nullptr);
        for (auto* v : {&w.nxhat, &w.nrstd, &w.yact, &w.gnw, &w.gnb}) v->assign(size_t(L), nullptr);
        w.nmode.assign(size_t(L), kRowsNorm);
        for (int64_t l = 0; l < L; ++l) {
            const FitLayer& ly = layers[size_t(l)];
            const int64_t m = B * ly.out;
            w.y[size_t(l)] = cv.take<float>(m);
            // relu reads its output; other kinds that need z get it from the GEMM epilogue
            if (act_backward_needs_input(ly.act.kind)) w.z[size_t(l)] = cv.take<float>(m);
            if (ly.dropout > 0.0f) {
                w.mask[size_t(l)] = cv.take<float>(m);
                w.drop[size_t(l)] = cv.take<float>(m);
            }
            if (!ly.frozen_weight) w.gw[size_t(l)] = cv.take<float>(ly.in * ly.out);
            if (ly.bias && !ly.frozen_bias) w.gb[size_t(l)] = cv.take<float>(ly.out);
            const FitNorm& nm = ly.norm;
            if (nm.kind != Norm::none) {
                w.nmode[size_t(l)] = norm_mode(nm, true);
                w.nxhat[size_t(l)] = cv.take<float>(m);
                w.nrstd[size_t(l)] = cv.take<float>(nm.kind == Norm::layer ? B : ly.out);
                if (!nm.before_act && ly.act.kind != Act::identity) w.yact[size_t(l)] = cv.take<float>(m);
                if (nm.weight && !nm.frozen_weight) w.gnw[size_t(l)] = cv.take<float>(ly.out);
                if (nm.bias && !nm.frozen_bias) w.gnb[size_t(l)] = cv.take<float>(ly.out);
            }
        }
        w.d0 = cv.take<float>(B * maxw);
        w.d1 = cv.take<float>(B * maxw);
        w.rows = cv.take<double>(B);
        w.rw = cv.take<double>(B);
        w.lse = cv.take<double>(B);
        w.scal = cv.take<double>(4);
        w.losses = cv.take<double>(steps_total);
        w.stop = cv.take<int64_t>(1);
        w.perm = cv.take<int64_t>(perm_len);
        w.table = cv.take<FitParam>(count);
        w.l2tab = cv.take<FitParam>(has_l2 ? L : 0);
        w.coef = cv.take<StepCoeffs>(steps_total);
        w.gemm_ws = cv.take<char>(int64_t(gemm_ws));
        w.gemm_ws_bytes = gemm_ws;
    };
    auto mem = ops.allocate(workspace_bytes(layout));
    place_workspace(mem.get(), layout);

    std::vector<FitParam> table;
    for (int64_t l = 0; l < L; ++l) {
        const FitLayer& ly = layers[size_t(l)];
        if (w.gw[size_t(l)])
            table.push_back({ly.weight, w.gw[size_t(l)], ly.wstate[0], ly.wstate[1], ly.wstate[2],
                             ly.in * ly.out, 1});
        if (w.gb[size_t(l)])
            table.push_back({ly.bias, w.gb[size_t(l)], ly.bstate[0], ly.bstate[1], ly.bstate[2],
                             ly.out, 0});
        // a norm layer's weight and bias (no L2 term: scikit-learn's is on the weights only)
        const FitNorm& nm = ly.norm;
        if (w.gnw[size_t(l)])
            table.push_back({nm.weight, w.gnw[size_t(l)], nm.wstate[0], nm.wstate[1], nm.wstate[2],
                             ly.out, 0});
        if (w.gnb[size_t(l)])
            table.push_back({nm.bias, w.gnb[size_t(l)], nm.bstate[0], nm.bstate[1], nm.bstate[2],
                             ly.out, 0});
    }
    std::vector<FitParam> l2tab;
    if (has_l2)
        for (const FitLayer& ly : layers)
            l2tab.push_back({ly.weight, nullptr, nullptr, nullptr, nullptr, ly.in * ly.out, 1});
    ops.to_device(w.l2tab, l2tab.data(), l2tab.size() * sizeof(FitParam));
    std::vector<StepCoeffs> coefs(static_cast<size_t>(steps_total));
    for (int64_t k = 0; k < steps_total; ++k) {
        const int64_t bi = k % nbatches;
        coefs[size_t(k)] = step_coeffs(opt, k, std::min(bs, n - bi * bs));
    }
    std::vector<int64_t> ident;
    const int64_t* order = opt.perm;
    if (!order) {
        ident.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) ident[size_t(i)] = i;
        order = ident.data();
    }
    ops.to_device(w.table, table.data(), table.size() * sizeof(FitParam));
    ops.to_device(w.coef, coefs.data(), coefs.size() * sizeof(StepCoeffs));
    ops.to_device(w.perm, order, size_t(perm_len) * sizeof(int64_t));
    ops.fill_zero(w.stop, sizeof(int64_t));
    if (opt.class_weight) ops.sum(w.scal + 2, opt.class_weight, dout);

    // The loop: launches only. The step index + 1 tags the batch whose loss stops training.
    int64_t k = 0;
    for (int64_t e = 0; e < epochs; ++e) {
        const int64_t* ord = w.perm + (opt.perm && opt.perm_per_epoch ? e * n : 0);
        for (int64_t bi = 0; bi < nbatches; ++bi, ++k) {
            const int64_t start = bi * bs, nb = std::min(bs, n - start);
            ops.gather(w.xb, w.yb, w.yib, w.swb, data.X, data.Y, data.Yi, data.sample_weight,
                       ord + start, nb, din, dout);
            fit_step(ops, layers, w, data, opt, nb, opt.step0 + k, w.losses + k, w.coef + k, k + 1,
                     count, max_n, has_l2);
        }
    }

    // The one copy back: every batch loss and the stop flag.
    std::vector<double> losses(static_cast<size_t>(steps_total));
    int64_t stop = 0;
    ops.to_host(losses.data(), w.losses, losses.size() * sizeof(double));
    ops.to_host(&stop, w.stop, sizeof(int64_t));
    ops.finish();

    res.tally_losses(losses, stop > 0 ? stop - 1 : steps_total, steps_total, epochs, nbatches, n,
                     bs, /*first_is_loss=*/false);
    return res;
}

// Inference in chunks of rows (mlp_impl::chunked_forward); the last layer writes `out`.
template <class Ops>
void forward(Ops& ops, float* out, const std::vector<FitLayer>& layers, const float* X, int64_t n,
             int64_t chunk = 16384) {
    if (layers.empty()) throw std::invalid_argument("mlp_fit_forward: no layers");
    if (n <= 0) return;
    // A BatchNorm1d without running statistics normalises with the statistics of all n rows (as
    // the CPU's mlp_fit_forward): one chunk then.
    for (const FitLayer& ly : layers)
        if (ly.norm.kind != Norm::none && norm_mode(ly.norm, false) == kBatchNorm) chunk = n;
    mlp_impl::chunked_forward(
        ops, out, layers, X, n, chunk,
        [&](const FitLayer& ly, const float* a, float* z, int64_t rows, void* ws, size_t ws_bytes) {
            const FitNorm& nm = ly.norm;
            GemmEpilogue epi;
            epi.bias = ly.bias;
            const bool pre = nm.kind != Norm::none && nm.before_act;
            if (!pre) {
                if (ly.act.kind == Act::relu) epi.relu = true;
                else epi.act = ly.act;
            }
            ops.gemm(false, true, rows, ly.out, ly.in, 1.0f, a, ly.in, ly.weight, ly.in, 0.0f, z,
                     ly.out, epi, ws, ws_bytes);
            if (nm.kind != Norm::none) {  // eval mode: BatchNorm1d on its running statistics
                ops.norm_forward(nm, norm_mode(nm, false), false, 0.0, nullptr, z, nullptr,
                                 nullptr, z, rows, ly.out);
                if (pre && ly.act.kind != Act::identity) ops.act_forward(z, z, rows * ly.out, ly.act);
            }
        });
}

}  // namespace fastmlp::cuda::fit_impl
