// fastmlp element-wise activations: the one home of their numeric rules.
//
// Every path uses these definitions: the CPU element-wise kernels and the GEMM epilogue (their
// SIMD versions must agree with these within float32 rounding, and a test checks they do), the
// fused trainers (CPU small path, CPU GEMM path, CUDA) and the CUDA kernels (the functions are
// __host__ __device__ under nvcc). Semantics are PyTorch's:
//
//   kind        forward y = f(z)                                  backward dz = dy * f'(z)
//   identity    z                                                 1
//   relu        max(z, 0); NaN stays NaN                          z > 0
//   tanh        tanh(z)                                           1 - y^2
//   sigmoid     1 / (1 + exp(-z))                                 y (1 - y)
//   gelu        z Phi(z) = 0.5 z (1 + erf(z / sqrt 2))            Phi(z) + z phi(z)
//   gelu_tanh   0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))   d/dz of that
//   silu        z sigmoid(z)                                      s (1 + z (1 - s)), s = sigmoid(z)
//   leaky_relu  z > 0 ? z : a z               (a = negative_slope) z > 0 ? 1 : a
//   elu         z > 0 ? z : a (exp(z) - 1)    (a = alpha)          z > 0 ? 1 : a exp(z)
//   softplus    b z > t ? z : log1p(exp(b z)) / b  (a = beta b, b = threshold t; named p0, p1)
//                                                                 b z > t ? 1 : sigmoid(b z)
//   hardtanh    min(max(z, p0), p1)                               p0 < z < p1 (0 at the edges)
//
// A backward takes the pre-activation z and the output y; act_backward_needs_input(kind) says
// whether z is read (otherwise callers may pass y for z, or null on the CPU paths that use y).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FASTMLP_HD __host__ __device__ __forceinline__
#else
#define FASTMLP_HD inline
#endif

namespace fastmlp {

enum class Act : int32_t {
    identity = 0,
    relu = 1,
    tanh = 2,
    sigmoid = 3,
    gelu = 4,
    gelu_tanh = 5,
    silu = 6,
    leaky_relu = 7,
    elu = 8,
    softplus = 9,
    hardtanh = 10,
};
constexpr int32_t kActCount = 11;

// An activation with its parameters (p0, p1 as in the table above; unused ones are ignored).
struct ActParams {
    Act kind = Act::identity;
    float p0 = 0.0f;
    float p1 = 0.0f;
};

FASTMLP_HD bool act_backward_needs_input(Act k) {
    return !(k == Act::identity || k == Act::relu || k == Act::tanh || k == Act::sigmoid);
}

FASTMLP_HD float act_sigmoid_scalar(float z) {
    // Stable for large |z|: exp of a non-positive number only.
    if (z >= 0.0f) {
        float e = expf(-z);
        return 1.0f / (1.0f + e);
    }
    float e = expf(z);
    return e / (1.0f + e);
}

FASTMLP_HD float act_forward_scalar(float z, ActParams p) {
    switch (p.kind) {
        case Act::identity: return z;
        case Act::relu: return z > 0.0f ? z : (z != z ? z : 0.0f);
        case Act::tanh: return tanhf(z);
        case Act::sigmoid: return act_sigmoid_scalar(z);
        case Act::gelu: return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
        case Act::gelu_tanh: {
            float u = 0.79788456080286536f * (z + 0.044715f * z * z * z);
            return 0.5f * z * (1.0f + tanhf(u));
        }
        case Act::silu: return z * act_sigmoid_scalar(z);
        case Act::leaky_relu: return z > 0.0f ? z : p.p0 * z;
        case Act::elu: return z > 0.0f ? z : p.p0 * expm1f(z);
        case Act::softplus: {
            float bz = p.p0 * z;
            return bz > p.p1 ? z : log1pf(expf(bz)) / p.p0;
        }
        case Act::hardtanh: return z < p.p0 ? p.p0 : (z > p.p1 ? p.p1 : z);
    }
    return z;
}

// dz = dy * f'(z); y = f(z) (read by relu, tanh, sigmoid; z read by the others).
FASTMLP_HD float act_backward_scalar(float dy, float z, float y, ActParams p) {
    switch (p.kind) {
        case Act::identity: return dy;
        case Act::relu: return y > 0.0f ? dy : 0.0f;
        case Act::tanh: return dy * (1.0f - y * y);
        case Act::sigmoid: return dy * (y * (1.0f - y));
        case Act::gelu: {
            float cdf = 0.5f * (1.0f + erff(z * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * z * z);
            return dy * (cdf + z * pdf);
        }
        case Act::gelu_tanh: {
            const float k = 0.79788456080286536f, c = 0.044715f;
            float u = k * (z + c * z * z * z);
            float t = tanhf(u);
            float du = k * (1.0f + 3.0f * c * z * z);
            return dy * (0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du);
        }
        case Act::silu: {
            float s = act_sigmoid_scalar(z);
            return dy * (s * (1.0f + z * (1.0f - s)));
        }
        case Act::leaky_relu: return z > 0.0f ? dy : dy * p.p0;
        case Act::elu: return z > 0.0f ? dy : dy * p.p0 * expf(z);
        case Act::softplus: {
            float bz = p.p0 * z;
            return bz > p.p1 ? dy : dy * act_sigmoid_scalar(bz);
        }
        case Act::hardtanh: return (z > p.p0 && z < p.p1) ? dy : 0.0f;
    }
    return dy;
}

}  // namespace fastmlp
