// Linear (+activation) forward and backward as single calls over sgemm and the elementwise kernels.
#include "fastmlp/layers.h"

#include <cstddef>
#include <vector>

#include "fastmlp/activations.h"
#include "fastmlp/cpu_features.h"
#include "fastmlp/optimizer.h"  // sgd_step_scalar: the SGD rule
#include "fastmlp/elementwise.h"
#include "fastmlp/gemm.h"

namespace fastmlp {

void linear_forward(float* out, float* pre_act, const float* inp, const float* weight,
                    const float* bias, int64_t B, int64_t C, int64_t OC, ActParams act) {
    // out (B,OC), inp (B,C), weight (OC,C), bias (OC): the NT product with a bias/act epilogue.
    GemmEpilogue epi;
    epi.bias = bias;
    epi.act = act;
    epi.pre_act = pre_act;
    sgemm(false, true, B, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC, epi);
}

namespace {

// Small problems (one thread's worth of work): the ReLU mask and the bias gradient in one serial
// pass, with no parallel region. The bias sum is bitwise what bias_backward computes: per column,
// rows added in order in double, then rounded once (and added to dbias when accumulating).
void mask_and_bias_serial(float* gm, float* dbias, const float* dout, const float* relu_out,
                          int64_t B, int64_t OC, bool accumulate_bias) {
    thread_local std::vector<double> acc;
    if (dbias != nullptr) acc.assign(size_t(OC), 0.0);
    for (int64_t i = 0; i < B; ++i) {
        const float* d = dout + i * OC;
        const float* y = relu_out ? relu_out + i * OC : nullptr;
        float* o = gm ? gm + i * OC : nullptr;
        for (int64_t j = 0; j < OC; ++j) {
            const float dj = d[j];  // loaded unconditionally: a select, not a branch
            const float v = y ? (y[j] > 0.0f ? dj : 0.0f) : dj;
            if (o) o[j] = v;
            if (dbias) acc[size_t(j)] += double(v);
        }
    }
    if (dbias != nullptr)
        for (int64_t j = 0; j < OC; ++j)
            dbias[j] = accumulate_bias ? float(double(dbias[j]) + acc[size_t(j)]) : float(acc[size_t(j)]);
}

}  // namespace

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* act_in, const float* act_out, int64_t B,
                     int64_t C, int64_t OC, ActParams act, bool accumulate_weight,
                     bool accumulate_bias) {
    // dinp (B,C), dweight (OC,C), dbias (OC), dout (B,OC), inp (B,C), weight (OC,C),
    // act_in (B,OC), act_out (B,OC)
    const float* g = dout;
    thread_local std::vector<float> scratch;
    const size_t n = size_t(B) * size_t(OC);
    // ReLU keeps its one-pass mask + bias sum; the others form g with act_backward first.
    const float* relu_out = act.kind == Act::relu ? (act_out ? act_out : act_in) : nullptr;
    if (act.kind != Act::identity && act.kind != Act::relu) {
        if (scratch.size() < n) scratch.resize(n);
        act_backward(scratch.data(), dout, act_in, act_out, int64_t(n), act);
        g = scratch.data();
        if (dbias != nullptr) {
            if (threads_for(double(n) * 8.0) == 1)
                mask_and_bias_serial(nullptr, dbias, g, nullptr, B, OC, accumulate_bias);
            else
                bias_backward(dbias, g, B, OC, accumulate_bias);
        }
    } else if (threads_for(double(n) * 8.0) == 1) {  // as the elementwise kernels decide: one thread
        float* gm = nullptr;
        if (relu_out != nullptr) {
            if (scratch.size() < n) scratch.resize(n);
            gm = scratch.data();
            g = gm;
        }
        if (gm != nullptr || dbias != nullptr)
            mask_and_bias_serial(gm, dbias, dout, relu_out, B, OC, accumulate_bias);
    } else {
        if (relu_out != nullptr) {
            if (scratch.size() < n) scratch.resize(n);
            relu_backward(scratch.data(), dout, relu_out, int64_t(n));
            g = scratch.data();
        }
        if (dbias != nullptr) bias_backward(dbias, g, B, OC, accumulate_bias);
    }
    if (dweight != nullptr)  // (OC,C) = g^T (OC,B) @ inp (B,C)
        sgemm(true, false, OC, C, B, 1.0f, g, OC, inp, C, accumulate_weight ? 1.0f : 0.0f, dweight,
              C);
    if (dinp != nullptr)  // (B,C) = g (B,OC) @ weight (OC,C)
        sgemm(false, false, B, C, OC, 1.0f, g, OC, weight, C, 0.0f, dinp, C);
}

double mse_forward_backward(float* dpred, const float* pred, const float* target, int64_t n,
                            float scale) {
    // dpred (n), pred (n), target (n)
    const double loss = mse_forward(pred, target, n);
    mse_backward(dpred, pred, target, n, scale);
    return loss;
}

void sgd_step_many(float* const* params, const float* const* grads, float* const* bufs,
                   const int64_t* sizes, const bool* first_step, int64_t n, const SgdOptions& o) {
    for (int64_t k = 0; k < n; ++k) {
        const int64_t m = sizes[k];
        if (threads_for(double(m) * 8.0) > 1) {  // big parameter: the (parallel) kernel
            sgd_step(params[k], grads[k], bufs[k], m, o, first_step[k]);
            continue;
        }
        // Small parameter: the same rule as sgd_step (optimizer.h's sgd_step_scalar), without a
        // parallel region; the tests check the two agree bitwise.
        float* param = params[k];
        const float* grad = grads[k];
        float* buf = bufs[k];
        const bool first = first_step[k];
        if (o.momentum != 0.0f) {
            for (int64_t i = 0; i < m; ++i) sgd_step_scalar(param[i], grad[i], buf[i], o, first);
        } else {
            float unused = 0.0f;  // no momentum: the buffer is never touched
            for (int64_t i = 0; i < m; ++i) sgd_step_scalar(param[i], grad[i], unused, o, first);
        }
    }
}

}  // namespace fastmlp
