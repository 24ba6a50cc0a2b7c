// The general fused trainer (mlp_fit.h): any activation, dropout, loss and optimizer of the
// numeric-rule headers, batch-major on fastmlp::sgemm. The ReLU/MSE/SGD special case keeps its
// own faster trainer (mlp_train.cpp, with the small-matrix path); this one is what fit runs for
// every other chain. Every rule comes from activation.h, loss.h, optimizer.h and norm.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fastmlp/activations.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/dropout.h"
#include "fastmlp/elementwise.h"
#include "fastmlp/gemm.h"
#include "fastmlp/mlp.h"
#include "fastmlp/mlp_fit.h"
#include "fastmlp/norm.h"
#include "fastmlp/optimizers.h"
#include "mlp_fit_small.h"
#include "mlp_train_small.h"

#include <omp.h>

namespace fastmlp {

using detail::ScratchVec;

namespace {

inline int threads_elem(int64_t n, double cost = 8.0) { return threads_for(double(n) * cost); }

// dropout_uniform: the counter-based hash of fastmlp/dropout.h (shared with the CUDA trainer).

struct Scratch {
    std::vector<ScratchVec> a;     // a[l] (B, in_l): layer inputs; a[L] = output P
    std::vector<ScratchVec> z;     // z[l] (B, out_l): pre-activation where needed
    std::vector<ScratchVec> mask;  // mask[l] (B, out_l): dropout scale (0 or 1/(1-p))
    std::vector<ScratchVec> ykeep; // ykeep[l] (B, out_l): act output before dropout
    ScratchVec y, d0, d1;
    // grads: every trainable parameter's gradient in one flat buffer (layer 0's weight, its bias,
    // layer 1's weight, ...; frozen parameters have no slot), so one step's gradients can be
    // all-reduced in one call (fit(distributed=True)) before the update.
    ScratchVec grads;
    std::vector<int64_t> gw_off, gb_off;  // offset of layer l's weight/bias gradient, or -1
    // Norm layers (FitNorm): xhat[l] (B, out) the normalised values, rstd[l] (B rows for
    // LayerNorm, out columns for BatchNorm1d), yact[l] (B, out) the activation's output before a
    // norm that follows it; gnw_off/gnb_off the norm weight/bias gradient offsets in grads, or -1.
    std::vector<ScratchVec> nxhat, nrstd, yact;
    std::vector<int64_t> gnw_off, gnb_off;
    int64_t bn_forwards = 0;  // training forwards so far (BatchNorm1d's cumulative average)
    std::vector<int64_t> yi;
    std::vector<float> sw;
    std::vector<double> rl, rw, lse;  // loss_and_grad's per-row sums (B)
    // update_params' multi-tensor view of the trainable parameters (optim_step_many's layout):
    // per tensor its pointer, gradient slot, state slots, size, and whether the L2 term applies.
    std::vector<float*> up_p, up_s0, up_s1, up_s2;
    std::vector<const float*> up_g;
    std::vector<int64_t> up_n, up_steps;
    std::vector<uint8_t> up_l2;
    void init(const std::vector<FitLayer>& layers, int64_t B, bool index_targets) {
        const size_t L = layers.size();
        a.assign(L + 1, {});
        z.assign(L, {});
        mask.assign(L, {});
        ykeep.assign(L, {});
        a[0].assign(size_t(B * layers[0].in), 0.0f);
        int64_t maxw = layers[0].in, ng = 0;
        gw_off.assign(L, -1);
        gb_off.assign(L, -1);
        gnw_off.assign(L, -1);
        gnb_off.assign(L, -1);
        nxhat.assign(L, {});
        nrstd.assign(L, {});
        yact.assign(L, {});
        bn_forwards = 0;
        for (size_t l = 0; l < L; ++l) {
            const FitLayer& ly = layers[l];
            if (!ly.frozen_weight) {
                gw_off[l] = ng;
                ng += ly.in * ly.out;
            }
            if (ly.bias && !ly.frozen_bias) {
                gb_off[l] = ng;
                ng += ly.out;
            }
            const FitNorm& nm = ly.norm;
            if (nm.kind != Norm::none) {
                if (nm.weight && !nm.frozen_weight) {
                    gnw_off[l] = ng;
                    ng += ly.out;
                }
                if (nm.bias && !nm.frozen_bias) {
                    gnb_off[l] = ng;
                    ng += ly.out;
                }
                nxhat[l].assign(size_t(B * ly.out), 0.0f);
                nrstd[l].assign(size_t(nm.kind == Norm::layer ? B : ly.out), 0.0f);
                if (!nm.before_act && ly.act.kind != Act::identity)
                    yact[l].assign(size_t(B * ly.out), 0.0f);
            }
            a[l + 1].assign(size_t(B * ly.out), 0.0f);
            if (act_backward_needs_input(ly.act.kind)) z[l].assign(size_t(B * ly.out), 0.0f);
            if (ly.dropout > 0.0f) {
                mask[l].assign(size_t(B * ly.out), 0.0f);
                ykeep[l].assign(size_t(B * ly.out), 0.0f);
            }
            maxw = std::max(maxw, ly.out);
        }
        if (index_targets)
            yi.assign(size_t(B), 0);
        else
            y.assign(size_t(B * layers.back().out), 0.0f);
        sw.assign(size_t(B), 1.0f);
        rl.assign(size_t(B), 0.0);
        rw.assign(size_t(B), 0.0);
        lse.assign(size_t(B), 0.0);
        d0.assign(size_t(B * maxw), 0.0f);
        d1.assign(size_t(B * maxw), 0.0f);
        // one slot more, after the gradients: fit(distributed=True) all-reduces the rank's share
        // of the loss with them (sized here: up_g below points into this buffer)
        grads.assign(size_t(ng + 1), 0.0f);
        up_p.clear(), up_s0.clear(), up_s1.clear(), up_s2.clear(), up_g.clear(), up_n.clear();
        up_l2.clear();
        auto add = [&](float* p, int64_t off, float* const* st, int64_t m, bool l2) {
            up_p.push_back(p);
            up_g.push_back(grads.data() + off);
            up_s0.push_back(st[0]);
            up_s1.push_back(st[1]);
            up_s2.push_back(st[2]);
            up_n.push_back(m);
            up_l2.push_back(l2);
        };
        for (size_t l = 0; l < L; ++l) {
            const FitLayer& ly = layers[l];
            if (gw_off[l] >= 0) add(ly.weight, gw_off[l], ly.wstate, ly.in * ly.out, true);
            if (gb_off[l] >= 0) add(ly.bias, gb_off[l], ly.bstate, ly.out, false);
            // a norm layer's weight and bias (no L2 term: scikit-learn's is on the weights only)
            if (gnw_off[l] >= 0) add(ly.norm.weight, gnw_off[l], ly.norm.wstate, ly.out, false);
            if (gnb_off[l] >= 0) add(ly.norm.bias, gnb_off[l], ly.norm.bstate, ly.out, false);
        }
        up_steps.assign(up_p.size(), 0);
    }
};

// y (n) = act(z) and d (n) = d * act'(z, y): the SIMD kernels of activations.h.
void act_apply(float* y, const float* z, int64_t n, ActParams p) { act_forward(y, z, n, p); }

void act_grad(float* d, const float* z, const float* y, int64_t n, ActParams p) {
    if (p.kind == Act::identity) return;
    act_backward(d, d, z, y, n, p);
}

// colsum (C) of d (B, C) in double, rows in order; column blocks per thread (thread-independent).
void colsum(float* out, const float* d, int64_t B, int64_t C) {
    constexpr int64_t kCols = 256;
    const int64_t nblocks = (C + kCols - 1) / kCols;
    const int nt = threads_for(double(B) * double(C) * 2.0);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t j0 = blk * kCols, w = std::min(kCols, C - j0);
        double acc[kCols];
        for (int64_t j = 0; j < w; ++j) acc[j] = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const float* r = d + b * C + j0;
            for (int64_t j = 0; j < w; ++j) acc[j] += double(r[j]);
        }
        for (int64_t j = 0; j < w; ++j) out[j0 + j] = float(acc[j]);
    }
}

// out (C) = sum over the B rows of d * x (both (B, C)), in double, rows in order (as colsum).
void colsum_prod(float* out, const float* d, const float* x, int64_t B, int64_t C) {
    constexpr int64_t kCols = 256;
    const int64_t nblocks = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) num_threads(threads_for(double(B) * double(C) * 3.0))
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t j0 = blk * kCols, w = std::min(kCols, C - j0);
        double acc[kCols];
        for (int64_t j = 0; j < w; ++j) acc[j] = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const float* r = d + b * C + j0;
            const float* q = x + b * C + j0;
            for (int64_t j = 0; j < w; ++j) acc[j] += double(r[j]) * double(q[j]);
        }
        for (int64_t j = 0; j < w; ++j) out[j0 + j] = float(acc[j]);
    }
}

// A norm layer's forward on x (B, C) into y (B, C) (y may be x), norm.h's rules. Training
// (train): xhat (B, C) and rstd (B or C) are kept for the backward, a BatchNorm1d with
// batch_stats updates its running statistics (`seen`: training forwards before this one in this
// call). Inference (xhat and rstd null): BatchNorm1d normalises with its running statistics,
// or with the statistics of these B rows when it has none.
void norm_forward(const FitNorm& nm, float* y, float* xhat, float* rstd, const float* x, int64_t B,
                  int64_t C, bool train, int64_t seen) {
    const float* w = nm.weight;
    const float* bb = nm.bias;
    if (nm.kind == Norm::layer) {
#pragma omp parallel for schedule(static) num_threads(threads_elem(B * C, 10.0))
        for (int64_t b = 0; b < B; ++b) {
            const float r = norm_forward_set(y + b * C, xhat ? xhat + b * C : nullptr, x + b * C, C,
                                             1, nm.eps, w, bb, true, 0, nullptr, nullptr);
            if (rstd) rstd[b] = r;
        }
        return;
    }
    const bool running = nm.running_mean && nm.running_var;
    const bool batch = train ? nm.batch_stats : !running;
    if (batch) {
        const bool update = train && running;
        const double f = nm.cumulative ? 1.0 / double(nm.count0 + seen + 1) : nm.momentum;
#pragma omp parallel for schedule(static) num_threads(threads_elem(B * C, 10.0))
        for (int64_t j = 0; j < C; ++j) {
            double mean = 0.0, var = 0.0;
            const float r = norm_forward_set(y + j, xhat ? xhat + j : nullptr, x + j, B, C, nm.eps,
                                             w, bb, false, j, &mean, &var);
            if (rstd) rstd[j] = r;
            if (update) norm_running_update(nm.running_mean[j], nm.running_var[j], mean, var, B, f);
        }
        return;
    }
    // constant statistics: the running ones
    std::vector<float> own;
    if (!rstd) {
        own.resize(size_t(C));
        rstd = own.data();
    }
    for (int64_t j = 0; j < C; ++j) rstd[j] = norm_rstd(double(nm.running_var[j]), nm.eps);
    const float* rs = rstd;
#pragma omp parallel for schedule(static) num_threads(threads_elem(B * C, 4.0))
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t j = 0; j < C; ++j) {
            const float xh = norm_xhat(x[b * C + j], double(nm.running_mean[j]), rs[j]);
            if (xhat) xhat[b * C + j] = xh;
            y[b * C + j] = norm_affine(xh, w, bb, j);
        }
    }
}

// A norm layer's backward in place: d (B, C) holds dLoss/dy on entry and dLoss/dx on return;
// the norm's weight/bias gradients go to gw / gb (null: frozen or absent).
void norm_backward(const FitNorm& nm, float* d, const float* xhat, const float* rstd, int64_t B,
                   int64_t C, float* gw, float* gb) {
    if (gw) colsum_prod(gw, d, xhat, B, C);
    if (gb) colsum(gb, d, B, C);
    const float* w = nm.weight;
    if (nm.kind == Norm::layer) {
#pragma omp parallel for schedule(static) num_threads(threads_elem(B * C, 10.0))
        for (int64_t b = 0; b < B; ++b)
            norm_backward_set(d + b * C, d + b * C, xhat + b * C, C, 1, rstd[b], w, true, 0);
        return;
    }
    if (nm.batch_stats) {
#pragma omp parallel for schedule(static) num_threads(threads_elem(B * C, 10.0))
        for (int64_t j = 0; j < C; ++j)
            norm_backward_set(d + j, d + j, xhat + j, B, C, rstd[j], w, false, j);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads_elem(B * C, 2.0))
    for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < C; ++j)
            d[b * C + j] = norm_backward_const(d[b * C + j], w ? w[j] : 1.0f, rstd[j]);
}

// The denominator of the mean loss of the batch of rows idx[0..B) of the data (with
// fit(distributed=True) the global batch, whichever rows this rank computes):
// cross_entropy: sum_i sw_i * w_{y_i} over the rows not ignore_index (PyTorch's weighted mean when
// sw = 1); element-wise: O (1 with loss_sum_outputs) * (sum_i sw_i, or B without sample weights)
// / loss_scale.
double loss_denominator(const FitData& data, const int64_t* idx, int64_t B, int64_t O,
                        const FitOptions& opt) {
    const float* sw = data.sample_weight;
    if (opt.loss.kind == Loss::cross_entropy) {
        double den = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const int64_t t = data.Yi[idx[b]];
            if (t == opt.ignore_index) continue;
            den += double(sw ? sw[idx[b]] : 1.0f) * ce_row_weight(t, opt.class_weight);
        }
        return den;
    }
    double rows = double(B);
    if (sw) {
        rows = 0.0;
        for (int64_t b = 0; b < B; ++b) rows += double(sw[idx[b]]);
    }
    return double(opt.loss_sum_outputs ? 1 : O) * rows / double(opt.loss_scale);
}

// The loss of B rows and dP (B, O) = dLoss/dP, both divided by den (loss_denominator of their
// batch: with fit(distributed=True) the global batch's, so that the ranks' parts sum to the mean).
// P (B, O); targets y (B, O) or yi (B); per-sample weights sw (B) (all ones without
// sample_weight). Returns the rows' share of the batch loss (double).
// cut (0 < cut < B, the small path's data-parallel partitions computed in one pass): the rows
// [0, cut) and [cut, B) sum their terms apart, each in row order from its first row, as a call
// on its rows alone would; the return is the first's share, *share1 the second's.
double loss_and_grad(float* dP, const float* P, const float* y, const int64_t* yi, const float* sw,
                     int64_t B, int64_t O, const FitOptions& opt, double den, Scratch& s,
                     int64_t cut = 0, double* share1 = nullptr) {
    const LossParams lp = opt.loss;
    // sum over the rows [lo, hi) of the per-row terms r, in order, over den
    auto share = [den](const double* r, int64_t lo, int64_t hi) {
        double num = 0.0;
        for (int64_t b = lo; b < hi; ++b) num += r[b];
        return den != 0.0 ? num / den : NAN;
    };
    auto shares = [&](const double* r) {
        if (!share1) return share(r, 0, B);
        *share1 = share(r, cut, B);
        return share(r, 0, cut);
    };
    if (lp.kind == Loss::cross_entropy) {
        // Rows of O logits: sum_i sw_i * row_loss_i / den; ignore_index rows contribute nothing.
        const float* cw = opt.class_weight;
        const float ls = opt.label_smoothing;
        double wsum = double(O);
        if (cw) {
            wsum = 0.0;
            for (int64_t c = 0; c < O; ++c) wsum += double(cw[c]);
        }
        double* rl = s.rl.data();
        double* lse_b = s.lse.data();
        const int nt = threads_elem(B * O, 20.0);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t b = 0; b < B; ++b) {
            const float* x = P + b * O;
            float* g = dP + b * O;
            const int64_t t = yi[b];
            rl[b] = 0.0;
            if (t == opt.ignore_index) {
                for (int64_t c = 0; c < O; ++c) g[c] = 0.0f;
                continue;
            }
            const double lse = ce_row_logsumexp(x, O, 1);
            lse_b[b] = lse;
            rl[b] = double(sw[b]) * ce_row_loss_index(x, O, 1, lse, t, cw, ls);
        }
        const double scale = den != 0.0 ? 1.0 / den : 0.0;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t b = 0; b < B; ++b) {
            const int64_t t = yi[b];
            if (t == opt.ignore_index) continue;
            const float* x = P + b * O;
            const double lse = lse_b[b];
            const double A = ce_row_coef_sum_index(t, cw, ls, wsum, O);
            const double sc = scale * double(sw[b]);
            float* g = dP + b * O;
            for (int64_t c = 0; c < O; ++c) g[c] = ce_grad_index(x[c], c, lse, t, cw, ls, A, O, sc);
        }
        return shares(rl);
    }
    // Element-wise losses: sum_i sw_i sum_o l / den.
    const double denom = den;
    double* rows = s.rl.data();
    const float* pw = opt.pos_weight;
    const int nt = threads_elem(B * O, 10.0);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t b = 0; b < B; ++b) {
        double acc = 0.0;
        const float wb = sw[b];
        const float g_scale = float(double(wb) / denom);
        for (int64_t o = 0; o < O; ++o) {
            const float x = P[b * O + o], t = y[b * O + o];
            const float pwo = pw ? pw[o] : 1.0f;
            acc += double(loss_elem_value(x, t, lp, pwo));
            dP[b * O + o] = loss_elem_grad(x, t, lp, pwo) * g_scale;
        }
        rows[b] = acc * double(wb);
    }
    return shares(rows);
}

// The targets and sample weights of rows idx[0..B) into s.y or s.yi and s.sw.
void gather_targets(Scratch& s, const FitData& data, const int64_t* idx, int64_t B, int64_t d_out) {
    for (int64_t b = 0; b < B; ++b) {
        if (data.Yi)
            s.yi[size_t(b)] = data.Yi[idx[b]];
        else
            std::memcpy(s.y.data() + b * d_out, data.Y + idx[b] * d_out, size_t(d_out) * sizeof(float));
        s.sw[size_t(b)] = data.sample_weight ? data.sample_weight[idx[b]] : 1.0f;
    }
}

// row0: the global batch row of local row 0 (fit(distributed=True)), so that masks are drawn per
// global row, as in one process.
void forward_batch(const std::vector<FitLayer>& layers, Scratch& s, int64_t B, bool train,
                   uint64_t dseed, int64_t step, int64_t row0 = 0) {
    const int64_t L = int64_t(layers.size());
    for (int64_t l = 0; l < L; ++l) {
        const FitLayer& ly = layers[size_t(l)];
        const int64_t n = B * ly.out;
        float* out = s.a[size_t(l + 1)].data();
        const bool keep_z = !s.z[size_t(l)].empty();
        float* zbuf = keep_z ? s.z[size_t(l)].data() : out;
        const FitNorm& nm = ly.norm;
        GemmEpilogue epi;
        epi.bias = ly.bias;
        if (nm.kind == Norm::none) {
            if (!keep_z) epi.act = ly.act;  // in the epilogue, on each tile while it is in cache
            sgemm(false, true, B, ly.out, ly.in, 1.0f, s.a[size_t(l)].data(), ly.in, ly.weight,
                  ly.in, 0.0f, zbuf, ly.out, epi);
            if (keep_z) act_apply(out, zbuf, n, ly.act);
        } else if (nm.before_act) {
            // Z into out, N = norm(Z) into zbuf (the activation's input, kept when its backward
            // reads it; else in place), out = act(N)
            sgemm(false, true, B, ly.out, ly.in, 1.0f, s.a[size_t(l)].data(), ly.in, ly.weight,
                  ly.in, 0.0f, out, ly.out, epi);
            norm_forward(nm, zbuf, s.nxhat[size_t(l)].data(), s.nrstd[size_t(l)].data(), out, B,
                         ly.out, train, s.bn_forwards);
            if (ly.act.kind != Act::identity) act_apply(out, zbuf, n, ly.act);
        } else {
            // Y0 = act(Z) into yact (out for identity), out = norm(Y0)
            float* y0 = s.yact[size_t(l)].empty() ? out : s.yact[size_t(l)].data();
            if (!keep_z) epi.act = ly.act;
            sgemm(false, true, B, ly.out, ly.in, 1.0f, s.a[size_t(l)].data(), ly.in, ly.weight,
                  ly.in, 0.0f, keep_z ? zbuf : y0, ly.out, epi);
            if (keep_z) act_apply(y0, zbuf, n, ly.act);
            norm_forward(nm, out, s.nxhat[size_t(l)].data(), s.nrstd[size_t(l)].data(), y0, B,
                         ly.out, train, s.bn_forwards);
        }
        if (train && ly.dropout > 0.0f) {
            // The activation's output y (which act_grad reads for relu, tanh, sigmoid) is kept
            // before the mask; the next layer reads the dropped, rescaled values.
            float* m = s.mask[size_t(l)].data();
            float* yk = s.ykeep[size_t(l)].data();
            const float p = ly.dropout;
            const float keep_scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) num_threads(threads_elem(n, 12.0))
            for (int64_t i = 0; i < n; ++i) {
                const bool keep = dropout_uniform(dseed, step, l, row0 * ly.out + i) >= p;
                m[i] = keep ? keep_scale : 0.0f;
                yk[i] = out[i];
                out[i] = out[i] * m[i];
            }
        }
    }
    if (train) ++s.bn_forwards;
}

// backward of one batch, last layer first: dz (B, out_L) holds dLoss/dP on entry (s.d0 or s.d1;
// both are overwritten). Fills s.grads with every trainable parameter's gradient; the weights are
// not changed (dA_l = dZ_l W_l reads them).
void backward_batch(const std::vector<FitLayer>& layers, Scratch& s, int64_t B, float* dz) {
    const int64_t L = int64_t(layers.size());
    for (int64_t l = L - 1; l >= 0; --l) {
        const FitLayer& ly = layers[size_t(l)];
        const int64_t nn = B * ly.out;
        const FitNorm& nm = ly.norm;
        const bool post_norm = nm.kind != Norm::none && !nm.before_act;
        const float* yv = post_norm ? s.yact[size_t(l)].data()
                          : ly.dropout > 0.0f ? s.ykeep[size_t(l)].data()
                                              : s.a[size_t(l + 1)].data();
        if (ly.dropout > 0.0f) {
            const float* m = s.mask[size_t(l)].data();
            for (int64_t i = 0; i < nn; ++i) dz[i] *= m[i];
        }
        auto norm_grad = [&]() {
            float* gw = s.gnw_off[size_t(l)] >= 0 ? s.grads.data() + s.gnw_off[size_t(l)] : nullptr;
            float* gb = s.gnb_off[size_t(l)] >= 0 ? s.grads.data() + s.gnb_off[size_t(l)] : nullptr;
            norm_backward(nm, dz, s.nxhat[size_t(l)].data(), s.nrstd[size_t(l)].data(), B, ly.out,
                          gw, gb);
        };
        if (post_norm) norm_grad();
        act_grad(dz, s.z[size_t(l)].empty() ? nullptr : s.z[size_t(l)].data(), yv, nn, ly.act);
        if (nm.kind != Norm::none && nm.before_act) norm_grad();
        const float* a = s.a[size_t(l)].data();
        float* da = dz == s.d0.data() ? s.d1.data() : s.d0.data();
        if (l > 0)  // da (B, in) = dz (B, out) @ W (out, in)
            sgemm(false, false, B, ly.in, ly.out, 1.0f, dz, ly.out, ly.weight, ly.in, 0.0f, da,
                  ly.in);
        if (s.gw_off[size_t(l)] >= 0)  // dW (out, in) = dz^T (out, B) @ a (B, in)
            sgemm(true, false, ly.out, ly.in, B, 1.0f, dz, ly.out, a, ly.in, 0.0f,
                  s.grads.data() + s.gw_off[size_t(l)], ly.in);
        if (s.gb_off[size_t(l)] >= 0) colsum(s.grads.data() + s.gb_off[size_t(l)], dz, B, ly.out);
        dz = da;
    }
}

// The gradient fold before an update, element by element (one helper for update_params and
// TeamUpdate, so the serial and the team update give the same bits): dst = g0 + g1 (the two
// data-parallel partitions' gradients, partition 0's first; g1 null: g0), then sklearn's L2 term
// on a weight dst = dst + l2 * p (l2 != 0). dst may be g0 or g1 (each element is read before it
// is written).
inline void fold_grads(float* dst, const float* g0, const float* g1, const float* p, int64_t n,
                       float l2) {
    if (g1 && l2 != 0.0f) {
        for (int64_t i = 0; i < n; ++i) {
            const float sum = g0[i] + g1[i];
            dst[i] = sum + l2 * p[i];
        }
    } else if (g1) {
        for (int64_t i = 0; i < n; ++i) dst[i] = g0[i] + g1[i];
    } else if (l2 != 0.0f) {
        for (int64_t i = 0; i < n; ++i) dst[i] = g0[i] + l2 * p[i];
    } else if (dst != g0) {
        std::memcpy(dst, g0, size_t(n) * sizeof(float));
    }
}

// The update of every trainable parameter from s.grads: optim_step_many's vectorised per-tensor
// loops (the eager optimizers' kernel), all parameters in one call. sklearn's L2 term on the
// weights only is folded into their gradients first (g + l2 * p, the same float operations the
// rule would do), so the rule itself is optimizer.h's.
// g1 (not null): the second data-parallel partition's gradients (Scratch::grads layout), added
// first, element by element (g = g + g1, as TeamUpdate does on its shares).
void update_params(Scratch& s, const OptimOptions& oo, int64_t t, float l2,
                   const float* g1 = nullptr) {
    const size_t n = s.up_p.size();
    if (n == 0) return;
    if (g1 || l2 != 0.0f)
        for (size_t k = 0; k < n; ++k) {
            float* g = const_cast<float*>(s.up_g[k]);
            fold_grads(g, g, g1 ? g1 + (s.up_g[k] - s.grads.data()) : nullptr, s.up_p[k],
                       s.up_n[k], s.up_l2[k] ? l2 : 0.0f);
        }
    std::fill(s.up_steps.begin(), s.up_steps.end(), t);
    optim_step_many(s.up_p.data(), s.up_g.data(), s.up_s0.data(), s.up_s1.data(), s.up_s2.data(),
                    s.up_n.data(), s.up_steps.data(), int64_t(n), oo);
}

// One team member's count of an epoch on the small path's team: every thread keeps its own (no
// shared counter to race on) and thread 0's is read after the region. `bad` is the batch a
// non-finite loss stopped at (-1: none).
struct TeamTally {
    int64_t step = 0;  // the optimizer step count (starts at the epoch's first step)
    int64_t used = 0, steps = 0, batch = 0, bad = -1;
    double sum = 0.0;  // the sum of the batches' loss x rows
    void count(double loss, int64_t B) {
        ++step;
        ++steps;
        sum += loss * double(B);
        used += B;
    }
};

// update_params inside a SmallTeam: every tensor split over the team (each thread its share of
// each tensor's elements, cut at multiples of 64: the rules are element-wise, so the values do
// not depend on the team size). A share is walked in chunks of kChunk elements: the partition
// reduce and the l2 fold (fold_grads) of a chunk, then the optimizer's loop on it while it is in
// L1, the next chunk's lines the other core wrote (the other partition's gradients, the
// weights it read) prefetched meanwhile. With data-parallel partitions each thread folds into
// its own partition's gradient buffer (thread h's share into partition h's), so no gradient line
// is written by both cores. One optim_coeffs a step (every tensor is at the same step). The
// members hold this thread's sub-tensors, sized once per epoch.
struct TeamUpdate {
    static constexpr int64_t kChunk = 256;
    std::vector<float*> p, s0, s1, s2, dst;
    std::vector<const float*> g0, g1;  // partition 0's and 1's gradient shares (g1: or null)
    std::vector<int64_t> n;
    std::vector<size_t> k;  // the tensor each sub-tensor is a share of
    // part1: the second data-parallel partition's scratch (its grads are added), or null; own:
    // this thread's partition (the buffer its shares fold into)
    void init(Scratch& s, Scratch* part1 = nullptr, int own = 0) {
        p.clear(), s0.clear(), s1.clear(), s2.clear(), dst.clear(), g0.clear(), g1.clear();
        n.clear(), k.clear();
        auto at = [](float* q, int64_t off) { return q ? q + off : nullptr; };
        // This thread's share of all the tensors' elements taken in order as one run, cut at
        // multiples of 16 elements (64-byte lines of the gradient buffer): the threads get equal
        // counts (per tensor, the small ones - biases, a one-output layer - all fell to the last
        // thread); the rules are element-wise, so no cut changes a value.
        int64_t total = 0;
        for (int64_t m : s.up_n) total += m;
        const int64_t lines = (total + 15) / 16, tid = team_id(), nth = team_size();
        const int64_t mine_lo = std::min(total, lines * tid / nth * 16);
        const int64_t mine_hi = std::min(total, lines * (tid + 1) / nth * 16);
        int64_t base = 0;  // the first element of tensor t in the run
        for (size_t t = 0; t < s.up_p.size(); base += s.up_n[t], ++t) {
            const int64_t lo = std::max<int64_t>(0, mine_lo - base);
            const int64_t hi = std::min<int64_t>(s.up_n[t], mine_hi - base);
            if (hi <= lo) continue;
            const int64_t off = (s.up_g[t] - s.grads.data()) + lo;
            p.push_back(s.up_p[t] + lo);
            g0.push_back(s.grads.data() + off);
            g1.push_back(part1 ? part1->grads.data() + off : nullptr);
            dst.push_back((part1 && own == 1 ? part1->grads.data() : s.grads.data()) + off);
            s0.push_back(at(s.up_s0[t], lo));
            s1.push_back(at(s.up_s1[t], lo));
            s2.push_back(at(s.up_s2[t], lo));
            n.push_back(hi - lo);
            k.push_back(t);
        }
    }
    // add1: add the second partition's share (dst = g0 + g1)
    void run(const Scratch& s, const OptimOptions& oo, int64_t t, float l2, bool add1 = false) {
        if (p.empty()) return;
        const OptimRangeFn fn = optim_range_fn(oo);
        const OptimCoeffs c = optim_coeffs(oo, t);
        for (size_t j = 0; j < p.size(); ++j) {
            const float* h = add1 ? g1[j] : nullptr;
            const float l2j = s.up_l2[k[j]] ? l2 : 0.0f;
            // (the gradient buffer the other partition's thread wrote: the other one than dst)
            const float* far = !h ? nullptr : dst[j] == g0[j] ? h : g0[j];
            for (int64_t c0 = 0; c0 < n[j]; c0 += kChunk) {
                const int64_t c1 = std::min(n[j], c0 + kChunk);
                const int64_t e1 = std::min(n[j], c1 + kChunk);
                for (int64_t i = c1; i < e1; i += 16) {  // 16 floats: one 64-byte line
                    if (far) __builtin_prefetch(far + i, 0, 3);
                    __builtin_prefetch(p[j] + i, 1, 3);
                }
                fold_grads(dst[j] + c0, g0[j] + c0, h ? h + c0 : nullptr, p[j] + c0, c1 - c0, l2j);
                fn(p[j], dst[j], s0[j], s1[j], s2[j], c0, c1, c);
            }
        }
    }
};

// ---- Rows of a batch computed apart: fit(distributed=True)'s ranks, and the data-parallel
// partitions of the small path in one process. Either way a part of the batch runs its own
// gather, forward, loss (over the whole batch's denominator) and backward into its own gradient
// buffer; the parts' gradients and losses are then summed in a fixed order (the ranks by the
// all-reduce; the partitions in rank order, partition 0 + partition 1, in update_params /
// TeamUpdate), and every rank or thread applies the same update.

// The small path's data-parallel partitions of a batch: kParts when the shapes say so, 1
// otherwise. Chosen by shape only (never the thread count), so a 1-thread run computes the same
// partitions one after the other and sums them in the same order: the bits do not depend on the
// thread count. Taken where the small path would run a team (the step's flops at or above
// kSmallTeamMinFlops) and a batch of 32 or more; not with fit(distributed=True) (its ranks
// already split the batch). The two partitions on a team of 2 run with 2 barriers a step instead
// of ~10. Measured (6-64-64-1 Tanh/Huber/Adam b64, 2-core AVX2 EPYC, wall clock, min of 4
// interleaved repeats against the team that splits every product): 2 threads 55.3 -> 52.8 us a
// step on a quiet machine, 80 -> 65 us with other jobs running (a barrier then waits for a
// descheduled partner); 1 thread 89.0 -> 95 us (the split dW / db sums and the reduce). Per
// phase at 2 threads (quiet, rdtsc): a partition's step alone ~46 us, the reduce + Adam on a half
// share ~4.5 us (the whole update on one thread: 7.3 us), the two barriers ~0.5-1.5 us together.
constexpr int64_t kParts = 2;
int64_t data_parallel_parts(bool small, bool dist, int64_t batch_size, double step_flops) {
    if (!small || dist || batch_size < 32 || step_flops < detail::kSmallTeamMinFlops) return 1;
    return kParts;
}

// Partition h's rows [lo, hi) of a batch: detail::small_part_rows, the ReLU trainer's cut.
using detail::small_part_rows;

// The rows [lo, hi) of the batch bidx[0..B) (den: the loss_denominator of the whole batch):
// targets into s, the forward (small path: ss not null; dropout masks drawn by global row, row0 =
// lo), the loss and dLoss/dP, the backward into s.grads (no rows: zero gradients). Returns the
// rows' share of the batch loss (without the L2 term).
double rows_step(const std::vector<FitLayer>& layers, Scratch& s, detail::FitSmallScratch* ss,
                 const FitData& data, const int64_t* bidx, int64_t lo, int64_t hi, double den,
                 const FitOptions& opt, int64_t step) {
    const int64_t L = int64_t(layers.size()), Bl = hi - lo;
    const int64_t d_in = layers[0].in, d_out = layers.back().out;
    const int64_t* idx = bidx + lo;
    if (Bl <= 0) {  // fewer rows than ranks: this rank adds nothing
        std::fill(s.grads.begin(), s.grads.end() - 1, 0.0f);
        return 0.0;
    }
    gather_targets(s, data, idx, Bl, d_out);
    if (ss) {  // the prediction lands batch-major in s.a[L], as the gemm path leaves it
        ss->row0 = lo;
        detail::mlp_fit_small_forward(layers, *ss, data.X, idx, Bl, true, opt.dropout_seed, step,
                                      s.a[size_t(L)].data());
    } else {  // (the small path gathers X itself, transposed)
        float* a0 = s.a[0].data();
        for (int64_t b = 0; b < Bl; ++b)
            std::memcpy(a0 + b * d_in, data.X + idx[b] * d_in, size_t(d_in) * sizeof(float));
        forward_batch(layers, s, Bl, true, opt.dropout_seed, step, lo);
    }
    // Dropout after the last layer is applied to P as well (the chain's output).
    const double loss = loss_and_grad(s.d0.data(), s.a[size_t(L)].data(), s.y.data(), s.yi.data(),
                                      s.sw.data(), Bl, d_out, opt, den, s);
    if (ss)
        detail::mlp_fit_small_backward(layers, *ss, Bl, s.d0.data(), s.grads.data(),
                                       s.gw_off.data(), s.gb_off.data());
    else
        backward_batch(layers, s, Bl, s.d0.data());
    return loss;
}

// The two data-parallel partitions of the batch bidx[0..B), [0, cut) and [cut, B), on one thread
// in one pass (detail::FitSmallSplit): the same values as rows_step on each (every per-row and
// per-column value is computed alike; the loss shares and the dW / db sums per partition, each
// in its own order), partition 0's gradients into s.grads, partition 1's into grads1. Returns
// partition 0's loss share, partition 1's in loss1. cut == B (partition 1 empty): rows_step.
double split_step(const std::vector<FitLayer>& layers, Scratch& s, detail::FitSmallScratch& ss,
                  const FitData& data, const int64_t* bidx, int64_t B, int64_t cut, double den,
                  const FitOptions& opt, int64_t step, float* grads1, double& loss1) {
    loss1 = 0.0;
    if (cut >= B) return rows_step(layers, s, &ss, data, bidx, 0, B, den, opt, step);
    const int64_t L = int64_t(layers.size()), d_out = layers.back().out;
    gather_targets(s, data, bidx, B, d_out);
    ss.row0 = 0;
    detail::mlp_fit_small_forward(layers, ss, data.X, bidx, B, true, opt.dropout_seed, step,
                                  s.a[size_t(L)].data());
    // the loss shares of [0, cut) and [cut, B), each summed as a call on its rows alone sums it
    const double loss0 = loss_and_grad(s.d0.data(), s.a[size_t(L)].data(), s.y.data(),
                                       s.yi.data(), s.sw.data(), B, d_out, opt, den, s, cut, &loss1);
    detail::FitSmallSplit sp;
    sp.cut = cut;
    sp.grads1 = grads1;
    detail::mlp_fit_small_backward(layers, ss, B, s.d0.data(), s.grads.data(), s.gw_off.data(),
                                   s.gb_off.data(), &sp);
    return loss0;
}

// The L2 term of a step's loss (sklearn's alpha, on the weights only).
double l2_loss_term(const std::vector<FitLayer>& layers, const FitOptions& opt, int64_t B) {
    if (opt.l2_weights == 0.0f) return 0.0;
    return 0.5 * double(opt.l2_weights) * detail::sum_sq_weights(layers) / double(B);
}

}  // namespace

void mlp_fit_forward(float* out, const std::vector<FitLayer>& layers, const float* X, int64_t n) {
    const int64_t L = int64_t(layers.size());
    std::vector<float> cur(X, X + n * layers[0].in), nxt;
    for (int64_t l = 0; l < L; ++l) {
        const FitLayer& ly = layers[size_t(l)];
        float* dst;
        if (l == L - 1) {
            dst = out;
        } else {
            nxt.assign(size_t(n * ly.out), 0.0f);
            dst = nxt.data();
        }
        const FitNorm& nm = ly.norm;
        GemmEpilogue epi;
        epi.bias = ly.bias;
        if (nm.kind == Norm::none || !nm.before_act) epi.act = ly.act;
        sgemm(false, true, n, ly.out, ly.in, 1.0f, cur.data(), ly.in, ly.weight, ly.in, 0.0f, dst,
              ly.out, epi);
        if (nm.kind != Norm::none) {  // eval mode: BatchNorm1d on its running statistics
            norm_forward(nm, dst, nullptr, nullptr, dst, n, ly.out, false, 0);
            if (nm.before_act && ly.act.kind != Act::identity) act_apply(dst, dst, n * ly.out, ly.act);
        }
        if (l != L - 1) cur.swap(nxt);
    }
}

FitResult mlp_fit(const std::vector<FitLayer>& layers, const FitData& data, int64_t epochs,
                  const FitOptions& opt) {
    FitResult res;
    const int64_t n = data.n, L = int64_t(layers.size());
    const int64_t d_in = layers[0].in, d_out = layers.back().out;
    const int64_t B_full = std::min(opt.batch_size, n);
    const bool index_targets = data.Yi != nullptr;
    // fit(distributed=True): this rank's rows of each global batch (FitOptions::grad_allreduce).
    const bool dist = opt.grad_allreduce != nullptr;
    if (dist && (opt.world < 1 || opt.rank < 0 || opt.rank >= opt.world))
        throw std::invalid_argument("mlp_fit: data-parallel training needs 0 <= rank < world");
    const int64_t world = dist ? opt.world : 1, rank = dist ? opt.rank : 0;
    // A BatchNorm1d with batch statistics would normalise each rank's rows with their own
    // statistics (PyTorch's DDP without SyncBatchNorm), not the global batch's: refused.
    if (dist)
        for (size_t l = 0; l < layers.size(); ++l)
            if (layers[l].norm.kind == Norm::batch && layers[l].norm.batch_stats)
                throw std::invalid_argument(
                    "mlp_fit: data-parallel training of a BatchNorm1d in training mode (layer " +
                    std::to_string(l) + ") would use each rank's own batch statistics; train it "
                    "in one process, or put the BatchNorm1d in eval mode / use LayerNorm");
    const bool has_norm = std::any_of(layers.begin(), layers.end(),
                                      [](const FitLayer& ly) { return ly.norm.kind != Norm::none; });
    if (opt.path == FitPath::small && has_norm)
        throw std::invalid_argument("mlp_fit: path='small' does not run LayerNorm/BatchNorm1d "
                                    "layers; use path='auto' or 'gemm'");
    const bool small = opt.path == FitPath::small ||
                       (opt.path == FitPath::automatic && detail::mlp_fit_small_fits(layers, B_full));
    double step_flops = 0.0;  // of a full step
    for (const FitLayer& l : layers) step_flops += 6.0 * double(l.in) * double(l.out) * double(B_full);
    // The parts a batch is computed in: the ranks (dist), or the small path's data-parallel
    // partitions (data_parallel_parts, by shape), or the whole batch. Each part has its own
    // Scratch (targets, P, dP, per-row sums, gradients) and small-path scratch; part 0's is `s`,
    // whose gradient buffer the update reads (partition 1's added to it first).
    const int64_t parts = data_parallel_parts(small, dist, B_full, step_flops);
    // The small path's team (mlp_train_small.h), by the flops of a full step; one process only.
    int team = 1;
    if (small && !dist) team = detail::small_team_threads(step_flops, parts > 1);
    // One thread computes the partitions in one pass over the whole batch (split_step: the
    // per-column work once, the sums over the batch per partition), the same bits as one after
    // the other at less cost (measured, 6-64-64-1 b64, 1 thread: the partitions in turn 99 us a
    // step, the whole batch 89 us); a team runs them one per thread.
    const bool one_pass = parts > 1 && team == 1;
    int64_t part_max = (B_full + world - 1) / world, lo0 = 0;
    if (parts > 1 && !one_pass) small_part_rows(B_full, 0, parts, lo0, part_max);  // (0 the larger)
    Scratch s, s1;
    s.init(layers, part_max, index_targets);
    if (parts > 1) s1.init(layers, one_pass ? 1 : part_max, index_targets);
    const int64_t ngrad = int64_t(s.grads.size()) - 1;  // then the loss slot (Scratch::init)
    // A non-finite loss (the global one with dist) stops before its update, unless allowed.
    auto stop_nonfinite = [&](double loss, int64_t e, int64_t batch, double epoch_sum,
                              int64_t used) {
        if (std::isfinite(loss) || opt.allow_nonfinite) return false;
        res.mark_nonfinite(e, batch, loss, epoch_sum, used, NAN);
        return true;
    };
    // After a team's epoch: its steps, then a non-finite stop (true: return) or the epoch's loss.
    auto finish_team_epoch = [&](const TeamTally& t, double bad_loss, int64_t e) {
        res.steps += t.steps;
        if (t.bad >= 0 && stop_nonfinite(bad_loss, e, t.bad, t.sum, t.used)) return true;
        res.epoch_loss.push_back(t.used ? t.sum / double(t.used) : NAN);
        return false;
    };
    detail::FitSmallScratch ss, ss1;
    if (small) ss.init(layers, part_max);
    if (parts > 1) ss1.init(layers, part_max);
    Scratch* const part_s[kParts] = {&s, &s1};
    detail::FitSmallScratch* const part_ss[kParts] = {&ss, &ss1};
    double team_loss = 0.0;            // the step's loss, shared by the team
    double part_loss[kParts] = {0.0};  // the partitions' shares of it (the L2 term in part 0's)
    std::vector<int64_t> order(static_cast<size_t>(n));
    int64_t step = opt.step0;
    for (int64_t e = 0; e < epochs; ++e) {
        if (opt.perm) {
            const int64_t* p = opt.perm + (opt.perm_per_epoch ? e * n : 0);
            std::copy(p, p + n, order.begin());
        } else if (opt.shuffle) {
            mlp_shuffle_order(order.data(), n, opt.seed, opt.epoch_offset + e);
        } else {
            for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
        }
        double epoch_sum = 0.0;
        int64_t used = 0, batch = 0;
        if (team > 1 && parts > 1) {
            // The data-parallel partitions on one team for the epoch: thread h < parts runs
            // partition h's whole step on its own rows alone (SmallTeamAlone: no barriers), one
            // barrier, then every thread sums the partitions' gradients on its share of each
            // tensor and updates that share (TeamUpdate), one barrier before the next step reads
            // the weights. Every thread sees the same loss after the first barrier: a non-finite
            // one stops them all at the same batch.
            TeamTally out{step};  // thread 0's tally, read after the region
            double bad_loss = 0.0;
            TeamBarrier bar(team, 20000);  // (omp_team.h; two a step)
#pragma omp parallel num_threads(team)
            {
                detail::SmallTeamMember member(team);
                const int tid = omp_get_thread_num();
                TeamUpdate upd;
                upd.init(s, &s1, tid);
                TeamTally t{step};
                for (int64_t start = 0; start < n; start += opt.batch_size, ++t.batch) {
                    const int64_t B = std::min(opt.batch_size, n - start);
                    if (B < opt.batch_size && opt.drop_last) break;
                    const int64_t* bidx = order.data() + start;
                    if (tid < parts) {
                        detail::SmallTeamAlone alone;
                        int64_t lo, hi;
                        small_part_rows(B, tid, parts, lo, hi);
                        const double den = loss_denominator(data, bidx, B, d_out, opt);
                        double lp = rows_step(layers, *part_s[tid], part_ss[tid], data, bidx, lo,
                                              hi, den, opt, t.step);
                        if (tid == 0) lp += l2_loss_term(layers, opt, B);
                        part_loss[tid] = lp;
                    }
                    bar.wait();
                    const double loss = part_loss[0] + part_loss[1];
                    int64_t lo1, hi1;
                    small_part_rows(B, 1, parts, lo1, hi1);
                    if (!std::isfinite(loss) && !opt.allow_nonfinite) {
                        t.bad = t.batch;
                        if (tid == 0) team_loss = loss;
                        break;
                    }
                    upd.run(s, fit_step_optim(opt, t.step - opt.step0), t.step + 1,
                            float(double(opt.l2_weights) / double(B)), hi1 > lo1);
                    // the weights (the next forward) and the partitions' gradients (the next
                    // backward) are written only after every share is done
                    bar.wait();
                    t.count(loss, B);
                }
                if (tid == 0) {
                    out = t;
                    bad_loss = team_loss;
                }
            }
            step = out.step;
            if (finish_team_epoch(out, bad_loss, e)) return res;
            continue;
        }
        if (team > 1) {
            // The small path on one team for the epoch (detail::SmallTeamMember): every thread
            // runs every step; the products and element-wise passes split over the team, the
            // loss on one thread, the update on every thread's share of each tensor. A
            // non-finite loss is seen by all after the loss's barrier: they leave together.
            TeamTally out{step};  // thread 0's tally, read after the region
            double bad_loss = 0.0;
#pragma omp parallel num_threads(team)
            {
                detail::SmallTeamMember member(team);
                TeamUpdate upd;
                upd.init(s);
                TeamTally t{step};
                for (int64_t start = 0; start < n; start += opt.batch_size, ++t.batch) {
                    const int64_t B = std::min(opt.batch_size, n - start);
                    if (B < opt.batch_size && opt.drop_last) break;
                    const int64_t* idx = order.data() + start;
                    // (done before the forward's first barrier)
                    detail::team_single_nowait([&] { gather_targets(s, data, idx, B, d_out); });
                    ss.row0 = 0;
                    detail::mlp_fit_small_forward(layers, ss, data.X, idx, B, true, opt.dropout_seed,
                                                  t.step, s.a[size_t(L)].data());
                    // The loss and dLoss/dP, then dP feature-major into ss.d0, on thread 0 (the
                    // forward left P there, without a barrier), then one barrier for all three.
                    detail::team_master([&] {
                        const double den = loss_denominator(data, idx, B, d_out, opt);
                        double loss = loss_and_grad(s.d0.data(), s.a[size_t(L)].data(), s.y.data(),
                                                    s.yi.data(), s.sw.data(), B, d_out, opt, den, s);
                        loss += l2_loss_term(layers, opt, B);
                        team_loss = loss;
                        detail::fit_small_load_dp(ss, B, (B + 15) / 16 * 16, d_out, s.d0.data());
                    });
                    detail::team_barrier();
                    const double loss = team_loss;
                    if (!std::isfinite(loss) && !opt.allow_nonfinite) {
                        t.bad = t.batch;
                        break;
                    }
                    detail::mlp_fit_small_backward(layers, ss, B, nullptr, s.grads.data(),
                                                   s.gw_off.data(), s.gb_off.data());
                    upd.run(s, fit_step_optim(opt, t.step - opt.step0), t.step + 1,
                            float(double(opt.l2_weights) / double(B)));
                    t.count(loss, B);
                }
                if (omp_get_thread_num() == 0) {
                    out = t;
                    bad_loss = team_loss;
                }
            }
            step = out.step;
            if (finish_team_epoch(out, bad_loss, e)) return res;
            continue;
        }
        for (int64_t start = 0; start < n; start += opt.batch_size, ++batch) {
            const int64_t B = std::min(opt.batch_size, n - start);
            if (B < opt.batch_size && opt.drop_last) break;
            const double den = loss_denominator(data, order.data() + start, B, d_out, opt);
            const int64_t* bidx = order.data() + start;
            double loss = 0.0;
            bool add1 = false;
            // (partitions here are one_pass: a team > 1 ran them above, one per thread)
            if (one_pass) {
                int64_t lo1, hi1;
                small_part_rows(B, 1, parts, lo1, hi1);
                part_loss[0] = split_step(layers, s, ss, data, bidx, B, lo1, den, opt, step,
                                          s1.grads.data(), part_loss[1]);
                part_loss[0] += l2_loss_term(layers, opt, B);
                add1 = hi1 > lo1;
                loss = part_loss[0] + part_loss[1];
            } else {
                // This rank's rows [lo, hi) of the global batch (all of it in one process).
                const int64_t lo = B * rank / world, hi = B * (rank + 1) / world;
                loss = rows_step(layers, s, small ? &ss : nullptr, data, bidx, lo, hi, den, opt,
                                 step);
                if (rank == 0) loss += l2_loss_term(layers, opt, B);  // once in the sum over ranks
            }
            if (!dist && stop_nonfinite(loss, e, batch, epoch_sum, used)) return res;
            if (dist) {  // fit(distributed=True): s.grads and the loss summed across the ranks
                s.grads[size_t(ngrad)] = float(loss);
                opt.grad_allreduce(s.grads.data(), ngrad + 1, opt.grad_allreduce_ctx);
                loss = double(s.grads[size_t(ngrad)]);
                if (stop_nonfinite(loss, e, batch, epoch_sum, used)) return res;
            }
            // update: the optimizer's rule on every trainable parameter (partition 1's gradients
            // added to partition 0's first)
            const OptimOptions oo = fit_step_optim(opt, step - opt.step0);
            update_params(s, oo, step + 1, float(double(opt.l2_weights) / double(B)),
                          add1 ? s1.grads.data() : nullptr);
            ++step;
            ++res.steps;
            epoch_sum += loss * double(B);
            used += B;
        }
        res.epoch_loss.push_back(used ? epoch_sum / double(used) : NAN);
    }
    return res;
}

}  // namespace fastmlp
