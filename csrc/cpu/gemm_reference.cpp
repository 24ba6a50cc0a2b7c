// The plain reference GEMM: the contract of gemm.h in its simplest form. Single thread, float
// accumulation in K order. Tests compare the fast path against float64 numpy, and this against both.
#include "fastmlp/gemm.h"

namespace fastmlp {

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, GemmEpilogue epi) {
    // A (M,K) or (K,M); B (K,N) or (N,K); C (M,N)
    for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
            float acc = 0.0f;
            for (int64_t p = 0; p < K; ++p) {
                const float a = trans_a ? A[p * lda + i] : A[i * lda + p];
                const float b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
                acc += a * b;
            }
            float v = alpha * acc;
            if (beta != 0.0f) v += beta * C[i * ldc + j];
            if (epi.bias) v += epi.bias[j];
            if (epilogue_relu(epi)) v = v > 0.0f ? v : (v != v ? v : 0.0f);
            else if (epilogue_tile_act(epi)) {
                if (epi.pre_act) epi.pre_act[i * ldc + j] = v;
                v = act_forward_scalar(v, epi.act);
            }
            C[i * ldc + j] = v;
        }
    }
}

}  // namespace fastmlp
