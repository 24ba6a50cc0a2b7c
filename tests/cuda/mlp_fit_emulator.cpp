// Runs the GPU general fused trainer (csrc/cuda/mlp_fit_impl.h: workspace layout, epoch/batch loop,
// the launches of a step) on the CPU: the same host code as mlp_fit.cu over an emulated backend
// whose "launches" run the real device code (mlp_fit_kernels.cuh: gather, dropout, activation
// backward, the bias column sums, the loss passes, the L2 penalty, the guarded optimizer step;
// gemm_kernels.cuh with gemm.cu's plans, split-K into the trainer's workspace and
// the bias + activation epilogue) in cuda_emulation.h, with mlp_fit.cu's launch shapes. Compared
// against a naive sequential host loop of csrc/cpu/mlp_fit.cpp's algorithm (products accumulated
// in double, every rule from activation.h / loss.h / optimizer.h / dropout.h): weights, biases,
// optimizer state, per-epoch losses, steps, the non-finite stop — for every activation x loss x
// optimizer on a small net, and dropout, weights, schedules, frozen parameters, scikit-learn
// conventions, orders, drop_last and split-K on their own. Dropout masks drawn by the kernel are
// checked against dropout.h's hash, the one csrc/cpu/mlp_fit.cpp draws from.
//
//   g++ -std=c++17 -O1 -I tests/cuda/emu_include -I tests/cuda -I csrc/include -I csrc/cuda \
//       tests/cuda/mlp_fit_emulator.cpp -o mlp_fit_emulator && ./mlp_fit_emulator
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulation.h"
#include "emu_backend.h"
#include "gemm_kernels.cuh"
#include "mlp_fit_impl.h"
#include "mlp_fit_kernels.cuh"

namespace gm = fastmlp::cuda::gemm_impl;
namespace fk = fastmlp::cuda::fit_impl;
using namespace fastmlp;

static int failures = 0, cases = 0;

static void expect(bool ok, const std::string& what) {
    ++cases;
    if (!ok) ++failures;
    if (!ok || std::getenv("VERBOSE")) std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- the emulated backend (mlp_fit.cu's launches) ----------------------------------------------

// Kernels without __syncthreads (the grid-stride passes, the one-thread reductions, the optimizer
// step) run as a plain loop over the threads of every block of mlp_fit.cu's launch shape: the same
// results as fibers without their context switches (the fiber launch is for barrier phases).
template <class F>
static void launch_flat(dim3 grid, dim3 block, F kernel) {
    gridDim = grid;
    blockDim = block;
    for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            blockIdx = dim3(bx, by, 0);
            for (unsigned t = 0; t < block.x * block.y; ++t) {
                threadIdx = dim3(t % block.x, t / block.x, 0);
                kernel();
            }
        }
}

struct EmuOps : emu::GemmMemoryOps {
    // The full activation x loss x optimizer product runs its products through a plain host loop
    // (alpha = 1, beta = 0, bias / pre-activation / activation epilogue as gemm_kernels.cuh) to
    // keep the run short; every other case launches the real gemm kernels (fibers, barriers).
    bool host_gemm = false;

    void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
              GemmEpilogue epi, void* ws, size_t ws_bytes) {
        if (M <= 0 || N <= 0) return;
        if (host_gemm) {
            ++launches;
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < N; ++j) {
                    float acc = 0.0f;
                    for (int64_t k = 0; k < K; ++k)
                        acc += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                    float v = alpha * acc;
                    if (epi.bias) v += epi.bias[j];
                    if (epilogue_relu(epi)) v = v > 0.0f ? v : (v != v ? v : 0.0f);
                    if (epilogue_tile_act(epi)) {
                        if (epi.pre_act) epi.pre_act[i * ldc + j] = v;
                        v = act_forward_scalar(v, epi.act);
                    }
                    C[i * ldc + j] = v;
                }
            return;
        }
        emu::GemmMemoryOps::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi, ws, ws_bytes);
    }
    void gather(float* xb, float* yb, int64_t* yib, float* swb, const float* X, const float* Y,
                const int64_t* Yi, const float* sw, const int64_t* idx, int64_t B, int64_t din,
                int64_t dout) {
        const int64_t total = B * (din + (Y ? dout : 0) + 1);
        ++launches;
        launch_flat(dim3(fk::grid_elems(total)), dim3(fk::kThreads),
                    [&] { fk::fit_gather_kernel(xb, yb, yib, swb, X, Y, Yi, sw, idx, B, din, dout); });
    }
    void dropout(float* out, float* mask, const float* y, int64_t n, float p, uint64_t seed,
                 int64_t step, int64_t layer) {
        ++launches;
        launch_flat(dim3(fk::grid_elems(n)), dim3(fk::kThreads),
                    [&] { fk::fit_dropout_kernel(out, mask, y, n, p, seed, step, layer); });
    }
    void act_backward(float* d, const float* mask, const float* z, const float* y, int64_t n,
                      ActParams p) {
        if (!mask && p.kind == Act::identity) return;
        ++launches;
        launch_flat(dim3(fk::grid_elems(n)), dim3(fk::kThreads),
                    [&] { fk::fit_act_backward_kernel(d, mask, z, y, n, p); });
    }
    void act_forward(float* y, const float* x, int64_t n, ActParams p) {
        ++launches;
        launch_flat(dim3(fk::grid_elems(n)), dim3(fk::kThreads), [&] { fk::fit_act_forward_kernel(y, x, n, p); });
    }
    void norm_forward(const FitNorm& nm, int mode, bool update, double f, const int64_t* stop, float* y,
                      float* xhat, float* rstd, const float* x, int64_t B, int64_t C) {
        ++launches;
        const int64_t sets = mode == fk::kRowsNorm ? B : C;
        launch_flat(dim3(fk::grid_elems(sets)), dim3(fk::kThreads),
                    [&] { fk::fit_norm_forward_kernel(nm, mode, update, f, stop, y, xhat, rstd, x, B, C); });
    }
    void norm_param_grad(float* gw, float* gb, const float* d, const float* xhat, int64_t B, int64_t C) {
        ++launches;
        emu::launch(dim3(unsigned(cdiv(C, fk::kCols))), dim3(fk::kCols, fk::kRows),
                    [&] { fk::fit_norm_param_grad_kernel(gw, gb, d, xhat, B, C); });
    }
    void norm_backward(const FitNorm& nm, int mode, float* d, const float* xhat, const float* rstd, int64_t B,
                       int64_t C) {
        ++launches;
        const int64_t sets = mode == fk::kRowsNorm ? B : C;
        launch_flat(dim3(fk::grid_elems(sets)), dim3(fk::kThreads),
                    [&] { fk::fit_norm_backward_kernel(nm, mode, d, xhat, rstd, B, C); });
    }
    void colsum(float* dbias, float* d, int64_t B, int64_t C) {
        ++launches;
        emu::launch(dim3(unsigned(cdiv(C, fk::kCols))), dim3(fk::kCols, fk::kRows),
                    [&] { fk::fit_colsum_kernel(dbias, d, B, C); });
    }
    void sum(double* dst, const float* v, int64_t n) {
        ++launches;
        launch_flat(dim3(1), dim3(1), [&] { fk::fit_sum_kernel(dst, v, n); });
    }
    void elem_loss(float* dP, double* rows, const float* P, const float* Y, const float* sw,
                   const float* pw, int64_t B, int64_t O, LossParams lp, double of, double ls,
                   const double* swsum, double cr) {
        ++launches;
        launch_flat(dim3(fk::grid_elems(B)), dim3(fk::kThreads),
                    [&] { fk::fit_elem_loss_kernel(dP, rows, P, Y, sw, pw, B, O, lp, of, ls, swsum, cr); });
    }
    void elem_loss_finish(double* loss, const double* rows, int64_t B, double of, double ls,
                          const double* swsum, double cr) {
        ++launches;
        launch_flat(dim3(1), dim3(1), [&] { fk::fit_elem_loss_finish_kernel(loss, rows, B, of, ls, swsum, cr); });
    }
    void ce_rows(double* lse, double* rl, double* rw, const float* P, const int64_t* yi,
                 const float* sw, const float* cw, int64_t B, int64_t C, int64_t ig, float s) {
        ++launches;
        emu::launch(dim3(fk::grid_rows(B)), dim3(fk::kRowThreads),
                    [&] { fk::fit_ce_rows_kernel(lse, rl, rw, P, yi, sw, cw, B, C, ig, s); });
    }
    void ce_finish(double* loss, double* scal, const double* rl, const double* rw, int64_t B) {
        ++launches;
        launch_flat(dim3(1), dim3(1), [&] { fk::fit_ce_finish_kernel(loss, scal, rl, rw, B); });
    }
    void ce_grad(float* dP, const float* P, const double* lse, const int64_t* yi, const float* sw,
                 const float* cw, const double* scal, const double* wsum, int64_t B, int64_t C,
                 int64_t ig, float s) {
        ++launches;
        launch_flat(dim3(fk::grid_elems(B * C)), dim3(fk::kThreads),
                    [&] { fk::fit_ce_grad_kernel(dP, P, lse, yi, sw, cw, scal, wsum, B, C, ig, s); });
    }
    void l2_loss(double* loss, const fk::FitParam* table, int count, double f) {
        ++launches;
        emu::launch(dim3(1), dim3(fk::kRowThreads), [&] { fk::fit_l2_loss_kernel(loss, table, count, f); });
    }
    void optim_guarded(const fk::FitParam* table, int count, int64_t max_n, Optim kind,
                       const fk::StepCoeffs* coef, const double* loss, int64_t* stop, int64_t tag,
                       bool allow) {
        if (count <= 0) return;
        ++launches;
        launch_flat(dim3(fk::grid_params(max_n), unsigned(count)), dim3(fk::kThreads),
                    [&] { fk::fit_optim_guarded_kernel(table, count, kind, coef, loss, stop, tag, allow); });
    }
};

// ---- the reference: mlp_fit.cpp's loop, naive and sequential ------------------------------------

// C (M, N) = op(A) op(B) accumulated in double (row-major, lda/ldb the stored row lengths).
static void naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float* C, const float* bias) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double s = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                const double a = ta ? A[k * lda + i] : A[i * lda + k];
                const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            if (bias) s += double(bias[j]);
            C[i * N + j] = float(s);
        }
}

static double ref_loss_grad(std::vector<float>& dP, const float* P, const float* y, const int64_t* yi,
                            const float* sw, bool weighted, int64_t B, int64_t O, const FitOptions& opt) {
    const LossParams lp = opt.loss;
    if (lp.kind == Loss::cross_entropy) {
        const float* cw = opt.class_weight;
        const float s = opt.label_smoothing;
        double wsum = double(O);
        if (cw) { wsum = 0.0; for (int64_t c = 0; c < O; ++c) wsum += double(cw[c]); }
        double num = 0.0, den = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const int64_t t = yi[b];
            if (t == opt.ignore_index) continue;
            const double lse = ce_row_logsumexp(P + b * O, O, 1);
            num += double(sw[b]) * ce_row_loss_index(P + b * O, O, 1, lse, t, cw, s);
            den += double(sw[b]) * ce_row_weight(t, cw);
        }
        const double scale = den != 0.0 ? 1.0 / den : 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const int64_t t = yi[b];
            for (int64_t c = 0; c < O; ++c) dP[size_t(b * O + c)] = 0.0f;
            if (t == opt.ignore_index) continue;
            const double lse = ce_row_logsumexp(P + b * O, O, 1);
            const double A = ce_row_coef_sum_index(t, cw, s, wsum, O);
            for (int64_t c = 0; c < O; ++c)
                dP[size_t(b * O + c)] = ce_grad_index(P[b * O + c], c, lse, t, cw, s, A, O, scale * double(sw[b]));
        }
        return den != 0.0 ? num / den : NAN;
    }
    double swsum = 0.0;
    for (int64_t b = 0; b < B; ++b) swsum += double(sw[b]);
    const double denom = double(opt.loss_sum_outputs ? 1 : O) * (weighted ? swsum : double(B)) / double(opt.loss_scale);
    double total = 0.0;
    for (int64_t b = 0; b < B; ++b) {
        double acc = 0.0;
        const float g_scale = float(double(sw[b]) / denom);
        for (int64_t o = 0; o < O; ++o) {
            const float x = P[b * O + o], t = y[b * O + o], pwo = opt.pos_weight ? opt.pos_weight[o] : 1.0f;
            acc += double(loss_elem_value(x, t, lp, pwo));
            dP[size_t(b * O + o)] = loss_elem_grad(x, t, lp, pwo) * g_scale;
        }
        total += acc * double(sw[b]);
    }
    return denom != 0.0 ? total / denom : NAN;
}

// The reference's norm layer (mlp_fit.cpp's norm_forward / norm_backward, sequential): y (B, C) =
// norm(x) (y may be x), xhat / rstd kept when not null; `train`: BatchNorm1d's training mode
// (batch statistics when batch_stats, running statistics updated by f).
static void ref_norm_forward(const FitNorm& nm, float* y, float* xhat, float* rstd, const float* x, int64_t B,
                             int64_t C, bool train, double f) {
    if (nm.kind == Norm::layer) {
        for (int64_t b = 0; b < B; ++b) {
            const float r = norm_forward_set(y + b * C, xhat ? xhat + b * C : nullptr, x + b * C, C, 1, nm.eps,
                                             nm.weight, nm.bias, true, 0, nullptr, nullptr);
            if (rstd) rstd[b] = r;
        }
        return;
    }
    const bool running = nm.running_mean && nm.running_var;
    if (train ? nm.batch_stats : !running) {
        for (int64_t j = 0; j < C; ++j) {
            double mean = 0.0, var = 0.0;
            const float r = norm_forward_set(y + j, xhat ? xhat + j : nullptr, x + j, B, C, nm.eps, nm.weight,
                                             nm.bias, false, j, &mean, &var);
            if (rstd) rstd[j] = r;
            if (train && running) norm_running_update(nm.running_mean[j], nm.running_var[j], mean, var, B, f);
        }
        return;
    }
    for (int64_t j = 0; j < C; ++j) {
        const float r = norm_rstd(double(nm.running_var[j]), nm.eps);
        if (rstd) rstd[j] = r;
        for (int64_t b = 0; b < B; ++b) {
            const float xh = norm_xhat(x[b * C + j], double(nm.running_mean[j]), r);
            if (xhat) xhat[b * C + j] = xh;
            y[b * C + j] = norm_affine(xh, nm.weight, nm.bias, j);
        }
    }
}

// d (B, C): dLoss/dy in, dLoss/dx out; gw / gb (C) the parameter gradients (sequential sums).
static void ref_norm_backward(const FitNorm& nm, float* d, const float* xhat, const float* rstd, int64_t B,
                              int64_t C, std::vector<float>& gw, std::vector<float>& gb) {
    gw.assign(size_t(C), 0.0f);
    gb.assign(size_t(C), 0.0f);
    for (int64_t j = 0; j < C; ++j) {
        double sw = 0.0, sb = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            sw += double(d[b * C + j]) * double(xhat[b * C + j]);
            sb += double(d[b * C + j]);
        }
        gw[size_t(j)] = float(sw);
        gb[size_t(j)] = float(sb);
    }
    if (nm.kind == Norm::layer) {
        for (int64_t b = 0; b < B; ++b)
            norm_backward_set(d + b * C, d + b * C, xhat + b * C, C, 1, rstd[b], nm.weight, true, 0);
    } else if (nm.batch_stats) {
        for (int64_t j = 0; j < C; ++j) norm_backward_set(d + j, d + j, xhat + j, B, C, rstd[j], nm.weight, false, j);
    } else {
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < C; ++j)
                d[b * C + j] = norm_backward_const(d[b * C + j], nm.weight ? nm.weight[j] : 1.0f, rstd[j]);
    }
}

// mlp_fit_forward's reference (eval mode): Linear, activation and norm per layer, in double products.
static std::vector<float> ref_forward(const std::vector<FitLayer>& layers, const float* X, int64_t n) {
    std::vector<float> a(X, X + n * layers[0].in);
    for (const FitLayer& ly : layers) {
        std::vector<float> z(size_t(n * ly.out));
        naive_gemm(false, true, n, ly.out, ly.in, a.data(), ly.in, ly.weight, ly.in, z.data(), ly.bias);
        const bool pre = ly.norm.kind != Norm::none && ly.norm.before_act;
        if (pre) ref_norm_forward(ly.norm, z.data(), nullptr, nullptr, z.data(), n, ly.out, false, 0.0);
        for (auto& v : z) v = act_forward_scalar(v, ly.act);
        if (ly.norm.kind != Norm::none && !pre)
            ref_norm_forward(ly.norm, z.data(), nullptr, nullptr, z.data(), n, ly.out, false, 0.0);
        a.swap(z);
    }
    return a;
}

static FitResult ref_fit(const std::vector<FitLayer>& layers, const FitData& data, int64_t epochs,
                         const FitOptions& opt) {
    FitResult res;
    const int64_t n = data.n, L = int64_t(layers.size()), din = layers[0].in, dout = layers.back().out;
    std::vector<int64_t> order(static_cast<size_t>(n));
    int64_t step = opt.step0;
    for (int64_t e = 0; e < epochs; ++e) {
        for (int64_t i = 0; i < n; ++i)
            order[size_t(i)] = opt.perm ? opt.perm[(opt.perm_per_epoch ? e * n : 0) + i] : i;
        double epoch_sum = 0.0;
        int64_t used = 0, batch = 0;
        for (int64_t start = 0; start < n; start += opt.batch_size, ++batch) {
            const int64_t B = std::min(opt.batch_size, n - start);
            if (B < opt.batch_size && opt.drop_last) break;
            std::vector<std::vector<float>> a(static_cast<size_t>(L + 1)), y(static_cast<size_t>(L)), z(static_cast<size_t>(L)), mask(static_cast<size_t>(L));
            // norm layers: xhat, rstd, and the activation's output before a norm after it
            std::vector<std::vector<float>> nxh(static_cast<size_t>(L)), nrs(static_cast<size_t>(L)), yact(static_cast<size_t>(L));
            a[0].resize(size_t(B * din));
            std::vector<float> yb(static_cast<size_t>(B * dout)), sw(static_cast<size_t>(B), 1.0f);
            std::vector<int64_t> yi(static_cast<size_t>(B));
            for (int64_t b = 0; b < B; ++b) {
                const int64_t r = order[size_t(start + b)];
                for (int64_t c = 0; c < din; ++c) a[0][size_t(b * din + c)] = data.X[r * din + c];
                if (data.Yi) yi[size_t(b)] = data.Yi[r];
                else for (int64_t c = 0; c < dout; ++c) yb[size_t(b * dout + c)] = data.Y[r * dout + c];
                if (data.sample_weight) sw[size_t(b)] = data.sample_weight[r];
            }
            for (int64_t l = 0; l < L; ++l) {
                const FitLayer& ly = layers[size_t(l)];
                const int64_t m = B * ly.out;
                z[size_t(l)].resize(size_t(m));
                naive_gemm(false, true, B, ly.out, ly.in, a[size_t(l)].data(), ly.in, ly.weight, ly.in, z[size_t(l)].data(), ly.bias);
                const FitNorm& nm = ly.norm;
                const double f = nm.cumulative ? 1.0 / double(nm.count0 + (step - opt.step0) + 1) : nm.momentum;
                if (nm.kind != Norm::none) {
                    nxh[size_t(l)].resize(size_t(m));
                    nrs[size_t(l)].resize(size_t(nm.kind == Norm::layer ? B : ly.out));
                }
                if (nm.kind != Norm::none && nm.before_act)  // z: the activation's input, norm(Z)
                    ref_norm_forward(nm, z[size_t(l)].data(), nxh[size_t(l)].data(), nrs[size_t(l)].data(),
                                     z[size_t(l)].data(), B, ly.out, true, f);
                y[size_t(l)].resize(size_t(m));
                for (int64_t i = 0; i < m; ++i) y[size_t(l)][size_t(i)] = act_forward_scalar(z[size_t(l)][size_t(i)], ly.act);
                if (nm.kind != Norm::none && !nm.before_act) {  // y: the activation's output; then norm
                    yact[size_t(l)] = y[size_t(l)];
                    ref_norm_forward(nm, y[size_t(l)].data(), nxh[size_t(l)].data(), nrs[size_t(l)].data(),
                                     yact[size_t(l)].data(), B, ly.out, true, f);
                }
                a[size_t(l + 1)] = y[size_t(l)];
                if (ly.dropout > 0.0f) {
                    mask[size_t(l)].resize(size_t(m));
                    for (int64_t i = 0; i < m; ++i) {
                        const bool keep = dropout_uniform(opt.dropout_seed, step, l, i) >= ly.dropout;
                        mask[size_t(l)][size_t(i)] = keep ? dropout_keep_scale(ly.dropout) : 0.0f;
                        a[size_t(l + 1)][size_t(i)] = y[size_t(l)][size_t(i)] * mask[size_t(l)][size_t(i)];
                    }
                }
            }
            std::vector<float> dz(static_cast<size_t>(B * dout));
            double loss = ref_loss_grad(dz, a[size_t(L)].data(), yb.data(), yi.data(), sw.data(),
                                        data.sample_weight != nullptr, B, dout, opt);
            if (opt.l2_weights != 0.0f) {
                double w2 = 0.0;
                for (const FitLayer& ly : layers)
                    for (int64_t j = 0; j < ly.in * ly.out; ++j) w2 += double(ly.weight[j]) * ly.weight[j];
                loss += 0.5 * double(opt.l2_weights) * w2 / double(B);
            }
            if (!std::isfinite(loss) && !opt.allow_nonfinite) {
                res.mark_nonfinite(e, batch, loss, epoch_sum, used, NAN);
                return res;
            }
            const fk::StepCoeffs sc = fk::step_coeffs(opt, step - opt.step0, B);
            std::vector<std::vector<float>> gw(static_cast<size_t>(L)), gb(static_cast<size_t>(L)),
                gnw(static_cast<size_t>(L)), gnb(static_cast<size_t>(L));
            for (int64_t l = L - 1; l >= 0; --l) {
                const FitLayer& ly = layers[size_t(l)];
                const int64_t m = B * ly.out;
                const FitNorm& nm = ly.norm;
                const bool post = nm.kind != Norm::none && !nm.before_act;
                const std::vector<float>& yv = post ? yact[size_t(l)] : y[size_t(l)];
                if (ly.dropout > 0.0f)
                    for (int64_t i = 0; i < m; ++i) dz[size_t(i)] *= mask[size_t(l)][size_t(i)];
                if (post)
                    ref_norm_backward(nm, dz.data(), nxh[size_t(l)].data(), nrs[size_t(l)].data(), B, ly.out,
                                      gnw[size_t(l)], gnb[size_t(l)]);
                for (int64_t i = 0; i < m; ++i) {
                    float v = dz[size_t(i)];
                    if (ly.act.kind != Act::identity) {
                        const float zy = act_backward_needs_input(ly.act.kind) ? z[size_t(l)][size_t(i)] : yv[size_t(i)];
                        v = act_backward_scalar(v, zy, zy, ly.act);
                    }
                    dz[size_t(i)] = v;
                }
                if (nm.kind != Norm::none && nm.before_act)
                    ref_norm_backward(nm, dz.data(), nxh[size_t(l)].data(), nrs[size_t(l)].data(), B, ly.out,
                                      gnw[size_t(l)], gnb[size_t(l)]);
                std::vector<float> da(static_cast<size_t>(B * ly.in));
                if (l > 0) naive_gemm(false, false, B, ly.in, ly.out, dz.data(), ly.out, ly.weight, ly.in, da.data(), nullptr);
                gw[size_t(l)].resize(size_t(ly.in * ly.out));
                naive_gemm(true, false, ly.out, ly.in, B, dz.data(), ly.out, a[size_t(l)].data(), ly.in, gw[size_t(l)].data(), nullptr);
                gb[size_t(l)].resize(size_t(ly.out));
                for (int64_t c = 0; c < ly.out; ++c) {
                    double s = 0.0;
                    for (int64_t b = 0; b < B; ++b) s += double(dz[size_t(b * ly.out + c)]);
                    gb[size_t(l)][size_t(c)] = float(s);
                }
                dz = da;
            }
            for (int64_t l = 0; l < L; ++l) {
                const FitLayer& ly = layers[size_t(l)];
                if (!ly.frozen_weight)
                    for (int64_t i = 0; i < ly.in * ly.out; ++i) {
                        float d0 = 0, d1 = 0, d2 = 0;
                        optim_step_scalar(opt.optim.kind, ly.weight[i], gw[size_t(l)][size_t(i)] + sc.l2 * ly.weight[i],
                                          ly.wstate[0] ? ly.wstate[0][i] : d0, ly.wstate[1] ? ly.wstate[1][i] : d1,
                                          ly.wstate[2] ? ly.wstate[2][i] : d2, sc.c);
                    }
                if (ly.bias && !ly.frozen_bias)
                    for (int64_t i = 0; i < ly.out; ++i) {
                        float d0 = 0, d1 = 0, d2 = 0;
                        optim_step_scalar(opt.optim.kind, ly.bias[i], gb[size_t(l)][size_t(i)],
                                          ly.bstate[0] ? ly.bstate[0][i] : d0, ly.bstate[1] ? ly.bstate[1][i] : d1,
                                          ly.bstate[2] ? ly.bstate[2][i] : d2, sc.c);
                    }
                const FitNorm& nm = ly.norm;
                for (int which = 0; which < 2 && nm.kind != Norm::none; ++which) {
                    float* p = which ? nm.bias : nm.weight;
                    if (!p || (which ? nm.frozen_bias : nm.frozen_weight)) continue;
                    float* const* st = which ? nm.bstate : nm.wstate;
                    const std::vector<float>& g = which ? gnb[size_t(l)] : gnw[size_t(l)];
                    for (int64_t i = 0; i < ly.out; ++i) {
                        float d0 = 0, d1 = 0, d2 = 0;
                        optim_step_scalar(opt.optim.kind, p[i], g[size_t(i)], st[0] ? st[0][i] : d0,
                                          st[1] ? st[1][i] : d1, st[2] ? st[2][i] : d2, sc.c);
                    }
                }
            }
            ++step;
            ++res.steps;
            epoch_sum += loss * double(B);
            used += B;
        }
        res.epoch_loss.push_back(used ? epoch_sum / double(used) : NAN);
    }
    return res;
}

// ---- a net: owned parameters and state, two copies (emulated / reference) ------------------------

// A norm layer of a Spec: kind none, or LayerNorm / BatchNorm1d with its options.
struct NormSpec {
    Norm kind = Norm::none;
    bool before = true, affine = true, frozen_weight = false;
    // BatchNorm1d: training mode (batch statistics), running statistics, momentum (or None)
    bool batch_stats = true, running = true, cumulative = false;
    double momentum = 0.1;
    int64_t count0 = 0;
};

struct Spec {
    std::vector<int64_t> widths;
    std::vector<ActParams> acts;
    std::vector<float> drops;
    bool bias = true;
    std::vector<bool> frozen_w, frozen_b;
    std::vector<NormSpec> norms;  // per layer, or empty: none
};

struct Owned {
    std::vector<std::vector<float>> W, b, ws[3], bs[3];
    // norm layers: weight, bias, running mean / variance, optimizer state (empty where none)
    std::vector<std::vector<float>> nw, nb, rm, rv, nws[3], nbs[3];
    std::vector<FitLayer> layers(const Spec& sp, Optim kind, bool amsgrad, bool centered,
                                 double momentum, double init_acc) {
        std::vector<FitLayer> out;
        const bool use[3] = {kind != Optim::sgd || momentum != 0.0,
                             kind == Optim::adam || kind == Optim::adamw || (kind == Optim::rmsprop && momentum > 0.0),
                             ((kind == Optim::adam || kind == Optim::adamw) && amsgrad) || (kind == Optim::rmsprop && centered)};
        for (size_t l = 0; l < W.size(); ++l) {
            FitLayer ly;
            ly.weight = W[l].data();
            ly.bias = sp.bias ? b[l].data() : nullptr;
            ly.in = sp.widths[l];
            ly.out = sp.widths[l + 1];
            ly.act = sp.acts[l];
            ly.dropout = sp.drops.empty() ? 0.0f : sp.drops[l];
            ly.frozen_weight = !sp.frozen_w.empty() && sp.frozen_w[l];
            ly.frozen_bias = !sp.frozen_b.empty() && sp.frozen_b[l];
            for (int k = 0; k < 3; ++k) {
                if (!use[k]) continue;
                if (ws[k][l].empty()) {
                    const float v = (kind == Optim::adagrad && k == 0) ? float(init_acc) : 0.0f;
                    ws[k][l].assign(W[l].size(), v);
                    bs[k][l].assign(b[l].size(), v);
                }
                ly.wstate[k] = ws[k][l].data();
                if (ly.bias) ly.bstate[k] = bs[k][l].data();
            }
            const NormSpec ns = sp.norms.empty() ? NormSpec{} : sp.norms[l];
            if (ns.kind != Norm::none) {
                FitNorm& nm = ly.norm;
                nm.kind = ns.kind;
                nm.before_act = ns.before;
                nm.eps = 1e-5f;
                if (ns.affine) {
                    nm.weight = nw[l].data();
                    nm.bias = nb[l].data();
                    nm.frozen_weight = ns.frozen_weight;
                    for (int k = 0; k < 3; ++k) {
                        if (!use[k]) continue;
                        if (nws[k][l].empty()) {
                            const float v = (kind == Optim::adagrad && k == 0) ? float(init_acc) : 0.0f;
                            nws[k][l].assign(nw[l].size(), v);
                            nbs[k][l].assign(nb[l].size(), v);
                        }
                        nm.wstate[k] = nws[k][l].data();
                        nm.bstate[k] = nbs[k][l].data();
                    }
                }
                if (ns.kind == Norm::batch) {
                    nm.batch_stats = ns.batch_stats;
                    if (ns.running) {
                        nm.running_mean = rm[l].data();
                        nm.running_var = rv[l].data();
                    }
                    nm.momentum = ns.momentum;
                    nm.cumulative = ns.cumulative;
                    nm.count0 = ns.count0;
                }
            }
            out.push_back(ly);
        }
        return out;
    }
};

static Owned make_owned(const Spec& sp, std::mt19937& rng, float scale = 0.5f) {
    Owned o;
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const size_t L = sp.widths.size() - 1;
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    for (int k = 0; k < 3; ++k) { o.ws[k].assign(L, {}); o.bs[k].assign(L, {}); o.nws[k].assign(L, {}); o.nbs[k].assign(L, {}); }
    for (size_t l = 0; l < L; ++l) {
        o.W.emplace_back(size_t(sp.widths[l] * sp.widths[l + 1]));
        for (auto& v : o.W.back()) v = scale * nd(rng) / std::sqrt(float(sp.widths[l]));
        o.b.emplace_back(size_t(sp.widths[l + 1]));
        for (auto& v : o.b.back()) v = 0.1f * nd(rng);
        const size_t C = sp.norms.empty() || sp.norms[l].kind == Norm::none ? 0 : size_t(sp.widths[l + 1]);
        o.nw.emplace_back(C);
        for (auto& v : o.nw.back()) v = 1.0f + 0.2f * nd(rng);
        o.nb.emplace_back(C);
        for (auto& v : o.nb.back()) v = 0.1f * nd(rng);
        o.rm.emplace_back(C);
        for (auto& v : o.rm.back()) v = 0.2f * nd(rng);
        o.rv.emplace_back(C);
        for (auto& v : o.rv.back()) v = 0.5f + ud(rng);
    }
    return o;
}

static double max_rel(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    double worst = 0.0;
    for (size_t l = 0; l < a.size(); ++l) {
        if (a[l].size() != b[l].size()) return INFINITY;
        for (size_t i = 0; i < a[l].size(); ++i) {
            const double x = a[l][i], y = b[l][i];
            if (x != x || y != y) { if ((x != x) != (y != y)) return INFINITY; continue; }
            worst = std::max(worst, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
        }
    }
    return worst;
}

struct Case {
    std::string name;
    Spec spec;
    int64_t n = 11, epochs = 1, bs = 4;
    Loss loss = Loss::mse;
    float loss_p0 = 1.0f;
    OptimOptions optim;
    bool weights = false, class_weight = false, pos_weight = false, perm = true, perm_per_epoch = false;
    bool drop_last = false, allow_nonfinite = false, poison = false, sched = false, sklearn = false;
    float smoothing = 0.0f;
    int64_t step0 = 0;
    double tol = 2e-5;
};

static void run_case(const Case& cs, std::mt19937& rng, bool host_gemm = false) {
    const Spec& sp = cs.spec;
    const int64_t din = sp.widths.front(), dout = sp.widths.back(), n = cs.n;
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    std::vector<float> X(static_cast<size_t>(n * din)), Y(static_cast<size_t>(n * dout)), sw(static_cast<size_t>(n)), cw(static_cast<size_t>(dout)), pw(static_cast<size_t>(dout));
    std::vector<int64_t> Yi(static_cast<size_t>(n));
    for (auto& v : X) v = nd(rng);
    for (auto& v : Y) v = cs.loss == Loss::bce_with_logits ? ud(rng) : nd(rng);
    for (int64_t i = 0; i < n; ++i) Yi[size_t(i)] = int64_t(rng() % uint64_t(dout));
    if (cs.loss == Loss::cross_entropy && n > 3) Yi[2] = -100;  // one ignored row
    for (auto& v : sw) v = 0.25f + ud(rng);
    for (auto& v : cw) v = 0.5f + ud(rng);
    for (auto& v : pw) v = 0.5f + 2.0f * ud(rng);
    if (cs.poison) X[size_t((n / 2) * din)] = INFINITY;
    const int64_t plen = cs.perm_per_epoch ? cs.epochs * n : n;
    std::vector<int64_t> perm(static_cast<size_t>(plen));
    for (int64_t e = 0; e < plen / n; ++e) {
        std::vector<int64_t> p(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
        std::shuffle(p.begin(), p.end(), rng);
        std::copy(p.begin(), p.end(), perm.begin() + e * n);
    }
    const int64_t nb = cs.drop_last ? n / cs.bs : cdiv(n, cs.bs);
    std::vector<float> lrs(static_cast<size_t>(cs.epochs * nb)), moms(static_cast<size_t>(cs.epochs * nb));
    for (size_t k = 0; k < lrs.size(); ++k) {
        lrs[k] = float(cs.optim.lr * (1.0 + 0.5 * std::sin(double(k))));
        moms[k] = float(cs.optim.kind == Optim::adam || cs.optim.kind == Optim::adamw ? 0.85 + 0.01 * double(k % 5)
                                                                                       : 0.5 + 0.05 * double(k % 5));
    }
    FitOptions o;
    o.batch_size = cs.bs;
    o.drop_last = cs.drop_last;
    o.perm = cs.perm ? perm.data() : nullptr;
    o.perm_per_epoch = cs.perm_per_epoch;
    o.loss.kind = cs.loss;
    o.loss.p0 = cs.loss_p0;
    o.label_smoothing = cs.smoothing;
    o.class_weight = cs.class_weight ? cw.data() : nullptr;
    o.pos_weight = cs.pos_weight ? pw.data() : nullptr;
    o.optim = cs.optim;
    o.step0 = cs.step0;
    o.dropout_seed = 1234 + uint64_t(cases);
    o.allow_nonfinite = cs.allow_nonfinite;
    if (cs.sched) {
        o.lr_schedule = lrs.data();
        o.lr_schedule_len = int64_t(lrs.size());
        o.momentum_schedule = moms.data();
        o.momentum_schedule_len = int64_t(moms.size());
    }
    if (cs.sklearn) {
        o.loss_sum_outputs = true;
        o.loss_scale = 0.5f;
        o.l2_weights = 0.01f;
        o.adam_eps_before_correction = true;
    }
    FitData d;
    d.n = n;
    d.X = X.data();
    if (cs.loss == Loss::cross_entropy) d.Yi = Yi.data(); else d.Y = Y.data();
    d.sample_weight = cs.weights ? sw.data() : nullptr;

    Owned gpu = make_owned(sp, rng), ref = gpu;
    const Owned start = gpu;
    const bool mom = cs.optim.momentum != 0.0 || cs.sched;
    const double init = cs.optim.initial_accumulator_value;
    std::vector<FitLayer> lg = gpu.layers(sp, cs.optim.kind, cs.optim.amsgrad, cs.optim.centered, mom ? 0.5 : 0.0, init);
    std::vector<FitLayer> lr = ref.layers(sp, cs.optim.kind, cs.optim.amsgrad, cs.optim.centered, mom ? 0.5 : 0.0, init);
    EmuOps ops;
    ops.host_gemm = host_gemm;
    const FitResult rg = fk::fit(ops, lg, d, cs.epochs, o);
    const FitResult rr = ref_fit(lr, d, cs.epochs, o);
    double wl = std::max(max_rel(gpu.W, ref.W), max_rel(gpu.b, ref.b));
    for (int k = 0; k < 3; ++k) wl = std::max(wl, std::max(max_rel(gpu.ws[k], ref.ws[k]), max_rel(gpu.bs[k], ref.bs[k])));
    // norm layers: weight, bias, their optimizer state, the running statistics
    for (auto m : {&Owned::nw, &Owned::nb, &Owned::rm, &Owned::rv}) wl = std::max(wl, max_rel(gpu.*m, ref.*m));
    for (int k = 0; k < 3; ++k) wl = std::max(wl, std::max(max_rel(gpu.nws[k], ref.nws[k]), max_rel(gpu.nbs[k], ref.nbs[k])));
    bool ok = !ops.ws_short && wl <= cs.tol && rg.steps == rr.steps &&
              rg.stopped_nonfinite == rr.stopped_nonfinite && rg.bad_epoch == rr.bad_epoch &&
              rg.bad_batch == rr.bad_batch && rg.epoch_loss.size() == rr.epoch_loss.size();
    double ll = 0.0;
    for (size_t e = 0; ok && e < rg.epoch_loss.size(); ++e) {
        const double a = rg.epoch_loss[e], b = rr.epoch_loss[e];
        if ((a != a) != (b != b)) ok = false;
        else if (a == a) ll = std::max(ll, std::fabs(a - b) / std::max(1.0, std::fabs(b)));
    }
    ok = ok && ll <= cs.tol;
    // A BatchNorm1d training on batch statistics with running ones moved them.
    bool updates = false;
    for (const NormSpec& ns : sp.norms) updates |= ns.kind == Norm::batch && ns.batch_stats && ns.running;
    const double moved = max_rel(gpu.rm, start.rm) + max_rel(gpu.rv, start.rv);
    if (updates && !cs.poison) ok = ok && moved > 1e-4;
    if (!updates) ok = ok && moved == 0.0;
    // Inference (mlp_fit_forward's host code) on the trained emulated net: eval mode, in chunks of
    // 5 rows (one chunk where a BatchNorm1d has no running statistics), against the reference.
    double fl = 0.0;
    if (!sp.norms.empty() && !cs.poison) {
        std::vector<float> out(static_cast<size_t>(n * dout), NAN);
        fk::forward(ops, out.data(), lg, X.data(), n, 5);
        const std::vector<float> want = ref_forward(lg, X.data(), n);
        fl = max_rel({out}, {want});
        ok = ok && fl <= cs.tol;
    }
    char buf[200];
    std::snprintf(buf, sizeof buf, " (params %.2g, loss %.2g, forward %.2g, steps %lld/%lld, launches %lld, splitk %lld)", wl, ll, fl,
                  (long long)rg.steps, (long long)rr.steps, (long long)ops.launches, (long long)ops.splitk);
    expect(ok, cs.name + buf);
}

static OptimOptions optim_of(Optim k, int variant) {
    OptimOptions o;
    o.kind = k;
    switch (k) {
        case Optim::sgd: o.lr = 0.1; o.momentum = variant ? 0.9 : 0.0; o.nesterov = variant == 1;
            o.dampening = variant == 2 ? 0.1 : 0.0; o.weight_decay = variant ? 1e-3 : 0.0; break;
        case Optim::adam: o.lr = 0.01; o.amsgrad = variant == 1; o.weight_decay = variant == 2 ? 1e-2 : 0.0; break;
        case Optim::adamw: o.lr = 0.01; o.weight_decay = 0.05; o.amsgrad = variant == 2; break;
        case Optim::rmsprop: o.lr = 0.005; o.centered = variant != 0; o.momentum = variant == 2 ? 0.5 : 0.0; break;
        case Optim::adagrad: o.lr = 0.05; o.lr_decay = variant ? 0.01 : 0.0; o.initial_accumulator_value = 0.1; break;
    }
    o.maximize = variant == 3;
    return o;
}

int main() {
    std::mt19937 rng(7);
    // The dropout kernel's mask is dropout.h's hash (the CPU trainer's): every element, short grid.
    {
        const int64_t n = 1000;
        std::vector<float> y(static_cast<size_t>(n)), out(static_cast<size_t>(n)), mask(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) y[size_t(i)] = float(i) - 500.0f;
        for (float p : {0.0f, 0.25f, 0.5f, 1.0f}) {
            emu::launch(dim3(2), dim3(fk::kThreads), [&] { fk::fit_dropout_kernel(out.data(), mask.data(), y.data(), n, p, 99, 7, 2); });
            bool ok = true;
            int64_t kept = 0;
            for (int64_t i = 0; i < n; ++i) {
                const bool keep = dropout_uniform(99, 7, 2, i) >= p;
                kept += keep;
                ok &= mask[size_t(i)] == (keep ? dropout_keep_scale(p) : 0.0f) && out[size_t(i)] == y[size_t(i)] * mask[size_t(i)];
            }
            if (p == 0.5f) ok &= kept > 430 && kept < 570;
            expect(ok, "dropout mask = dropout_uniform, p=" + std::to_string(p));
        }
    }
    const ActParams acts[kActCount] = {{Act::identity}, {Act::relu}, {Act::tanh}, {Act::sigmoid}, {Act::gelu},
                                       {Act::gelu_tanh}, {Act::silu}, {Act::leaky_relu, 0.1f}, {Act::elu, 1.0f},
                                       {Act::softplus, 1.0f, 20.0f}, {Act::hardtanh, -1.0f, 1.0f}};
    const Loss losses[kLossCount] = {Loss::mse, Loss::cross_entropy, Loss::bce_with_logits, Loss::l1, Loss::huber, Loss::smooth_l1};
    // The full product on a small net (products on the host, see EmuOps::host_gemm): 5 -> 6 -> 4, hidden activation A, last layer identity
    // (and A itself on the last layer for the element-wise losses), 7 rows in batches of 4.
    int combo = 0;
    for (int a = 0; a < kActCount; ++a)
        for (int li = 0; li < kLossCount; ++li)
            for (int k = 0; k < kOptimCount; ++k, ++combo) {
                Case cs;
                cs.spec.widths = {5, 6, 4};
                cs.n = 7;
                const bool last_act = losses[li] != Loss::cross_entropy && combo % 2 == 0;
                cs.spec.acts = {acts[a], last_act ? acts[a] : ActParams{}};
                cs.loss = losses[li];
                cs.loss_p0 = losses[li] == Loss::huber ? 0.7f : losses[li] == Loss::smooth_l1 ? 0.5f : 1.0f;
                cs.optim = optim_of(Optim(k), combo % 3);
                cs.name = std::string("fit ") + kActNames[a] + (last_act ? "+last" : "") + " loss=" + std::to_string(li) +
                          " optim=" + std::to_string(k) + " variant=" + std::to_string(combo % 3);
                run_case(cs, rng, /*host_gemm=*/true);
            }
    // Dropout (hidden and output), several epochs and a per-epoch order.
    for (int k = 0; k < kOptimCount; ++k) {
        Case cs;
        cs.spec.widths = {6, 9, 7, 3};
        cs.spec.acts = {{Act::relu}, {Act::gelu}, {}};
        cs.spec.drops = {0.3f, 0.5f, 0.2f};
        cs.optim = optim_of(Optim(k), 1);
        cs.epochs = 3;
        cs.perm_per_epoch = true;
        cs.n = 13;
        cs.bs = 5;
        cs.step0 = 4;
        cs.name = "dropout 3 layers optim=" + std::to_string(k);
        run_case(cs, rng);
    }
    // Weights: sample_weight (every loss), class weights + label smoothing, pos_weight.
    for (int li = 0; li < kLossCount; ++li) {
        Case cs;
        cs.spec.widths = {4, 5, 3};
        cs.spec.acts = {{Act::tanh}, {}};
        cs.loss = losses[li];
        cs.weights = true;
        cs.class_weight = cs.loss == Loss::cross_entropy;
        cs.pos_weight = cs.loss == Loss::bce_with_logits;
        cs.smoothing = cs.loss == Loss::cross_entropy ? 0.1f : 0.0f;
        cs.optim = optim_of(Optim::adam, 0);
        cs.epochs = 2;
        cs.name = "weighted loss=" + std::to_string(li);
        run_case(cs, rng);
    }
    {
        Case cs;
        cs.spec.widths = {4, 5, 3};
        cs.spec.acts = {{Act::silu}, {}};
        cs.loss = Loss::cross_entropy;
        cs.class_weight = true;
        cs.smoothing = 0.2f;
        cs.optim = optim_of(Optim::sgd, 1);
        cs.name = "cross_entropy class weights + smoothing, unweighted rows";
        run_case(cs, rng);
    }
    // lr and momentum schedules, frozen parameters, no bias, scikit-learn conventions.
    for (int k = 0; k < kOptimCount; ++k) {
        Case cs;
        cs.spec.widths = {3, 8, 2};
        cs.spec.acts = {{Act::elu, 1.0f}, {}};
        cs.optim = optim_of(Optim(k), 1);
        cs.sched = true;
        cs.epochs = 2;
        cs.name = "schedules optim=" + std::to_string(k);
        run_case(cs, rng);
    }
    {
        Case cs;
        cs.spec.widths = {3, 8, 6, 2};
        cs.spec.acts = {{Act::tanh}, {Act::relu}, {}};
        cs.spec.frozen_w = {true, false, false};
        cs.spec.frozen_b = {false, true, false};
        cs.optim = optim_of(Optim::adamw, 0);
        cs.name = "frozen weight / bias";
        run_case(cs, rng);
        cs.spec.frozen_w = {};
        cs.spec.frozen_b = {};
        cs.spec.bias = false;
        cs.name = "no bias";
        run_case(cs, rng);
    }
    for (Optim k : {Optim::sgd, Optim::adam}) {
        Case cs;
        cs.spec.widths = {4, 7, 3};
        cs.spec.acts = {{Act::sigmoid}, {}};
        cs.optim = optim_of(k, 0);
        cs.sklearn = true;
        cs.epochs = 2;
        cs.name = std::string("sklearn conventions optim=") + (k == Optim::sgd ? "sgd" : "adam");
        run_case(cs, rng);
        cs.loss = Loss::cross_entropy;
        cs.name += " cross_entropy";
        run_case(cs, rng);
    }
    // Orders and batching: identity order, drop_last, a batch larger than n, several epochs.
    for (int v = 0; v < 4; ++v) {
        Case cs;
        cs.spec.widths = {3, 4, 2};
        cs.spec.acts = {{Act::softplus, 2.0f, 20.0f}, {}};
        cs.optim = optim_of(Optim::rmsprop, 2);
        cs.perm = v != 0;
        cs.drop_last = v == 1 || v == 3;
        cs.bs = v == 2 ? 50 : v == 3 ? 20 : 4;
        cs.epochs = 2;
        cs.name = "orders/batching variant " + std::to_string(v);
        run_case(cs, rng);
    }
    // A non-finite loss stops training (or not, with allow_nonfinite), at the right batch.
    for (bool allow : {false, true}) {
        Case cs;
        cs.spec.widths = {3, 4, 2};
        cs.spec.acts = {{Act::tanh}, {}};
        cs.optim = optim_of(Optim::adam, 0);
        cs.poison = true;
        cs.epochs = 2;
        cs.allow_nonfinite = allow;
        cs.tol = allow ? INFINITY : 2e-5;  // with allow the weights turn NaN: compare the bookkeeping
        cs.name = std::string("non-finite loss, allow_nonfinite=") + (allow ? "1" : "0");
        run_case(cs, rng);
    }
    // Wide enough for the GEMM plans to split K (dW with K = B = 300) and to tile 128x128.
    {
        Case cs;
        cs.spec.widths = {40, 130, 3};
        cs.spec.acts = {{Act::gelu_tanh}, {}};
        cs.optim = optim_of(Optim::adam, 1);
        cs.n = 300;
        cs.bs = 300;
        cs.tol = 1e-4;
        cs.name = "split-K / large tiles";
        run_case(cs, rng);
    }
    // Norm layers (LayerNorm / BatchNorm1d, mlp_fit.cpp's FitNorm): before / after the activation,
    // affine or not, BatchNorm1d's running statistics with momentum and momentum=None, eval mode
    // (running statistics) while training, no running statistics, frozen norm weight, dropout,
    // a non-finite stop (no running-statistics update after it), cross-entropy, split-K.
    {
        auto bn = [](bool before) { NormSpec ns; ns.kind = Norm::batch; ns.before = before; return ns; };
        auto ln = [](bool before, bool affine) { NormSpec ns; ns.kind = Norm::layer; ns.before = before; ns.affine = affine; return ns; };
        // A Linear bias right before a BatchNorm1d on batch statistics has a zero gradient up to
        // rounding (the batch mean removes it), which Adam-like rules amplify into updates of
        // rounding noise: those nets have no bias (as one writes them: Linear(bias=False)).
        struct NC { const char* name; std::vector<NormSpec> norms; std::vector<ActParams> acts; Optim k; bool bias = true; };
        NormSpec cum = bn(true); cum.cumulative = true; cum.count0 = 3;
        NormSpec eval = bn(false); eval.batch_stats = false;
        NormSpec norun = bn(true); norun.running = false;
        NormSpec noaff = bn(false); noaff.affine = false; noaff.momentum = 0.3;
        NormSpec frz = ln(true, true); frz.frozen_weight = true;
        const NC ncs[] = {
            {"LayerNorm before tanh", {ln(true, true), {}}, {{Act::tanh}, {}}, Optim::adam},
            {"LayerNorm after relu, no affine", {ln(false, false), {}}, {{Act::relu}, {}}, Optim::sgd},
            {"LayerNorm after gelu + on the last layer", {ln(false, true), ln(true, true)}, {{Act::gelu}, {}}, Optim::adamw},
            {"BatchNorm1d before gelu (train, running stats)", {bn(true), {}}, {{Act::gelu}, {}}, Optim::adam, false},
            {"BatchNorm1d before gelu (train, running stats), biases", {bn(true), {}}, {{Act::gelu}, {}}, Optim::sgd},
            {"BatchNorm1d after silu (train, running stats)", {bn(false), {}}, {{Act::silu}, {}}, Optim::rmsprop},
            {"BatchNorm1d momentum=None (cumulative)", {cum, {}}, {{Act::tanh}, {}}, Optim::sgd},
            {"BatchNorm1d eval mode while training", {eval, {}}, {{Act::elu, 1.0f}, {}}, Optim::adam},
            {"BatchNorm1d without running stats", {norun, {}}, {{Act::relu}, {}}, Optim::adagrad},
            {"BatchNorm1d no affine, momentum 0.3, after relu", {noaff, {}}, {{Act::relu}, {}}, Optim::sgd},
            {"LayerNorm frozen weight", {frz, {}}, {{Act::sigmoid}, {}}, Optim::adamw},
        };
        for (const NC& nc : ncs) {
            Case cs;
            cs.spec.widths = {5, 7, 3};
            cs.spec.acts = nc.acts;
            cs.spec.norms = nc.norms;
            cs.spec.bias = nc.bias;
            cs.optim = optim_of(nc.k, 1);
            cs.epochs = 2;
            cs.n = 13;
            cs.bs = 5;  // batches of 5, 5, 3
            cs.name = std::string("norm: ") + nc.name;
            run_case(cs, rng);
        }
        // three layers, dropout, both norms, cross-entropy, per-epoch orders, step0
        Case cs;
        cs.spec.widths = {6, 9, 8, 4};
        cs.spec.acts = {{Act::relu}, {Act::gelu_tanh}, {}};
        cs.spec.drops = {0.3f, 0.2f, 0.0f};
        cs.spec.norms = {bn(true), ln(false, true), {}};
        cs.loss = Loss::cross_entropy;
        cs.optim = optim_of(Optim::adam, 0);
        cs.epochs = 3;
        cs.perm_per_epoch = true;
        cs.n = 14;
        cs.bs = 6;
        cs.step0 = 2;
        cs.spec.bias = false;
        cs.name = "norm: BatchNorm1d + LayerNorm + dropout, cross_entropy";
        run_case(cs, rng);
        // a non-finite loss: the running statistics stop with the CPU's (the bad batch's forward
        // updates them, no later one does)
        Case nf;
        nf.spec.widths = {3, 4, 2};
        nf.spec.acts = {{Act::tanh}, {}};
        nf.spec.norms = {bn(true), {}};
        nf.optim = optim_of(Optim::adam, 0);
        nf.poison = true;
        nf.spec.bias = false;
        nf.epochs = 2;
        nf.name = "norm: BatchNorm1d, non-finite loss stops training";
        run_case(nf, rng);
        // split-K and 128x128 tiles with a BatchNorm1d and a LayerNorm
        Case big;
        big.spec.widths = {40, 130, 3};
        big.spec.acts = {{Act::gelu_tanh}, {}};
        big.spec.norms = {bn(true), ln(true, true)};
        big.optim = optim_of(Optim::adam, 1);
        big.n = 300;
        big.bs = 300;
        big.tol = 1e-4;
        big.spec.bias = false;
        big.name = "norm: split-K / large tiles with BatchNorm1d";
        run_case(big, rng);
    }
    std::printf("%d of %d cases agree\n", cases - failures, cases);
    return failures ? 1 : 0;
}
