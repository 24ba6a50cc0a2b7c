// sgemm: the portable driver. Foundation version: op(B) packed once into a contiguous (K,N) panel,
// then each output row is an axpy sweep over that panel (vectorised by the compiler), OpenMP over
// row blocks of C. The packed, register-blocked BLIS path replaces the body of sgemm() (issue 3).
#include <algorithm>
#include <vector>

#include "fastmlp/cpu_features.h"
#include "fastmlp/gemm.h"

namespace fastmlp {

namespace {

inline float relu1(float v) { return v > 0.0f ? v : (v != v ? v : 0.0f); }

// One output row: crow (N) = alpha * arow(K) @ Bp (K,N) + beta * crow, epilogue.
void row_kernel(float* crow, const float* A, int64_t a_stride, const float* Bp, int64_t N,
                int64_t K, float alpha, float beta, GemmEpilogue epi, float* acc) {
    std::fill(acc, acc + N, 0.0f);
    for (int64_t p = 0; p < K; ++p) {
        const float a = A[p * a_stride];
        const float* b = Bp + p * N;
        for (int64_t j = 0; j < N; ++j) acc[j] += a * b[j];
    }
    for (int64_t j = 0; j < N; ++j) {
        float v = alpha * acc[j];
        if (beta != 0.0f) v += beta * crow[j];
        if (epi.bias) v += epi.bias[j];
        if (epi.relu) v = relu1(v);
        crow[j] = v;
    }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, GemmEpilogue epi) {
    if (M <= 0 || N <= 0) return;
    std::vector<float> Bp(size_t(K) * size_t(N));
    for (int64_t p = 0; p < K; ++p)
        for (int64_t j = 0; j < N; ++j) Bp[p * N + j] = trans_b ? B[j * ldb + p] : B[p * ldb + j];
    // Element (i, p) of op(A) is A[i*row + p*col].
    const int64_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;
    const int nt = threads_for(2.0 * double(M) * double(N) * double(K));
#pragma omp parallel num_threads(nt)
    {
        std::vector<float> acc(static_cast<size_t>(N));
#pragma omp for schedule(static)
        for (int64_t i = 0; i < M; ++i)
            row_kernel(C + i * ldc, A + i * a_row, a_col, Bp.data(), N, K, alpha, beta, epi,
                       acc.data());
    }
}

}  // namespace fastmlp
