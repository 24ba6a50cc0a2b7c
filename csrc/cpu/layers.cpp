// Linear (+ReLU) forward and backward as single calls over sgemm and the elementwise kernels.
#include "fastmlp/layers.h"

#include <cstddef>
#include <vector>

#include "fastmlp/elementwise.h"
#include "fastmlp/gemm.h"

namespace fastmlp {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t B,
                    int64_t C, int64_t OC, bool relu) {
    // out (B,OC), inp (B,C), weight (OC,C), bias (OC): the NT product with a bias/ReLU epilogue.
    GemmEpilogue epi;
    epi.bias = bias;
    epi.relu = relu;
    sgemm(false, true, B, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC, epi);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* relu_out, int64_t B, int64_t C, int64_t OC,
                     bool accumulate_weight, bool accumulate_bias) {
    // dinp (B,C), dweight (OC,C), dbias (OC), dout (B,OC), inp (B,C), weight (OC,C), relu_out (B,OC)
    const float* g = dout;
    thread_local std::vector<float> scratch;
    if (relu_out != nullptr) {
        const size_t n = size_t(B) * size_t(OC);
        if (scratch.size() < n) scratch.resize(n);
        relu_backward(scratch.data(), dout, relu_out, int64_t(n));
        g = scratch.data();
    }
    if (dbias != nullptr) bias_backward(dbias, g, B, OC, accumulate_bias);
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
                   const int64_t* sizes, const bool* first_step, int64_t n, const SgdOptions& opt) {
    for (int64_t i = 0; i < n; ++i)
        sgd_step(params[i], grads[i], bufs[i], sizes[i], opt, first_step[i]);
}

}  // namespace fastmlp
