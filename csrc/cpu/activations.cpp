// Element-wise activations and row-wise softmax / log_softmax on the CPU: the driver (ISA
// dispatch, threads) and the generic kernels (activation.h's scalar rules in loops), plus the
// plain references. The SIMD kernels are activations_{avx2,avx512}.cpp over activations_simd.h.
#include "fastmlp/activations.h"

#include <algorithm>
#include <cmath>

#include "activations_internal.h"
#include "fastmlp/cpu_features.h"
#include "omp_team.h"

namespace fastmlp {

namespace act_detail {
namespace {

void fwd_generic(float* out, const float* z, int64_t n, ActParams p) {
    for (int64_t i = 0; i < n; ++i) out[i] = act_forward_scalar(z[i], p);
}
void bwd_generic(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                 ActParams p) {
    if (act_backward_needs_input(p.kind))
        for (int64_t i = 0; i < n; ++i) dz[i] = act_backward_scalar(dy[i], z[i], z[i], p);
    else
        for (int64_t i = 0; i < n; ++i) dz[i] = act_backward_scalar(dy[i], y[i], y[i], p);
}
void tile_generic(float* c, int64_t ldc, int64_t m, int64_t n, ActParams p) {
    for (int64_t i = 0; i < m; ++i) fwd_generic(c + i * ldc, c + i * ldc, n, p);
}
void softmax_generic(float* out, const float* x, int64_t rows, int64_t cols, bool log) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* o = out + r * cols;
        float mx = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) mx = xr[j] > mx ? xr[j] : mx;
        float s = 0.0f;
        for (int64_t j = 0; j < cols; ++j) {
            const float e = expf(xr[j] - mx);
            if (!log) o[j] = e;
            s += e;
        }
        if (log) {
            const float ls = float(std::log(double(s)));
            for (int64_t j = 0; j < cols; ++j) o[j] = (xr[j] - mx) - ls;
        } else {
            const float inv = 1.0f / s;
            for (int64_t j = 0; j < cols; ++j) o[j] = o[j] * inv;
        }
    }
}
void softmax_backward_generic(float* dx, const float* g, const float* y, int64_t rows,
                              int64_t cols, bool log) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* gr = g + r * cols;
        const float* yr = y + r * cols;
        float* d = dx + r * cols;
        float s = 0.0f;
        if (log) {
            for (int64_t j = 0; j < cols; ++j) s += gr[j];
            for (int64_t j = 0; j < cols; ++j) d[j] = gr[j] - expf(yr[j]) * s;
        } else {
            for (int64_t j = 0; j < cols; ++j) s += gr[j] * yr[j];
            for (int64_t j = 0; j < cols; ++j) d[j] = yr[j] * (gr[j] - s);
        }
    }
}

}  // namespace

const ActKernels& act_kernels_generic() {
    static const ActKernels k = {"generic", &fwd_generic, &bwd_generic, &tile_generic,
                                 &softmax_generic, &softmax_backward_generic};
    return k;
}

}  // namespace act_detail

namespace {

using act_detail::ActKernels;

const ActKernels& kernels() {
#if defined(FASTMLP_HAVE_X86_KERNELS)
    const Isa isa = current_isa();
    if (isa == Isa::avx512) return act_detail::act_kernels_avx512();
    if (isa == Isa::avx2) return act_detail::act_kernels_avx2();
#endif
    return act_detail::act_kernels_generic();
}

// Work per element in "flops" for threads_for(): the transcendental kinds cost ~30.
double cost(Act k) {
    switch (k) {
        case Act::identity:
        case Act::relu:
        case Act::leaky_relu:
        case Act::hardtanh: return 8.0;
        default: return 40.0;
    }
}

// Runs body(i0, i1) over [0, n) in contiguous pieces, one per thread (multiples of 64 elements).
// Element-wise results do not depend on where the pieces start.
template <class Body>
void split(int64_t n, double per_elem, Body&& body) {
    const int nt = threads_for(double(n) * per_elem);
    if (nt <= 1) {
        body(int64_t(0), n);
        return;
    }
    const int64_t blocks = (n + 63) / 64;
#pragma omp parallel num_threads(nt)
    {
        const int tid = team_id(), nth = team_size();
        const int64_t i0 = std::min(n, blocks * tid / nth * 64);
        const int64_t i1 = std::min(n, blocks * (tid + 1) / nth * 64);
        if (i1 > i0) body(i0, i1);
    }
}

}  // namespace

void act_forward(float* out, const float* z, int64_t n, ActParams p) {
    // out (n), z (n)
    const ActKernels& k = kernels();
    split(n, cost(p.kind), [&](int64_t i0, int64_t i1) { k.forward(out + i0, z + i0, i1 - i0, p); });
}

void act_backward(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                  ActParams p) {
    // dz (n), dy (n), z (n) or y (n)
    const ActKernels& k = kernels();
    split(n, cost(p.kind), [&](int64_t i0, int64_t i1) {
        k.backward(dz + i0, dy + i0, z ? z + i0 : nullptr, y ? y + i0 : nullptr, i1 - i0, p);
    });
}

void act_forward_tile(float* c, int64_t ldc, int64_t m, int64_t n, ActParams p) {
    kernels().forward_tile(c, ldc, m, n, p);
}

void softmax_forward(float* out, const float* x, int64_t rows, int64_t cols, bool log) {
    // out (rows, cols), x (rows, cols)
    const ActKernels& k = kernels();
    const int nt = int(std::min<int64_t>(threads_for(double(rows) * double(cols) * 30.0), rows));
#pragma omp parallel for schedule(static) num_threads(std::max(nt, 1)) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r) k.softmax(out + r * cols, x + r * cols, 1, cols, log);
}

void softmax_backward(float* dx, const float* g, const float* y, int64_t rows, int64_t cols,
                      bool log) {
    // dx (rows, cols), g (rows, cols), y (rows, cols)
    const ActKernels& k = kernels();
    const int nt = int(std::min<int64_t>(threads_for(double(rows) * double(cols) * 10.0), rows));
#pragma omp parallel for schedule(static) num_threads(std::max(nt, 1)) if (nt > 1)
    for (int64_t r = 0; r < rows; ++r)
        k.softmax_backward(dx + r * cols, g + r * cols, y + r * cols, 1, cols, log);
}

// ---- references ------------------------------------------------------------------------------
void act_forward_reference(float* out, const float* z, int64_t n, ActParams p) {
    for (int64_t i = 0; i < n; ++i) out[i] = act_forward_scalar(z[i], p);
}

void act_backward_reference(float* dz, const float* dy, const float* z, const float* y, int64_t n,
                            ActParams p) {
    const bool nz = act_backward_needs_input(p.kind);
    for (int64_t i = 0; i < n; ++i) {
        const float v = nz ? z[i] : y[i];
        dz[i] = act_backward_scalar(dy[i], v, v, p);
    }
}

void softmax_forward_reference(float* out, const float* x, int64_t rows, int64_t cols, bool log) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        double mx = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, double(xr[j]));
        double s = 0.0;
        for (int64_t j = 0; j < cols; ++j) s += std::exp(double(xr[j]) - mx);
        for (int64_t j = 0; j < cols; ++j) {
            const double v = double(xr[j]) - mx;
            out[r * cols + j] = log ? float(v - std::log(s)) : float(std::exp(v) / s);
        }
    }
}

void softmax_backward_reference(float* dx, const float* g, const float* y, int64_t rows,
                                int64_t cols, bool log) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* gr = g + r * cols;
        const float* yr = y + r * cols;
        double s = 0.0;
        for (int64_t j = 0; j < cols; ++j) s += log ? double(gr[j]) : double(gr[j]) * double(yr[j]);
        for (int64_t j = 0; j < cols; ++j)
            dx[r * cols + j] = log ? float(double(gr[j]) - std::exp(double(yr[j])) * s)
                                   : float(double(yr[j]) * (double(gr[j]) - s));
    }
}

}  // namespace fastmlp
