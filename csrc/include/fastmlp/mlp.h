// fastmlp fused MLP trainer: whole epochs of minibatch SGD on a chain of Linear layers with
// optional ReLU after each, MSE loss, in one native call (no Python between steps).
//
//   for each epoch: order = perm or a seeded shuffle (or 0..n-1)
//     for each batch (last partial batch kept unless drop_last, as torch's DataLoader):
//       forward  Z_l = A_l @ W_l^T + b_l,  A_{l+1} = relu(Z_l) where relu[l]   (sgemm epilogue)
//       loss     torch mode:   mean((P - Y)^2)                          (nn.MSELoss)
//                sklearn mode: 0.5 * mean((P - Y)^2) + 0.5 * alpha * sum_l |W_l|^2 / B
//       backward dP = 2 (P - Y) / (B * out)  [torch]   or  (P - Y) / B  [sklearn]
//       update   torch mode:   torch.optim.SGD (momentum, dampening, weight_decay, nesterov)
//                sklearn mode: g += alpha / B * W (weights only); v = m v - lr g; p += v
//                              (nesterov: p += m v - lr g), as sklearn's SGDOptimizer
//
// Weights are PyTorch's layout (out, in), row-major, updated in place. Kernels assume valid input
// (sizes > 0, pointers valid and not aliasing each other); the Python bindings check it.
// Results do not depend on the thread count (gemm splits output tiles; reductions are fixed-order).
#pragma once
#include <cstdint>
#include <vector>

#include "fastmlp/train_result.h"

namespace fastmlp {

struct MlpLayer {
    float* weight = nullptr;      // (out, in)
    float* bias = nullptr;        // (out) or null: no bias
    float* weight_buf = nullptr;  // momentum / velocity buffer (out, in); null when momentum == 0
    float* bias_buf = nullptr;    // (out); null when momentum == 0 or no bias
    int64_t in = 0, out = 0;
    bool relu = false;            // ReLU after this layer
    // requires_grad=False (PyTorch's frozen parameter): never updated, no weight decay or
    // momentum, while the gradient still flows through it to the layers before.
    bool frozen_weight = false;
    bool frozen_bias = false;
};

enum class MlpMode : int { torch = 0, sklearn = 1 };
// Which step implementation: auto picks the small-matrix path for tiny nets, gemm otherwise.
enum class MlpPath : int { automatic = 0, small = 1, gemm = 2 };

struct MlpTrainOptions {
    int64_t batch_size = 64;
    bool drop_last = false;
    bool shuffle = true;
    uint64_t seed = 0;
    int64_t epoch_offset = 0;      // epoch e of this call shuffles as global epoch epoch_offset + e
    const int64_t* perm = nullptr; // explicit order: (n), or (epochs, n) when perm_per_epoch
    bool perm_per_epoch = false;
    MlpMode mode = MlpMode::torch;
    float lr = 0.01f;
    float momentum = 0.0f;
    float dampening = 0.0f;        // torch mode only
    float weight_decay = 0.0f;     // torch mode: on every parameter (torch.optim.SGD)
    float alpha = 0.0f;            // sklearn mode: L2 on weights, scaled by 1 / batch size
    bool nesterov = false;
    bool first_step = true;        // torch mode: the momentum buffers hold no history yet
    bool allow_nonfinite = false;  // keep training when a batch loss is NaN/inf
    MlpPath path = MlpPath::automatic;
    // Polled before every batch (a few ns): when it returns true, training stops at that batch
    // boundary with result.interrupted set; the parameters hold the last completed step. The
    // bindings use it for Ctrl-C and for the interpreter finalizing; null: never stop.
    bool (*should_stop)(void* ctx) = nullptr;
    void* stop_ctx = nullptr;
    // Data-parallel training (fastmlp.distributed; torch mode only). When grad_allreduce is set,
    // rank `rank` of `world` computes rows [nb * rank / world, nb * (rank + 1) / world) of every
    // global batch of nb rows, its loss and gradients normalised by the global batch; it writes
    // them into grad_buffer (mlp_grad_buffer_size floats: per layer the weight gradient (out, in)
    // then the bias gradient (out), then its share of the batch loss), calls
    // grad_allreduce(grad_buffer, size, ctx) once per step, which must sum the buffer across the
    // ranks in place (it may throw; the exception leaves mlp_train), and updates from the sums.
    // Every rank gets the same sums, so every rank takes the same steps. Null: one process.
    void (*grad_allreduce)(float* buf, int64_t n, void* ctx) = nullptr;
    void* grad_allreduce_ctx = nullptr;
    float* grad_buffer = nullptr;
    int64_t rank = 0, world = 1;
};

// epoch_loss, steps and the non-finite stop: TrainResultBase (train_result.h).
struct MlpTrainResult : TrainResultBase {
    bool used_small_path = false;
    bool interrupted = false;        // should_stop stopped training (epoch_loss: completed epochs)
};

// Order of the samples of global epoch `epoch` for a seeded shuffle: order (n).
void mlp_shuffle_order(int64_t* order, int64_t n, uint64_t seed, int64_t epoch);

// Trains in place. X (n, layers[0].in), Y (n, layers.back().out), row-major contiguous.
MlpTrainResult mlp_train(const std::vector<MlpLayer>& layers, const float* X, const float* Y,
                         int64_t n, int64_t epochs, const MlpTrainOptions& opt);

// Inference: out (n, layers.back().out) = the chain applied to X (n, layers[0].in).
void mlp_forward(float* out, const std::vector<MlpLayer>& layers, const float* X, int64_t n);

// Bytes of scratch blocks the calling thread keeps for its next fused-trainer call (mlp_train,
// mlp_fit: csrc/cpu/scratch_cache.h), at most 64 MiB.
size_t mlp_scratch_cached_bytes();

// Floats in the data-parallel gradient buffer: every weight and bias, plus one for the loss.
int64_t mlp_grad_buffer_size(const std::vector<MlpLayer>& layers);

// Whether the small-matrix path would be chosen for these layers and batch size.
bool mlp_small_path_fits(const std::vector<MlpLayer>& layers, int64_t batch_size);

}  // namespace fastmlp
