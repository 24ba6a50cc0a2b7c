// The host side of the GPU fused trainer (cuda_mlp.h): workspace layout, the epoch / batch loop and
// the order of the launches of one step, written once over an `Ops` backend so that the same code
// runs on the GPU (mlp_train.cu: launches on a stream) and in the CPU emulation of the kernels
// (tests/cuda/mlp_emulator.cpp). Plain C++: no CUDA syntax here.
//
// Ops provides, all ordered like launches on one stream:
//   size_t gemm_workspace_bytes(M, N, K);  void gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
//        C, ldc, GemmEpilogue, void* ws, size_t ws_bytes);
//   int mse_partials(count);  void mse_forward(float* loss, double* loss64, P, Y, count, double* partial);
//   void gather(xb, yb, X, Y, const int64_t* idx, B, din, dout);
//   void grad_mask_colsum(d, a, target, scale, mask, dbias, B, C);
//   void sgd_guarded(const SgdParam* table, count, max_n, SgdOptions, first, const double* loss,
//        int64_t* stop, int64_t tag, bool allow_nonfinite);
//   Memory allocate(bytes) (an owner with void* get());  to_device / to_host (dst, src, bytes);
//   fill_zero(dst, bytes);  finish() (wait for everything queued; results are on the host after).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "fastmlp/cuda_elementwise.h"  // SgdParam
#include "fastmlp/cuda_mlp.h"
#include "fastmlp/gemm.h"  // GemmEpilogue

namespace fastmlp::cuda::mlp_impl {

// Carves one allocation into 256-byte aligned pieces. With base == nullptr it only counts.
struct Carver {
    char* base = nullptr;
    size_t used = 0;
    template <class T>
    T* take(int64_t count) {
        used = (used + 255) / 256 * 256;
        T* p = base ? reinterpret_cast<T*>(base + used) : nullptr;
        used += size_t(std::max<int64_t>(count, 0)) * sizeof(T);
        return p;
    }
};

// A workspace is described once, by a layout(Carver&) that takes every piece: run with a counting
// Carver it gives the size to allocate, then with the allocation it sets the pointers.
template <class Layout>
size_t workspace_bytes(Layout& layout) {
    Carver sizing;
    layout(sizing);
    return sizing.used;
}
template <class Layout>
void place_workspace(void* base, Layout& layout) {
    Carver carve;
    carve.base = static_cast<char*>(base);
    layout(carve);
}

// Pointers into the workspace of one mlp_train call.
struct Work {
    std::vector<float*> act;   // act[l + 1] (B, out_l); act[0] (B, din): the gathered X batch
    float* yb = nullptr;       // (B, dout): the gathered Y batch
    float* d0 = nullptr;       // (B, maxw) gradient ping-pong buffers
    float* d1 = nullptr;
    std::vector<float*> gw;    // (out_l, in_l) weight gradients
    std::vector<float*> gb;    // (out_l) bias gradients, null for a layer without bias
    float* loss_f = nullptr;   // the float loss mse_forward also writes (unused)
    double* partial = nullptr; // mse partial sums
    double* losses = nullptr;  // (epochs * batches) batch losses
    int64_t* stop = nullptr;   // 0, or 1 + the step index whose loss stopped training
    int64_t* perm = nullptr;   // the sample orders, copied to the device
    SgdParam* table = nullptr; // the SGD descriptors of every parameter
    void* gemm_ws = nullptr;
    size_t gemm_ws_bytes = 0;
};

// One training step on batch (xb, yb) of Bn rows; its loss goes to *loss_slot.
template <class Ops>
void train_step(Ops& ops, const std::vector<MlpLayer>& layers, const Work& w, const float* xb,
                const float* yb, int64_t Bn, double* loss_slot, bool first, int64_t tag,
                const CudaMlpTrainOptions& opt, int count, int64_t max_n) {
    const size_t L = layers.size();
    const float* a = xb;
    for (size_t l = 0; l < L; ++l) {  // Z_l = A_l @ W_l^T + b_l, then ReLU: (Bn, out)
        const MlpLayer& ly = layers[l];
        GemmEpilogue epi;
        epi.bias = ly.bias;
        epi.relu = ly.relu;
        ops.gemm(false, true, Bn, ly.out, ly.in, 1.0f, a, ly.in, ly.weight, ly.in, 0.0f,
                 w.act[l + 1], ly.out, epi, w.gemm_ws, w.gemm_ws_bytes);
        a = w.act[l + 1];
    }
    const MlpLayer& last = layers[L - 1];
    const float* P = w.act[L];
    const int64_t count_out = Bn * last.out;
    ops.mse_forward(w.loss_f, loss_slot, P, yb, count_out, w.partial);
    // dZ_last = 2 (P - Y) / (Bn * out), masked by P > 0 when the net ends in ReLU; its bias grad.
    float* dz = w.d0;
    ops.grad_mask_colsum(dz, P, yb, float(2.0 / double(count_out)), last.relu, w.gb[L - 1], Bn,
                         last.out);
    for (size_t l = L; l-- > 0;) {
        const MlpLayer& ly = layers[l];
        const float* al = l == 0 ? xb : w.act[l];
        float* da = dz == w.d0 ? w.d1 : w.d0;
        if (l > 0) {  // dA_l (Bn, in) = dZ_l (Bn, out) @ W_l (out, in), masked by A_l > 0
            ops.gemm(false, false, Bn, ly.in, ly.out, 1.0f, dz, ly.out, ly.weight, ly.in, 0.0f, da,
                     ly.in, GemmEpilogue{}, w.gemm_ws, w.gemm_ws_bytes);
            const MlpLayer& prev = layers[l - 1];
            if (prev.relu || w.gb[l - 1])
                ops.grad_mask_colsum(da, w.act[l], nullptr, 0.0f, prev.relu, w.gb[l - 1], Bn,
                                     ly.in);
        }
        // dW_l (out, in) = dZ_l^T (out, Bn) @ A_l (Bn, in)
        ops.gemm(true, false, ly.out, ly.in, Bn, 1.0f, dz, ly.out, al, ly.in, 0.0f, w.gw[l], ly.in,
                 GemmEpilogue{}, w.gemm_ws, w.gemm_ws_bytes);
        dz = da;
    }
    ops.sgd_guarded(w.table, count, max_n, opt.sgd, first, loss_slot, w.stop, tag,
                    opt.allow_nonfinite);
}

template <class Ops>
MlpTrainResult train(Ops& ops, const std::vector<MlpLayer>& layers, const float* X, const float* Y,
                     int64_t n, int64_t epochs, const CudaMlpTrainOptions& opt) {
    if (layers.empty()) throw std::invalid_argument("mlp_train: no layers");
    if (opt.batch_size < 1) throw std::invalid_argument("mlp_train: batch_size must be >= 1");
    MlpTrainResult res;
    if (epochs <= 0) return res;
    const int64_t L = int64_t(layers.size()), din = layers[0].in, dout = layers[size_t(L - 1)].out;
    const int64_t bs = opt.batch_size;
    const int64_t nbatches = n <= 0 ? 0 : opt.drop_last ? n / bs : (n + bs - 1) / bs;
    if (nbatches == 0) {  // as the CPU trainer: no step, NaN epoch losses
        res.epoch_loss.assign(size_t(epochs), std::numeric_limits<double>::quiet_NaN());
        return res;
    }
    const int64_t B = std::min(bs, n);                     // the largest batch
    const int64_t rem = opt.drop_last ? 0 : n % bs;        // the last partial batch (0: none)
    const bool gather = opt.perm != nullptr;
    const int64_t steps_total = epochs * nbatches;
    const int64_t perm_len = gather ? (opt.perm_per_epoch ? epochs * n : n) : 0;
    int64_t maxw = 0, max_n = 0;
    int count = 0;
    size_t gemm_ws = 0;
    for (const MlpLayer& ly : layers) {
        maxw = std::max(maxw, ly.out);
        max_n = std::max(max_n, ly.in * ly.out);
        count += (ly.frozen_weight ? 0 : 1) + (ly.bias && !ly.frozen_bias ? 1 : 0);
    }
    for (int64_t Bn : {B, rem}) {
        if (Bn <= 0) continue;
        for (size_t l = 0; l < layers.size(); ++l) {
            const MlpLayer& ly = layers[l];
            gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(Bn, ly.out, ly.in));
            if (l > 0) gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(Bn, ly.in, ly.out));
            gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(ly.out, ly.in, Bn));
        }
    }
    Work w;
    auto layout = [&](Carver& cv) {
        w.act.assign(size_t(L + 1), nullptr);
        w.yb = nullptr;
        if (gather) {
            w.act[0] = cv.take<float>(B * din);
            w.yb = cv.take<float>(B * dout);
        }
        for (int64_t l = 0; l < L; ++l) w.act[size_t(l + 1)] = cv.take<float>(B * layers[size_t(l)].out);
        w.d0 = cv.take<float>(B * maxw);
        w.d1 = cv.take<float>(B * maxw);
        w.gw.assign(size_t(L), nullptr);
        w.gb.assign(size_t(L), nullptr);
        for (int64_t l = 0; l < L; ++l) {
            const MlpLayer& ly = layers[size_t(l)];
            w.gw[size_t(l)] = cv.take<float>(ly.in * ly.out);
            if (ly.bias) w.gb[size_t(l)] = cv.take<float>(ly.out);
        }
        w.loss_f = cv.take<float>(1);
        w.partial = cv.take<double>(ops.mse_partials(B * dout));
        w.losses = cv.take<double>(steps_total);
        w.stop = cv.take<int64_t>(1);
        w.perm = cv.take<int64_t>(perm_len);
        w.table = cv.take<SgdParam>(count);
        w.gemm_ws = cv.take<char>(int64_t(gemm_ws));
        w.gemm_ws_bytes = gemm_ws;
    };
    auto mem = ops.allocate(workspace_bytes(layout));
    place_workspace(mem.get(), layout);

    std::vector<SgdParam> table;
    for (int64_t l = 0; l < L; ++l) {
        const MlpLayer& ly = layers[size_t(l)];
        if (!ly.frozen_weight)  // a frozen parameter (requires_grad=False) is not in the table
            table.push_back({ly.weight, w.gw[size_t(l)], ly.weight_buf, ly.in * ly.out});
        if (ly.bias && !ly.frozen_bias) table.push_back({ly.bias, w.gb[size_t(l)], ly.bias_buf, ly.out});
    }
    ops.to_device(w.table, table.data(), table.size() * sizeof(SgdParam));
    if (gather) ops.to_device(w.perm, opt.perm, size_t(perm_len) * sizeof(int64_t));
    ops.fill_zero(w.stop, sizeof(int64_t));

    // The loop: launches only. The step index + 1 tags the batch whose loss stops training.
    bool first = opt.first_step;
    int64_t step = 0, queued = steps_total;  // queued: steps launched (fewer when should_stop)
    for (int64_t e = 0; e < epochs && queued == steps_total; ++e) {
        const int64_t* ord = gather ? w.perm + (opt.perm_per_epoch ? e * n : 0) : nullptr;
        for (int64_t bi = 0; bi < nbatches; ++bi, ++step) {
            if (opt.should_stop && opt.should_stop(opt.stop_ctx)) {
                queued = step;
                break;
            }
            const int64_t start = bi * bs, nb = std::min(bs, n - start);
            const float* xb = X + start * din;
            const float* yb = Y + start * dout;
            if (gather) {
                ops.gather(w.act[0], w.yb, X, Y, ord + start, nb, din, dout);
                xb = w.act[0];
                yb = w.yb;
            }
            train_step(ops, layers, w, xb, yb, nb, w.losses + step, first, step + 1, opt, count,
                       max_n);
            first = false;
        }
    }

    // The one copy back: every batch loss and the stop flag.
    std::vector<double> losses(static_cast<size_t>(steps_total));
    int64_t stop = 0;
    ops.to_host(losses.data(), w.losses, losses.size() * sizeof(double));
    ops.to_host(&stop, w.stop, sizeof(int64_t));
    ops.finish();

    // Per-epoch means weighted by batch size, as the CPU trainer sums them; a should_stop before
    // step `queued` leaves it interrupted.
    const int64_t bad = stop > 0 ? stop - 1 : steps_total;
    if (!res.tally_losses(losses, bad, queued, epochs, nbatches, n, bs, /*first_is_loss=*/true))
        res.interrupted = true;
    return res;
}

// Inference in chunks of rows through two ping-pong buffers; the last layer writes `out`.
// run_layer(layer, a, z, rows, ws, ws_bytes) queues one layer: z (rows, out) from a (rows, in),
// with the gemm workspace ws (shared by the two trainers' forwards: any Layer with in / out).
template <class Ops, class Layer, class RunLayer>
void chunked_forward(Ops& ops, float* out, const std::vector<Layer>& layers, const float* X,
                     int64_t n, int64_t chunk, RunLayer run_layer) {
    const size_t L = layers.size();
    const int64_t rows_max = std::min(chunk, n), tail = n % chunk;
    int64_t maxw = 0;
    size_t gemm_ws = 0;
    for (const Layer& ly : layers) {
        maxw = std::max(maxw, ly.out);
        for (int64_t r : {rows_max, tail})
            if (r > 0) gemm_ws = std::max(gemm_ws, ops.gemm_workspace_bytes(r, ly.out, ly.in));
    }
    float* buf[2] = {nullptr, nullptr};
    void* ws = nullptr;
    auto layout = [&](Carver& cv) {
        buf[0] = cv.take<float>(L > 1 ? rows_max * maxw : 0);
        buf[1] = cv.take<float>(L > 2 ? rows_max * maxw : 0);
        ws = cv.take<char>(int64_t(gemm_ws));
    };
    auto mem = ops.allocate(workspace_bytes(layout));
    place_workspace(mem.get(), layout);
    const int64_t dout = layers[L - 1].out;
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t rows = std::min(chunk, n - r0);
        const float* a = X + r0 * layers[0].in;
        for (size_t l = 0; l < L; ++l) {
            float* z = l == L - 1 ? out + r0 * dout : buf[l % 2];
            run_layer(layers[l], a, z, rows, ws, gemm_ws);
            a = z;
        }
    }
}

template <class Ops>
void forward(Ops& ops, float* out, const std::vector<MlpLayer>& layers, const float* X, int64_t n,
             int64_t chunk = 16384) {
    if (layers.empty()) throw std::invalid_argument("mlp_forward: no layers");
    if (n <= 0) return;
    chunked_forward(ops, out, layers, X, n, chunk,
                    [&](const MlpLayer& ly, const float* a, float* z, int64_t rows, void* ws,
                        size_t ws_bytes) {
                        GemmEpilogue epi;
                        epi.bias = ly.bias;
                        epi.relu = ly.relu;
                        ops.gemm(false, true, rows, ly.out, ly.in, 1.0f, a, ly.in, ly.weight,
                                 ly.in, 0.0f, z, ly.out, epi, ws, ws_bytes);
                    });
}

}  // namespace fastmlp::cuda::mlp_impl
