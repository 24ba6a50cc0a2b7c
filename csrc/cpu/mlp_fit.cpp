// The general fused trainer (mlp_fit.h): any activation, dropout, loss and optimizer of the
// numeric-rule headers, batch-major on fastmlp::sgemm. The ReLU/MSE/SGD special case keeps its
// own faster trainer (mlp_train.cpp, with the small-matrix path); this one is what fit runs for
// every other chain. Every rule comes from activation.h, loss.h and optimizer.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fastmlp/activations.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/dropout.h"
#include "fastmlp/elementwise.h"
#include "fastmlp/gemm.h"
#include "fastmlp/mlp.h"
#include "fastmlp/mlp_fit.h"
#include "fastmlp/optimizers.h"
#include "mlp_fit_small.h"

namespace fastmlp {

namespace {

inline int threads_elem(int64_t n, double cost = 8.0) { return threads_for(double(n) * cost); }

// dropout_uniform: the counter-based hash of fastmlp/dropout.h (shared with the CUDA trainer).

struct Scratch {
    std::vector<std::vector<float>> a;     // a[l] (B, in_l): layer inputs; a[L] = output P
    std::vector<std::vector<float>> z;     // z[l] (B, out_l): pre-activation where needed
    std::vector<std::vector<float>> mask;  // mask[l] (B, out_l): dropout scale (0 or 1/(1-p))
    std::vector<std::vector<float>> ykeep; // ykeep[l] (B, out_l): act output before dropout
    std::vector<float> y, d0, d1;
    // grads: every trainable parameter's gradient in one flat buffer (layer 0's weight, its bias,
    // layer 1's weight, ...; frozen parameters have no slot), so one step's gradients can be
    // all-reduced in one call (fit(distributed=True)) before the update.
    std::vector<float> grads;
    std::vector<int64_t> gw_off, gb_off;  // offset of layer l's weight/bias gradient, or -1
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
        grads.assign(size_t(ng), 0.0f);
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

// The loss of one batch and dP (B, O) = dLoss/dP. P (B, O); targets y (B, O) or yi (B); per-sample
// weights sw (B) (all ones without sample_weight). Returns the batch loss (double).
double loss_and_grad(float* dP, const float* P, const float* y, const int64_t* yi, const float* sw,
                     bool weighted, int64_t B, int64_t O, const FitOptions& opt, Scratch& s) {
    const LossParams lp = opt.loss;
    if (lp.kind == Loss::cross_entropy) {
        // Rows of O logits. mean: sum_i sw_i * row_loss_i / sum_i sw_i * w_{y_i} (PyTorch's
        // weighted mean when sw = 1), ignore_index rows contribute nothing.
        const float* cw = opt.class_weight;
        const float ls = opt.label_smoothing;
        double wsum = double(O);
        if (cw) {
            wsum = 0.0;
            for (int64_t c = 0; c < O; ++c) wsum += double(cw[c]);
        }
        double* rl = s.rl.data();
        double* rw = s.rw.data();
        double* lse_b = s.lse.data();
        const int nt = threads_elem(B * O, 20.0);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t b = 0; b < B; ++b) {
            const float* x = P + b * O;
            float* g = dP + b * O;
            const int64_t t = yi[b];
            rl[b] = rw[b] = 0.0;
            if (t == opt.ignore_index) {
                for (int64_t c = 0; c < O; ++c) g[c] = 0.0f;
                continue;
            }
            const double lse = ce_row_logsumexp(x, O, 1);
            lse_b[b] = lse;
            rl[b] = double(sw[b]) * ce_row_loss_index(x, O, 1, lse, t, cw, ls);
            rw[b] = double(sw[b]) * ce_row_weight(t, cw);
        }
        double num = 0.0, den = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            num += rl[b];
            den += rw[b];
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
        return den != 0.0 ? num / den : NAN;
    }
    // Element-wise losses: mean over the B x O elements (weighted: sum_i sw_i sum_o l / (O sum sw)).
    double swsum = 0.0;
    for (int64_t b = 0; b < B; ++b) swsum += double(sw[b]);
    const double denom = double(opt.loss_sum_outputs ? 1 : O) * (weighted ? swsum : double(B)) /
                         double(opt.loss_scale);
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
    double total = 0.0;
    for (int64_t b = 0; b < B; ++b) total += rows[b];
    return denom != 0.0 ? total / denom : NAN;
}

void forward_batch(const std::vector<FitLayer>& layers, Scratch& s, int64_t B, bool train,
                   uint64_t dseed, int64_t step) {
    const int64_t L = int64_t(layers.size());
    for (int64_t l = 0; l < L; ++l) {
        const FitLayer& ly = layers[size_t(l)];
        const int64_t n = B * ly.out;
        float* out = s.a[size_t(l + 1)].data();
        const bool keep_z = !s.z[size_t(l)].empty();
        float* zbuf = keep_z ? s.z[size_t(l)].data() : out;
        GemmEpilogue epi;
        epi.bias = ly.bias;
        if (!keep_z) epi.act = ly.act;  // in the epilogue, on each tile while it is in cache
        sgemm(false, true, B, ly.out, ly.in, 1.0f, s.a[size_t(l)].data(), ly.in, ly.weight, ly.in,
              0.0f, zbuf, ly.out, epi);
        if (keep_z) act_apply(out, zbuf, n, ly.act);
        if (train && ly.dropout > 0.0f) {
            // The activation's output y (which act_grad reads for relu, tanh, sigmoid) is kept
            // before the mask; the next layer reads the dropped, rescaled values.
            float* m = s.mask[size_t(l)].data();
            float* yk = s.ykeep[size_t(l)].data();
            const float p = ly.dropout;
            const float keep_scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) num_threads(threads_elem(n, 12.0))
            for (int64_t i = 0; i < n; ++i) {
                const bool keep = dropout_uniform(dseed, step, l, i) >= p;
                m[i] = keep ? keep_scale : 0.0f;
                yk[i] = out[i];
                out[i] = out[i] * m[i];
            }
        }
    }
}

// backward of one batch, last layer first: dz (B, out_L) holds dLoss/dP on entry (s.d0 or s.d1;
// both are overwritten). Fills s.grads with every trainable parameter's gradient; the weights are
// not changed (dA_l = dZ_l W_l reads them).
void backward_batch(const std::vector<FitLayer>& layers, Scratch& s, int64_t B, float* dz) {
    const int64_t L = int64_t(layers.size());
    for (int64_t l = L - 1; l >= 0; --l) {
        const FitLayer& ly = layers[size_t(l)];
        const int64_t nn = B * ly.out;
        const float* yv = ly.dropout > 0.0f ? s.ykeep[size_t(l)].data() : s.a[size_t(l + 1)].data();
        if (ly.dropout > 0.0f) {
            const float* m = s.mask[size_t(l)].data();
            for (int64_t i = 0; i < nn; ++i) dz[i] *= m[i];
        }
        act_grad(dz, s.z[size_t(l)].empty() ? nullptr : s.z[size_t(l)].data(), yv, nn, ly.act);
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

// The update of every trainable parameter from s.grads: optim_step_many's vectorised per-tensor
// loops (the eager optimizers' kernel), all parameters in one call. sklearn's L2 term on the
// weights only is folded into their gradients first (g + l2 * p, the same float operations the
// rule would do), so the rule itself is optimizer.h's.
void update_params(Scratch& s, const OptimOptions& oo, int64_t t, float l2) {
    const size_t n = s.up_p.size();
    if (n == 0) return;
    if (l2 != 0.0f)
        for (size_t k = 0; k < n; ++k) {
            if (!s.up_l2[k]) continue;
            float* __restrict g = const_cast<float*>(s.up_g[k]);
            const float* __restrict p = s.up_p[k];
            for (int64_t i = 0; i < s.up_n[k]; ++i) g[i] = g[i] + l2 * p[i];
        }
    std::fill(s.up_steps.begin(), s.up_steps.end(), t);
    optim_step_many(s.up_p.data(), s.up_g.data(), s.up_s0.data(), s.up_s1.data(), s.up_s2.data(),
                    s.up_n.data(), s.up_steps.data(), int64_t(n), oo);
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
        GemmEpilogue epi;
        epi.bias = ly.bias;
        epi.act = ly.act;
        sgemm(false, true, n, ly.out, ly.in, 1.0f, cur.data(), ly.in, ly.weight, ly.in, 0.0f, dst,
              ly.out, epi);
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
    const bool weighted = data.sample_weight != nullptr;
    Scratch s;
    s.init(layers, B_full, index_targets);
    const bool small = opt.path == FitPath::small ||
                       (opt.path == FitPath::automatic && detail::mlp_fit_small_fits(layers, B_full));
    detail::FitSmallScratch ss;
    if (small) ss.init(layers, B_full);
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
        for (int64_t start = 0; start < n; start += opt.batch_size, ++batch) {
            const int64_t B = std::min(opt.batch_size, n - start);
            if (B < opt.batch_size && opt.drop_last) break;
            const int64_t* idx = order.data() + start;
            float* a0 = s.a[0].data();
            for (int64_t b = 0; b < B; ++b) {
                if (!small)  // (the small path gathers X itself, transposed)
                    std::memcpy(a0 + b * d_in, data.X + idx[b] * d_in, size_t(d_in) * sizeof(float));
                if (index_targets)
                    s.yi[size_t(b)] = data.Yi[idx[b]];
                else
                    std::memcpy(s.y.data() + b * d_out, data.Y + idx[b] * d_out,
                                size_t(d_out) * sizeof(float));
                s.sw[size_t(b)] = weighted ? data.sample_weight[idx[b]] : 1.0f;
            }
            // forward (dropout masks drawn for this global step)
            if (small)  // the prediction lands batch-major in s.a[L], as the gemm path leaves it
                detail::mlp_fit_small_forward(layers, ss, data.X, idx, B, true, opt.dropout_seed, step,
                                              s.a[size_t(L)].data());
            else
                forward_batch(layers, s, B, true, opt.dropout_seed, step);
            // Dropout after the last layer is applied to P as well (the chain's output).
            const float* P = s.a[size_t(L)].data();
            float* dz = s.d0.data();
            double loss = loss_and_grad(dz, P, s.y.data(), s.yi.data(), s.sw.data(),
                                              weighted, B, d_out, opt, s);
            if (opt.l2_weights != 0.0f) {
                double w2 = 0.0;
                for (const FitLayer& ly : layers)
                    for (int64_t j = 0; j < ly.in * ly.out; ++j) w2 += double(ly.weight[j]) * ly.weight[j];
                loss += 0.5 * double(opt.l2_weights) * w2 / double(B);
            }
            if (!std::isfinite(loss) && !opt.allow_nonfinite) {
                res.stopped_nonfinite = true;
                res.bad_epoch = e;
                res.bad_batch = batch;
                res.bad_loss = loss;
                res.epoch_loss.push_back(used ? epoch_sum / double(used) : NAN);
                return res;
            }
            if (small)
                detail::mlp_fit_small_backward(layers, ss, B, s.d0.data(), s.grads.data(),
                                               s.gw_off.data(), s.gb_off.data());
            else
                backward_batch(layers, s, B, s.d0.data());
            // (fit(distributed=True) sums s.grads across the ranks here, in one call)
            // update: the optimizer's rule on every trainable parameter
            OptimOptions oo = opt.optim;
            const int64_t k = step - opt.step0;
            if (opt.lr_schedule && k < opt.lr_schedule_len) oo.lr = double(opt.lr_schedule[k]);
            if (opt.momentum_schedule && k < opt.momentum_schedule_len) {
                if (oo.kind == Optim::adam || oo.kind == Optim::adamw)
                    oo.beta1 = double(opt.momentum_schedule[k]);
                else
                    oo.momentum = double(opt.momentum_schedule[k]);
            }
            if (opt.adam_eps_before_correction && (oo.kind == Optim::adam || oo.kind == Optim::adamw))
                oo.eps = oo.eps / std::sqrt(1.0 - std::pow(oo.beta2, double(step + 1)));
            update_params(s, oo, step + 1, float(double(opt.l2_weights) / double(B)));
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
