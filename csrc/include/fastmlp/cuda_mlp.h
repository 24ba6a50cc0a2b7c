// fastmlp fused MLP trainer on the GPU: the same semantics as the CPU trainer (mlp.h, torch mode)
// on device pointers, with every launch on `stream` (nullptr = the legacy default stream).
//
//   for each epoch: order = perm (made on the host, e.g. by mlp_shuffle_order) or 0..n-1
//     for each batch (last partial batch kept unless drop_last, as torch's DataLoader):
//       gather   Xb, Yb = X[order[batch]], Y[order[batch]]        (skipped when in order)
//       forward  Z_l = A_l @ W_l^T + b_l, A_{l+1} = relu(Z_l) where relu[l]   (sgemm epilogue)
//       loss     mean((P - Y)^2), in double, written into a per-batch slot on the device
//       backward dP = 2 (P - Y) / (B * out), masked by P > 0 when the last layer has a ReLU;
//                gradients of every parameter into workspace
//       update   torch.optim.SGD of every parameter in one launch, guarded by a device flag: a
//                non-finite batch loss (unless allow_nonfinite) sets the flag instead of
//                stepping, and every later step of the call is skipped, so the parameters and
//                momentum buffers stay as before that batch.
//
// The host loop launches kernels only: no synchronisation and no device-to-host copy per step.
// The batch losses and the flag come back once, at the end of the call (one stream synchronise).
// Workspace is one stream-ordered allocation per call (cudaMallocAsync), sgemm's split-K scratch
// included. Kernels assume valid input (the bindings check it). CUDA errors throw
// std::runtime_error carrying the CUDA error string.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "fastmlp/elementwise.h"  // SgdOptions
#include "fastmlp/mlp.h"          // MlpLayer (device pointers here), MlpTrainResult

namespace fastmlp::cuda {

struct CudaMlpTrainOptions {
    int64_t batch_size = 64;
    bool drop_last = false;
    const int64_t* perm = nullptr;  // HOST memory: (n), or (epochs, n) when perm_per_epoch; null:
    bool perm_per_epoch = false;    // samples in order (batches read X and Y in place)
    SgdOptions sgd;                 // lr, momentum, dampening, weight_decay, nesterov (torch.optim.SGD)
    bool first_step = true;         // the momentum buffers hold no history yet
    bool allow_nonfinite = false;   // keep training when a batch loss is NaN/inf
    // Polled on the host before each step is queued: when it returns true no further step is
    // queued, the queued ones finish, and the result says interrupted (as MlpTrainOptions).
    bool (*should_stop)(void* ctx) = nullptr;
    void* stop_ctx = nullptr;
};

// Trains in place. layers: device weights (out, in), biases (out) or null, momentum buffers
// (null when momentum == 0). X (n, layers[0].in), Y (n, layers.back().out): device, row-major
// contiguous. The result is MlpTrainResult as on the CPU (per-epoch loss weighted by batch size,
// steps, where a non-finite loss stopped training).
MlpTrainResult mlp_train(const std::vector<MlpLayer>& layers, const float* X, const float* Y,
                         int64_t n, int64_t epochs, const CudaMlpTrainOptions& opt,
                         cudaStream_t stream);

// Inference: out (n, layers.back().out) = the chain applied to X (n, layers[0].in), on the device.
void mlp_forward(float* out, const std::vector<MlpLayer>& layers, const float* X, int64_t n,
                 cudaStream_t stream);

}  // namespace fastmlp::cuda
