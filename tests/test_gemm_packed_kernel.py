"""The packed path's 6 x 16 micro-kernel edges (AVX2 packed_tile: 8 k steps per asm iteration,
the C tile prefetched 3 iterations before the end, a k % 8 tail, and an epilogue fast path for
full tiles with alpha 1, no bias / ReLU and beta 0 or 1), on every CPU path, against a float64
numpy reference, and bitwise across thread counts.

K covers: fewer than 8 steps (no asm iteration), 8..31 (the C prefetch before the first
iteration), tails k % 8 = 1..7, one full K block and several (later K blocks accumulate with
beta 1 through the fast path). M and N give full and partial tiles (M % 6, N % 16) and are large
enough for the packed path (M > 12, N > 16, M N K > 96^3)."""
import numpy as np
import pytest

from test_gemm import check, operand

from fastmlp import _C

KS = [1, 3, 7, 8, 9, 15, 16, 23, 24, 25, 31, 32, 47, 100, 383, 384, 385, 769]
MODES = ["NN", "NT", "TN"]


def shape_for(K, partial):
    # M x N with M N K > 96^3 (packed path; 96 rows^2 K >= 960000); partial: a last tile of 5
    # rows and 7 columns
    rows = max(3, int(np.ceil(np.sqrt(1.0e4 / K))))
    M, N = 6 * rows, 16 * rows
    return (M - 1, N - 9) if partial else (M, N)


EPILOGUES = [dict(),                                  # alpha 1, beta 0: fast path, plain stores
             dict(beta=1.0),                          # alpha 1, beta 1: fast path, C + acc
             dict(alpha=0.5, beta=1.0),               # general path
             dict(beta=0.5),                          # general path
             dict(beta=1.0, bias=True),               # bias: general path
             dict(relu=True)]                         # ReLU: general path


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("partial", [False, True], ids=["full", "partial"])
def test_packed_kernel_k_edges(cpu_path, mode, K, partial):
    M, N = shape_for(K, partial)
    rng = np.random.default_rng(K)
    for kw in EPILOGUES:
        check(M, N, K, mode, rng, **kw)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("K", [7, 25, 385, 769])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_packed_kernel_threads_bitwise(cpu_path, threads, mode, K, beta):
    M, N = shape_for(K, True)
    rng = np.random.default_rng(100 + K)
    a = operand(rng, M, K, mode[0] == "T")
    b = operand(rng, K, N, mode[1] == "T")
    c0 = rng.uniform(-1, 1, size=(M, N)).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        threads(n)
        c = c0.copy()
        _C.gemm(a, b, c, beta=beta)
        outs.append(c)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_packed_kernel_fast_epilogue_is_the_general_one(cpu_path):
    # alpha 1 / beta 1 takes the fast path, alpha 1 / beta 1 with a zero bias the general one:
    # the same values bit for bit (1 * acc = acc, fma(1, c, acc) = c + acc, + 0 exact)
    rng = np.random.default_rng(5)
    M, N, K = 97, 131, 1003
    a = operand(rng, M, K, False)
    b = operand(rng, K, N, False)
    c0 = rng.uniform(-1, 1, size=(M, N)).astype(np.float32)
    fast, general = c0.copy(), c0.copy()
    _C.gemm(a, b, fast, beta=1.0)
    _C.gemm(a, b, general, beta=1.0, bias=np.zeros(N, np.float32))
    np.testing.assert_array_equal(fast, general)
