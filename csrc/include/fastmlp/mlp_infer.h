// fastmlp inference: the forward of a chain of Linear layers, each followed by an element-wise
// activation (activation.h's kinds), with reused workspaces: nothing is allocated by a call once a
// workspace has served a batch as large (the workspace grows, never shrinks).
//
//   A_0 = X (n, in_0);  A_{l+1} = f_l(A_l @ W_l^T + b_l)   W_l (out_l, in_l), b_l (out_l) or none
//   out (n, out_{L-1}) = A_L
//
// Three paths, chosen from the shapes (InferPath::automatic) or forced (tests run each):
// (automatic: rows below 8 rows; from a plan's gemm_from rows on, gemm; tiles otherwise)
//  * rows:  one sample at a time, a matrix-vector chain: W read in place along its rows (SIMD dot
//           products, 4 outputs at a time), no packing, no transposes. For a handful of rows.
//  * tiles: feature-major register tiles without packing (as XLA does for small operands): the
//           chunk of rows is transposed once into (features, samples), each layer is
//           Z^T = W @ A^T as MR x 16 accumulator tiles that broadcast weights against sample
//           vectors over the whole reduction, bias + activation applied in the tile's store.
//           Threads: one OpenMP team per call; with at least 2 sample tiles per thread each
//           thread runs whole chunks of its share of the rows (a workspace slice per thread),
//           otherwise the team splits each layer's tiles.
//  * gemm:  row-major sgemm (X @ W^T, packed, the library's GEMM) with bias + activation fused in
//           its epilogue. The tiles were faster at every shape measured (AVX2 on a Zen 3,
//           AVX-512 on a Zen 5), so the compiled rule (mlp_infer_gemm_from) never takes it; a
//           plan's gemm_from (fastmlp.costmodel's measured crossover) does where a machine
//           measures the gemm faster.
// Every path sums each output in a fixed order that depends on the shapes only, and threads split
// outputs (tiles, columns), never a sum: results do not depend on the thread count. Different
// paths may differ in the last bits (different summation orders).
//
// Kernels assume valid input (sizes > 0, chained widths, pointers valid and not aliasing each
// other or the workspace); the Python bindings check it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastmlp/activation.h"

namespace fastmlp {

struct InferLayer {
    const float* weight = nullptr;  // (out, in) row-major
    const float* bias = nullptr;    // (out) or null
    int64_t in = 0, out = 0;
    ActParams act = {};             // applied after the bias
};

enum class InferPath : int { automatic = 0, rows = 1, tiles = 2, gemm = 3, reference = 4 };

// Scratch reused from call to call. grows counts the (re)allocations: after a first call with n
// rows, a call with at most n rows on the same chain and thread count leaves it unchanged (the
// tiles path keeps one slice per thread: more threads may grow it once).
struct InferWorkspace {
    std::vector<float> buf;
    int64_t grows = 0;
    float* reserve(size_t floats) {
        if (buf.size() < floats) {
            buf.assign(floats, 0.0f);
            ++grows;
        }
        return buf.data();
    }
};

// The compiled rule's crossover: the number of rows from which InferPath::automatic takes the
// gemm path on the current CPU kernel path (kInferNeverGemm: never). It depends on the shapes and
// the ISA only, never on the thread count.
constexpr int64_t kInferNeverGemm = INT64_MAX;
int64_t mlp_infer_gemm_from(const std::vector<InferLayer>& layers);

// The path InferPath::automatic takes for n rows: rows below 8, gemm from gemm_from rows on
// (a negative gemm_from: the compiled rule's mlp_infer_gemm_from), tiles otherwise.
InferPath mlp_infer_choose(const std::vector<InferLayer>& layers, int64_t n,
                           int64_t gemm_from = -1);

// out (n, layers.back().out) = the chain on X (n, layers[0].in), row-major contiguous.
void mlp_infer_forward(float* out, const std::vector<InferLayer>& layers, const float* X,
                       int64_t n, InferWorkspace& ws, InferPath path = InferPath::automatic,
                       int64_t gemm_from = -1);

// The plain reference: double sums, the scalar activation rules, one thread.
void mlp_infer_reference(float* out, const std::vector<InferLayer>& layers, const float* X,
                         int64_t n);

}  // namespace fastmlp
