// fastmlp optimizers: the one home of the update rules of torch.optim's SGD, Adam, AdamW, RMSprop
// and Adagrad, as per-element __host__ __device__ functions (FASTMLP_HD, see activation.h).
//
// Every path uses these definitions: the CPU multi-tensor kernels (csrc/cpu/optimizers.cpp), the
// CUDA multi-tensor kernels (csrc/cuda/optimizer_kernels.cuh) and the fused trainers. Semantics
// and expression order are those of PyTorch's single-tensor (foreach=False) path, float32 state:
//
//   every kind   g = maximize ? -grad : grad
//   sgd          g += wd p;  if momentum: b = first ? g : mom b + (1 - dampening) g
//                                         g = nesterov ? g + mom b : b
//                p -= lr g
//   adam         g += wd p  (adam)  |  p *= 1 - lr wd  (adamw, decoupled)
//                m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g g
//                vmax = max(vmax, v) (amsgrad);  d = sqrt(amsgrad ? vmax : v) / sqrt(bc2) + eps
//                p += -(lr / bc1) m / d          bc1 = 1 - beta1^t,  bc2 = 1 - beta2^t
//   rmsprop      g += wd p;  sq = alpha sq + (1 - alpha) g g
//                centered: ga = lerp(ga, g, 1 - alpha),  avg = sqrt(sq - ga ga) + eps
//                else:     avg = sqrt(sq) + eps
//                momentum > 0: b = mom b + g / avg,  p += -lr b      else  p += -lr g / avg
//   adagrad      g += wd p;  s += g g;  p += -clr g / (sqrt(s) + eps),
//                clr = lr / (1 + (t - 1) lr_decay)      (s starts at initial_accumulator_value)
//
// t is the parameter's step count after this step (1 on its first step), as torch's
// state["step"]. The scalars that depend only on the options and t (bias corrections, clr,
// 1 - lr wd) are computed once per parameter and step in double, as PyTorch computes them in
// Python floats, then rounded to float: optim_coeffs() below. The per-element functions read
// only those floats, so the CPU (scalar or vectorised) and CUDA paths compute the same numbers.
//
// State slots per parameter (s0, s1, s2: float arrays the size of the parameter, or unused):
//   sgd      s0 = momentum_buffer (momentum != 0)
//   adam(w)  s0 = exp_avg, s1 = exp_avg_sq, s2 = max_exp_avg_sq (amsgrad)
//   rmsprop  s0 = square_avg, s1 = momentum_buffer (momentum > 0), s2 = grad_avg (centered)
//   adagrad  s0 = sum
#pragma once
#include <cmath>
#include <cstdint>

#include "fastmlp/activation.h"   // FASTMLP_HD
#include "fastmlp/elementwise.h"  // SgdOptions (the SGD rule's options, used by the trainers)

namespace fastmlp {

enum class Optim : int32_t {
    sgd = 0,
    adam = 1,
    adamw = 2,
    rmsprop = 3,
    adagrad = 4,
};
constexpr int32_t kOptimCount = 5;

// Hyper-parameters of one optimizer (one parameter group), in double as PyTorch holds them.
// Fields a kind does not use are ignored. Validation (lr >= 0, 0 <= beta < 1, ...) happens once,
// in Python (fastmlp.optim); kernels assume valid options.
struct OptimOptions {
    Optim kind = Optim::sgd;
    double lr = 1e-3;
    double weight_decay = 0.0;
    double momentum = 0.0;                   // sgd, rmsprop
    double dampening = 0.0;                  // sgd
    double beta1 = 0.9, beta2 = 0.999;       // adam, adamw
    double eps = 1e-8;                       // adam, adamw, rmsprop, adagrad
    double alpha = 0.99;                     // rmsprop
    double lr_decay = 0.0;                   // adagrad
    double initial_accumulator_value = 0.0;  // adagrad: the value s0 starts at (set by the caller)
    bool nesterov = false;                   // sgd
    bool amsgrad = false;                    // adam, adamw
    bool centered = false;                   // rmsprop
    bool maximize = false;
};

// The per-step float scalars the element rules read (see optim_coeffs).
struct OptimCoeffs {
    float lr = 0.0f;         // sgd: lr; rmsprop: lr
    float neg_step = 0.0f;   // adam: -(lr / bc1); rmsprop: -lr; adagrad: -clr
    float wd = 0.0f;         // L2 weight decay added to the gradient (0: none)
    float decay = 1.0f;      // adamw: 1 - lr wd (param multiplier); 1 otherwise
    float w1 = 0.0f;         // adam: 1 - beta1 (lerp weight); rmsprop: 1 - alpha (lerp weight)
    float b2 = 0.0f;         // adam: beta2; rmsprop: alpha
    float one_minus_b2 = 0.0f;  // adam: 1 - beta2; rmsprop: 1 - alpha
    float bc2_sqrt = 1.0f;   // adam: sqrt(1 - beta2^t)
    float eps = 0.0f;
    float momentum = 0.0f;   // sgd, rmsprop
    float damp1 = 1.0f;      // sgd: 1 - dampening
    bool first = false;      // sgd: t == 1 (the buffer starts as the gradient)
    bool nesterov = false, amsgrad = false, centered = false, maximize = false;
};

// Scalars of the step that brings a parameter to step count t (t >= 1), computed in double as
// torch.optim does in Python and then rounded to float.
FASTMLP_HD OptimCoeffs optim_coeffs(const OptimOptions& o, int64_t t) {
    OptimCoeffs c;
    const double step = double(t);
    c.maximize = o.maximize;
    c.eps = float(o.eps);
    switch (o.kind) {
        case Optim::sgd:
            c.lr = float(o.lr);
            c.wd = float(o.weight_decay);
            c.momentum = float(o.momentum);
            c.damp1 = float(1.0 - o.dampening);
            c.nesterov = o.nesterov;
            c.first = t <= 1;
            break;
        case Optim::adam:
        case Optim::adamw: {
            const double bc1 = 1.0 - pow(o.beta1, step);
            const double bc2 = 1.0 - pow(o.beta2, step);
            c.lr = float(o.lr);
            c.neg_step = float(-(o.lr / bc1));
            if (o.kind == Optim::adamw) {
                c.decay = float(1.0 - o.lr * o.weight_decay);
            } else {
                c.wd = float(o.weight_decay);
            }
            c.w1 = float(1.0 - o.beta1);
            c.b2 = float(o.beta2);
            c.one_minus_b2 = float(1.0 - o.beta2);
            c.bc2_sqrt = float(sqrt(bc2));
            c.amsgrad = o.amsgrad;
            break;
        }
        case Optim::rmsprop:
            c.lr = float(o.lr);
            c.neg_step = float(-o.lr);
            c.wd = float(o.weight_decay);
            c.w1 = float(1.0 - o.alpha);
            c.b2 = float(o.alpha);
            c.one_minus_b2 = float(1.0 - o.alpha);
            c.momentum = float(o.momentum);
            c.centered = o.centered;
            break;
        case Optim::adagrad:
            c.lr = float(o.lr);
            c.neg_step = float(-(o.lr / (1.0 + (step - 1.0) * o.lr_decay)));
            c.wd = float(o.weight_decay);
            break;
    }
    return c;
}

// torch.lerp(a, b, w) for float: a + w (b - a) when |w| < 0.5, else b - (b - a) (1 - w).
// Both forms are computed and one is selected (no branch: the CPU loops vectorise).
FASTMLP_HD float optim_lerp(float a, float b, float w) {
    const float d = b - a;
    const float lo = a + w * d;
    const float hi = b - d * (1.0f - w);
    return fabsf(w) < 0.5f ? lo : hi;
}

// ---- the per-element rules: p, state slots in/out; grad in ---------------------------------

// torch.optim.SGD on one element (SgdOptions form, as the fused trainers hold it).
// buf is read/written only when o.momentum != 0.
FASTMLP_HD void sgd_step_scalar(float& p, float grad, float& buf, const SgdOptions& o, bool first) {
    float g = o.maximize ? -grad : grad;
    if (o.weight_decay != 0.0f) g += o.weight_decay * p;
    if (o.momentum != 0.0f) {
        const float b = first ? g : o.momentum * buf + (1.0f - o.dampening) * g;
        buf = b;
        g = o.nesterov ? g + o.momentum * b : b;
    }
    p -= o.lr * g;
}

// The same rule from OptimCoeffs (kind sgd).
FASTMLP_HD void sgd_step_scalar(float& p, float grad, float& buf, const OptimCoeffs& c) {
    float g = c.maximize ? -grad : grad;
    if (c.wd != 0.0f) g += c.wd * p;
    if (c.momentum != 0.0f) {
        const float b = c.first ? g : c.momentum * buf + c.damp1 * g;
        buf = b;
        g = c.nesterov ? g + c.momentum * b : b;
    }
    p -= c.lr * g;
}

// torch.optim.Adam / AdamW on one element. vmax is read/written only when c.amsgrad.
FASTMLP_HD void adam_step_scalar(float& p, float grad, float& m, float& v, float& vmax,
                                 const OptimCoeffs& c) {
    // Optional terms are computed and selected, not branched on (the CPU loops vectorise).
    float g = c.maximize ? -grad : grad;
    const float pd = p * c.decay;
    const float pv = c.decay != 1.0f ? pd : p;  // AdamW: decoupled weight decay
    const float gw = g + c.wd * pv;
    g = c.wd != 0.0f ? gw : g;                 // Adam: L2 penalty in the gradient
    const float mv = optim_lerp(m, g, c.w1);
    m = mv;
    const float vv = v * c.b2 + c.one_minus_b2 * g * g;
    v = vv;
    float s = vv;
    if (c.amsgrad) {
        const float mx = vmax;
        const float hi = ((mx > vv) | (mx != mx)) ? mx : vv;  // torch.maximum: NaN propagates
        s = vv != vv ? vv : hi;
        vmax = s;
    }
    const float denom = sqrtf(s) / c.bc2_sqrt + c.eps;
    p = pv + c.neg_step * mv / denom;
}

// torch.optim.RMSprop on one element. buf is read always (pass a dummy when momentum == 0) and
// written back unchanged unless c.momentum > 0; ga is read/written only when c.centered.
FASTMLP_HD void rmsprop_step_scalar(float& p, float grad, float& sq, float& buf, float& ga,
                                    const OptimCoeffs& c) {
    float g = c.maximize ? -grad : grad;
    const float pv = p;
    const float gw = g + c.wd * pv;
    g = c.wd != 0.0f ? gw : g;
    const float sv = sq * c.b2 + c.one_minus_b2 * g * g;
    sq = sv;
    float avg;
    if (c.centered) {
        const float gv = optim_lerp(ga, g, c.w1);
        ga = gv;
        avg = sqrtf(sv + -1.0f * gv * gv) + c.eps;
    } else {
        avg = sqrtf(sv) + c.eps;
    }
    // Both forms computed, one selected (buf is read either way: pass a dummy when unused).
    const bool use_momentum = c.momentum > 0.0f;
    const float b = buf * c.momentum + g / avg;
    buf = use_momentum ? b : buf;
    const float with_momentum = pv + c.neg_step * b;
    const float without = pv + c.neg_step * g / avg;
    p = use_momentum ? with_momentum : without;
}

// torch.optim.Adagrad on one element.
FASTMLP_HD void adagrad_step_scalar(float& p, float grad, float& sum, const OptimCoeffs& c) {
    float g = c.maximize ? -grad : grad;
    const float pv = p;
    const float gw = g + c.wd * pv;
    g = c.wd != 0.0f ? gw : g;
    const float s = sum + g * g;
    sum = s;
    p = pv + c.neg_step * g / (sqrtf(s) + c.eps);
}

// Any kind on one element, state slots as in the table at the top.
FASTMLP_HD void optim_step_scalar(Optim kind, float& p, float grad, float& s0, float& s1, float& s2,
                                  const OptimCoeffs& c) {
    switch (kind) {
        case Optim::sgd: sgd_step_scalar(p, grad, s0, c); break;
        case Optim::adam:
        case Optim::adamw: adam_step_scalar(p, grad, s0, s1, s2, c); break;
        case Optim::rmsprop: rmsprop_step_scalar(p, grad, s0, s1, s2, c); break;
        case Optim::adagrad: adagrad_step_scalar(p, grad, s0, c); break;
    }
}

}  // namespace fastmlp
