// fastmlp general fused trainer: whole epochs of minibatch training of a chain of Linear layers,
// each followed by any element-wise activation (activation.h) and optional dropout, with any loss
// of loss.h and any optimizer of optimizer.h, in one native call (no Python between steps).
//
//   for each epoch: order = perm or the seeded shuffle of mlp.h (mlp_shuffle_order) or 0..n-1
//     for each batch (the last partial batch kept unless drop_last, as torch's DataLoader):
//       forward   Z_l = A_l W_l^T + b_l   (sgemm NT, bias in the epilogue)
//                 Y_l = act_l(Z_l);  A_{l+1} = dropout_l(Y_l)  (mask kept / (1 - p), seeded)
//       loss      the mean of loss.h's per-element rule over the batch's B x out elements
//                 (cross_entropy: over rows, weighted by class weight; optional per-sample
//                 weights w_i: sum_i w_i l_i / sum_i w_i)
//       backward  dP from the loss rule, dZ_l = act_l'(dA_{l+1} * mask_l), dW_l = dZ_l^T A_l (TN),
//                 db_l = colsum(dZ_l), dA_l = dZ_l W_l (NN)
//       update    optimizer.h's rule on every parameter not frozen, at step t = step0 + 1, ...,
//                 with lr = lr_schedule[step] when a schedule is given
//   A layer may carry a LayerNorm or BatchNorm1d before or after its activation (FitNorm): its
//   forward and backward are norm.h's rules, its weight and bias are trained like the Linear's,
//   a BatchNorm1d's running statistics are updated at every training forward (as the module's).
//
// This is what the eager loop computes with nn.Sequential(Linear, act, Dropout, ...), the loss
// module and the optim class: from the same weights, order and dropout masks, the same numbers
// within float32 rounding of a different summation order. Weights are PyTorch's layout (out, in),
// row-major, updated in place. Kernels assume valid input (the bindings check it). Results do not
// depend on the thread count (sgemm splits output tiles; reductions run in a fixed order).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "fastmlp/activation.h"
#include "fastmlp/loss.h"
#include "fastmlp/norm.h"
#include "fastmlp/optimizer.h"
#include "fastmlp/train_result.h"

namespace fastmlp {

// An optional LayerNorm(out) / BatchNorm1d(out) after a layer's Linear, before or after its
// activation (norm.h's rules):
//   before_act:  Y = act(norm(Z))        else  Y = norm(act(Z))      (then dropout)
// Training: LayerNorm normalises each row; BatchNorm1d with batch_stats normalises each column
// with the batch's statistics and, with running_mean/running_var, updates them (momentum, or the
// cumulative average over count0 + batches seen so far when cumulative); without batch_stats
// (the module in eval mode) it normalises with the running statistics and updates nothing.
// Inference (mlp_fit_forward): BatchNorm1d uses the running statistics when it has them, else
// the statistics of the n rows passed (track_running_stats=False, as PyTorch's eval mode).
struct FitNorm {
    Norm kind = Norm::none;
    bool before_act = true;
    float eps = 1e-5f;
    float* weight = nullptr;  // (out) or null (no affine)
    float* bias = nullptr;    // (out) or null
    bool frozen_weight = false, frozen_bias = false;
    float* wstate[3] = {nullptr, nullptr, nullptr};  // optimizer state, as FitLayer's
    float* bstate[3] = {nullptr, nullptr, nullptr};
    // BatchNorm1d
    bool batch_stats = true;
    float* running_mean = nullptr;  // (out) or null (track_running_stats=False)
    float* running_var = nullptr;   // (out) or null
    double momentum = 0.1;
    bool cumulative = false;        // momentum=None: factor 1 / (count0 + batches seen)
    int64_t count0 = 0;             // num_batches_tracked before this call
};

struct FitLayer {
    float* weight = nullptr;  // (out, in)
    float* bias = nullptr;    // (out) or null
    int64_t in = 0, out = 0;
    ActParams act;            // after the Linear
    float dropout = 0.0f;     // after the activation (training); 0: none
    bool frozen_weight = false, frozen_bias = false;  // requires_grad=False: never updated
    // Optimizer state, shaped like the parameter (null where the optimizer does not use it):
    // sgd: s0 momentum buffer; adam/adamw: s0 exp_avg, s1 exp_avg_sq, s2 max_exp_avg_sq;
    // rmsprop: s0 square_avg, s1 momentum_buffer, s2 grad_avg; adagrad: s0 sum.
    float* wstate[3] = {nullptr, nullptr, nullptr};
    float* bstate[3] = {nullptr, nullptr, nullptr};
    FitNorm norm;             // after the Linear, before or after the activation; kind none: none
};

// The step implementation: automatic (the small-matrix path, mlp_fit_small.h, for chains whose
// products are too small for sgemm's blocking to pay; the sgemm path otherwise), or one forced
// (tests compare the two). Same math; the summation order of the products differs.
enum class FitPath : int32_t { automatic = 0, small = 1, gemm = 2 };

struct FitOptions {
    int64_t batch_size = 64;
    bool drop_last = false;
    FitPath path = FitPath::automatic;
    bool shuffle = true;
    uint64_t seed = 0;
    int64_t epoch_offset = 0;       // epoch e of this call shuffles as global epoch epoch_offset + e
    const int64_t* perm = nullptr;  // explicit order: (n), or (epochs, n) when perm_per_epoch
    bool perm_per_epoch = false;
    LossParams loss;
    const float* class_weight = nullptr;  // cross_entropy: (C) or null
    const float* pos_weight = nullptr;    // bce_with_logits: (out) or null
    int64_t ignore_index = -100;          // cross_entropy
    float label_smoothing = 0.0f;         // cross_entropy
    OptimOptions optim;
    int64_t step0 = 0;                    // optimizer steps taken before this call
    const float* lr_schedule = nullptr;   // (steps of this call) lr per step, or null: optim.lr
    int64_t lr_schedule_len = 0;
    // (steps of this call) beta1 (adam/adamw) or momentum (sgd/rmsprop) per step, or null: as set
    // (OneCycleLR's cycle_momentum changes it every step).
    const float* momentum_schedule = nullptr;
    int64_t momentum_schedule_len = 0;
    uint64_t dropout_seed = 0;            // dropout masks: a counter-based stream of (seed, step)
    // scikit-learn's conventions (fastmlp.sklearn): element-wise losses summed over the outputs
    // and averaged over the rows, times loss_scale (0.5 for its squared error); an L2 penalty
    // 0.5 * l2_weights * sum |W|^2 / B on the weights only (gradient l2_weights * W / B); and
    // its Adam, whose eps is added to sqrt(v) before the bias correction (torch's Adam with
    // eps / sqrt(1 - beta2^t)).
    bool loss_sum_outputs = false;
    float loss_scale = 1.0f;
    float l2_weights = 0.0f;
    bool adam_eps_before_correction = false;
    bool allow_nonfinite = false;
    // Data-parallel training (fit(distributed=True)), as mlp.h's MlpTrainOptions for mlp_train:
    // when grad_allreduce is set, every rank holds the whole data set and the same order, and rank
    // `rank` of `world` computes rows [B * rank / world, B * (rank + 1) / world) of every global
    // batch of B rows (none when B < world leaves it out), its loss and gradient normalised by the
    // global batch's denominator (B, or the sum of its sample weights; cross_entropy: the sum of
    // its rows' sample x class weights), so that the SUM over the ranks is the one-process
    // gradient of the global batch; the L2 term (l2_weights) uses the global B too. Once per step
    // it calls grad_allreduce(buf, n, ctx) on the flat gradient buffer (every trainable
    // parameter's gradient, layer by layer, weight then bias, then this rank's share of the batch
    // loss: n floats), which must sum it across the ranks in place (it may throw: the exception
    // leaves mlp_fit), then updates from the sums. Every rank gets the same sums, so every rank
    // takes the same steps and stops at the same non-finite loss. Dropout masks are drawn per
    // global row, as in one process. Null: one process.
    void (*grad_allreduce)(float* buf, int64_t n, void* ctx) = nullptr;
    void* grad_allreduce_ctx = nullptr;
    int64_t rank = 0, world = 1;
};

// Data: X (n, in); targets either Y (n, out) float or Yi (n) int64 class indices (cross_entropy);
// sample_weight (n) or null.
struct FitData {
    const float* X = nullptr;
    const float* Y = nullptr;
    const int64_t* Yi = nullptr;
    const float* sample_weight = nullptr;
    int64_t n = 0;
};

// epoch_loss, steps and the non-finite stop (TrainResultBase, train_result.h).
struct FitResult : TrainResultBase {};

// The optimizer options of step k of a call (global step opt.step0 + k, bringing t to that + 1):
// the lr / momentum schedules and scikit-learn's Adam epsilon convention applied. Both trainers'
// (mlp_fit.cpp and the GPU one's csrc/cuda/mlp_fit_impl.h).
inline OptimOptions fit_step_optim(const FitOptions& opt, int64_t k) {
    OptimOptions oo = opt.optim;
    const int64_t step = opt.step0 + k;
    if (opt.lr_schedule && k < opt.lr_schedule_len) oo.lr = double(opt.lr_schedule[k]);
    if (opt.momentum_schedule && k < opt.momentum_schedule_len) {
        if (oo.kind == Optim::adam || oo.kind == Optim::adamw)
            oo.beta1 = double(opt.momentum_schedule[k]);
        else
            oo.momentum = double(opt.momentum_schedule[k]);
    }
    if (opt.adam_eps_before_correction && (oo.kind == Optim::adam || oo.kind == Optim::adamw))
        oo.eps = oo.eps / std::sqrt(1.0 - std::pow(oo.beta2, double(step + 1)));
    return oo;
}

FitResult mlp_fit(const std::vector<FitLayer>& layers, const FitData& data, int64_t epochs,
                  const FitOptions& opt);

// Inference of the same chain (no dropout; norms in eval mode): out (n, layers.back().out).
void mlp_fit_forward(float* out, const std::vector<FitLayer>& layers, const float* X, int64_t n);

}  // namespace fastmlp
