// The OptimOptions each *_step_many binding builds from its Python arguments, shared by _C's
// (cpu_optimizers.cpp) and _cuda's (cuda_optimizers.cpp) bindings, which take the same
// arguments in the same order (torch's names) and differ only in how they check arrays.
#pragma once
#include "fastmlp/optimizer.h"

namespace fastmlp::bind {

inline OptimOptions adam_options(double lr, double beta1, double beta2, double eps,
                                 double weight_decay, bool amsgrad, bool maximize,
                                 bool decoupled_weight_decay) {
    OptimOptions o;
    o.kind = decoupled_weight_decay ? Optim::adamw : Optim::adam;
    o.lr = lr;
    o.beta1 = beta1;
    o.beta2 = beta2;
    o.eps = eps;
    o.weight_decay = weight_decay;
    o.amsgrad = amsgrad;
    o.maximize = maximize;
    return o;
}

inline OptimOptions rmsprop_options(double lr, double alpha, double eps, double weight_decay,
                                    double momentum, bool centered, bool maximize) {
    OptimOptions o;
    o.kind = Optim::rmsprop;
    o.lr = lr;
    o.alpha = alpha;
    o.eps = eps;
    o.weight_decay = weight_decay;
    o.momentum = momentum;
    o.centered = centered;
    o.maximize = maximize;
    return o;
}

inline OptimOptions adagrad_options(double lr, double lr_decay, double eps, double weight_decay,
                                    bool maximize) {
    OptimOptions o;
    o.kind = Optim::adagrad;
    o.lr = lr;
    o.lr_decay = lr_decay;
    o.eps = eps;
    o.weight_decay = weight_decay;
    o.maximize = maximize;
    return o;
}

}  // namespace fastmlp::bind
