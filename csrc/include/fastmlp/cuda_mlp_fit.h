// fastmlp CUDA general fused trainer: the GPU twin of mlp_fit.h (same structs, same math: any
// activation of activation.h, dropout with the CPU's masks (dropout.h), every loss of loss.h,
// every optimizer of optimizer.h, per-step lr / momentum schedules, sample / class / pos weights,
// frozen parameters, the scikit-learn conventions).
//
// Pointers: every array of FitLayer (weights, biases, optimizer state) and of FitData (X, Y or Yi,
// sample_weight), and FitOptions' class_weight / pos_weight, are DEVICE pointers; FitOptions'
// perm, lr_schedule and momentum_schedule are HOST arrays (read on the host, the orders uploaded
// once). Without perm the order is 0..n-1 (the binding makes the seeded shuffle on the host with
// mlp_shuffle_order and passes it as perm). All work is queued on `stream`: one workspace per call,
// no synchronisation per step; the batch losses and the non-finite flag are copied back once, at
// the end. Kernels assume valid input (the bindings check it).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "fastmlp/mlp_fit.h"

namespace fastmlp::cuda {

FitResult mlp_fit(const std::vector<FitLayer>& layers, const FitData& data, int64_t epochs,
                  const FitOptions& opt, cudaStream_t stream);

// Inference of the same chain (no dropout): out (n, layers.back().out), device pointers.
void mlp_fit_forward(float* out, const std::vector<FitLayer>& layers, const float* X, int64_t n,
                     cudaStream_t stream);

}  // namespace fastmlp::cuda
