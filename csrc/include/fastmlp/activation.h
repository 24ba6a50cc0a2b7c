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
//   gelu_tanh   0.5 z (1 + tanh(u)) = z sigmoid(2u),              s + 2 z s (1 - s) u'(z),
//               u = sqrt(2/pi) (z + 0.044715 z^3)                 s = sigmoid(2u)
//   silu        z sigmoid(z)                                      s (1 + z (1 - s)), s = sigmoid(z)
//   leaky_relu  z > 0 ? z : a z               (a = negative_slope) z > 0 ? 1 : a
//   elu         z > 0 ? z : a (exp(z) - 1)    (a = alpha)          z > 0 ? 1 : a exp(z)
//   softplus    b z > t ? z : log1p(exp(b z)) / b  (a = beta b, b = threshold t; named p0, p1)
//                                                                 b z > t ? 1 : sigmoid(b z)
//   hardtanh    min(max(z, p0), p1)                               p0 < z < p1 (0 at the edges)
//
// Accuracy: the rules are written so that float32 evaluation stays within a few ulp of the exact
// value everywhere (the SIMD kernels are checked against them and against float64). Where
// PyTorch's own formula cancels, the same function is written without the cancellation:
//   gelu: Phi(z) = 0.5 erfc(-z / sqrt 2) (0.5 (1 + erf) loses all digits for z < -5), evaluated
//         in double on the host (normcdff on the device); phi(z) from exp(-z^2/2) with z^2 split
//         exactly by an FMA (the rounding of z*z alone costs ~z^2 ulp);
//   gelu_tanh: 0.5 (1 + tanh(u)) = sigmoid(2u) (1 + tanh(u) cancels for u << 0);
//   silu and gelu_tanh gradients: 1 - s as sigmoid(-x), not 1 - s (which cancels for x >> 0).
// NaN follows PyTorch's vectorised CPU kernels (its scalar tail loop differs): at z = NaN the
// gradient of hardtanh is 0 and that of elu is NaN.
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
// The kinds' names, in enum order (the Python side reads them: fastmlp.ops.ACT_KINDS).
constexpr const char* kActNames[kActCount] = {"identity", "relu", "tanh", "sigmoid", "gelu",
                                              "gelu_tanh", "silu", "leaky_relu", "elu",
                                              "softplus", "hardtanh"};

// An activation with its parameters (p0, p1 as in the table above; unused ones are ignored).
struct ActParams {
    Act kind = Act::identity;
    float p0 = 0.0f;
    float p1 = 0.0f;
};

#if defined(__CUDACC__)
__host__ __device__ constexpr bool act_backward_needs_input(Act k) {
#else
constexpr bool act_backward_needs_input(Act k) {
#endif
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

// Phi(z), the standard normal CDF.
FASTMLP_HD float act_normal_cdf_scalar(float z) {
#if defined(__CUDA_ARCH__)
    return normcdff(z);
#else
    return float(0.5 * std::erfc(-double(z) * 0.70710678118654752440));
#endif
}

// phi(z) = exp(-z^2/2) / sqrt(2 pi), with z^2 = s + e exactly (e the FMA rounding error of s).
FASTMLP_HD float act_normal_pdf_scalar(float z) {
    const float s = z * z;
    const float e = fmaf(z, z, -s);
    const float b = expf(-0.5f * s);
    return (b - b * (0.5f * e)) * 0.39894228040143268f;
}

FASTMLP_HD float act_forward_scalar(float z, ActParams p) {
    switch (p.kind) {
        case Act::identity: return z;
        case Act::relu: return z > 0.0f ? z : (z != z ? z : 0.0f);
        case Act::tanh: return tanhf(z);
        case Act::sigmoid: return act_sigmoid_scalar(z);
        case Act::gelu: return z * act_normal_cdf_scalar(z);
        case Act::gelu_tanh: {
            float u2 = (z + 0.044715f * z * z * z) * (2.0f * 0.79788456080286536f);
            return z * act_sigmoid_scalar(u2);
        }
        case Act::silu: return z * act_sigmoid_scalar(z);
        case Act::leaky_relu: return z > 0.0f ? z : p.p0 * z;
        case Act::elu: return z > 0.0f ? z : (z != z ? z : p.p0 * expm1f(z));
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
        case Act::sigmoid: return (dy * (1.0f - y)) * y;  // PyTorch's order
        case Act::gelu: return dy * fmaf(z, act_normal_pdf_scalar(z), act_normal_cdf_scalar(z));
        case Act::gelu_tanh: {
            const float k = 0.79788456080286536f, c = 0.044715f;
            const float z2 = z * z;
            const float u2 = (z + c * z2 * z) * (2.0f * k);
            const float s = act_sigmoid_scalar(u2), om = act_sigmoid_scalar(-u2);  // om = 1 - s
            const float du = k * (1.0f + 3.0f * c * z2);
            return dy * (s + 2.0f * z * s * om * du);
        }
        case Act::silu: {
            const float s = act_sigmoid_scalar(z), om = act_sigmoid_scalar(-z);  // om = 1 - s
            return dy * (s * (1.0f + z * om));
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
