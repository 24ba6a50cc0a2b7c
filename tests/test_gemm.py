"""sgemm (fastmlp._C.gemm) against a float64 numpy reference.

Every CPU kernel path the machine supports x every transpose combination x edge sizes (1..40,
primes, K = 1, K = 0, tall/wide, shapes that cross the cache blocks and take the packed path as
well as the small path), views with unaligned starts and leading dimensions larger than the width,
alpha/beta, bias/ReLU epilogues, NaN handling, and bitwise equality across thread counts.
"""
import itertools

import numpy as np
import pytest

from fastmlp import _C

MODES = ["NN", "NT", "TN", "TT"]
EPS32 = np.finfo(np.float32).eps


def operand(rng, rows, cols, trans, offset=(0, 0), pad=0):
    """A (rows, cols) float32 view. trans: a transposed view of a (cols, rows) array. offset/pad:
    the view starts inside a larger array (unaligned start, leading dimension > width)."""
    shape = (cols, rows) if trans else (rows, cols)
    big = rng.uniform(-1, 1, size=(shape[0] + offset[0] + 1, shape[1] + offset[1] + pad))
    big = big.astype(np.float32)
    v = big[offset[0]:offset[0] + shape[0], offset[1]:offset[1] + shape[1]]
    return v.T if trans else v


def reference(a, b, c, alpha, beta, bias, relu):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    r = alpha * (a64 @ b64)
    if beta != 0:
        r = r + beta * c.astype(np.float64)
    if bias is not None:
        r = r + bias.astype(np.float64)
    # Error bound of a float32 dot product of length K: ~K eps sum|a b|.
    bound = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0:
        bound = bound + abs(beta) * np.abs(c.astype(np.float64))
    if bias is not None:
        bound = bound + np.abs(bias.astype(np.float64))
    if relu:
        r = np.where(np.isnan(r), r, np.maximum(r, 0.0))
    k = a.shape[1]
    return r, 2.0 * (k + 4) * EPS32 * bound + 1e-30


def check(M, N, K, mode, rng, alpha=1.0, beta=0.0, bias=False, relu=False, offset=(0, 0), pad=0,
          out_pad=0):
    a = operand(rng, M, K, mode[0] == "T", offset, pad)
    b = operand(rng, K, N, mode[1] == "T", offset[::-1], pad)
    cbig = rng.uniform(-1, 1, size=(M, N + out_pad + 1)).astype(np.float32)
    c = cbig[:, 1:1 + N] if out_pad else cbig[:, :N]
    c0, cbig0 = c.copy(), cbig.copy()
    bv = rng.uniform(-1, 1, size=N).astype(np.float32) if bias else None
    out = _C.gemm(a, b, c, alpha=alpha, beta=beta, bias=bv, relu=relu)
    assert out is c or np.shares_memory(out, c)
    ref, tol = reference(a, b, c0, alpha, beta, bv, relu)
    err = np.abs(c.astype(np.float64) - ref)
    assert np.all(err <= tol), (
        f"{mode} M={M} N={N} K={K}: max err {err.max():.3g} (tol {tol.max():.3g}) at "
        f"{np.unravel_index(np.argmax(err - tol), err.shape)}")
    # the columns outside the view are untouched
    np.testing.assert_array_equal(cbig[:, :1 if out_pad else 0], cbig0[:, :1 if out_pad else 0])
    np.testing.assert_array_equal(cbig[:, 1 + N if out_pad else N:], cbig0[:, 1 + N if out_pad else N:])
    return c


EDGE = [1, 2, 3, 5, 7, 8, 11, 12, 13, 16, 17, 23, 31, 32, 33, 40]


@pytest.mark.parametrize("mode", MODES)
def test_edge_sizes(cpu_path, mode):
    rng = np.random.default_rng(1)
    for M, N, K in itertools.product([1, 3, 7, 12, 13, 17, 33, 40], [1, 5, 16, 17, 31, 33, 40],
                                     [1, 2, 13, 40]):
        check(M, N, K, mode, rng)
    for s in EDGE:
        check(s, s, s, mode, rng)


# Shapes that take the packed path for every ISA (N > 32, M > 16, enough work) and cross the
# cache blocks: K > kc (several K blocks), M > mc, N > nc, partial tiles everywhere.
# (30, 8300, 20): N beyond the nc column block on every path (AVX-512 nc = 4096), per thread too.
PACKED_SHAPES = [(37, 45, 600), (200, 70, 300), (97, 131, 257), (20, 4200, 12), (257, 33, 129),
                 (30, 8300, 20)]


# The packed path's packing (the AVX2 path's own routine: 6-row A and 16-column B micro-panels, copies
# walked row by row across panels, transposes in 8 x 8 blocks): only whole panels (M % 6 == 0,
# N % 16 == 0), a partial last panel of each operand, K tails 1..7 past a multiple of 8, and views
# whose leading dimension is larger than their width (unaligned starts).
PACK_SHAPES = [(96, 128, 200), (102, 144, 203), (97, 131, 201), (101, 129, 199), (30, 64, 1003),
               (60, 48, 385)]

# What each family checks: PACKED_SHAPES with scaled accumulation, bias and ReLU; PACK_SHAPES
# plain, then with bias on unaligned, padded views.
PACKED_CHECKS = {
    "blocks": (2, [dict(alpha=0.75, beta=-0.5, bias=True, relu=True)]),
    "packing": (13, [dict(), dict(alpha=0.5, beta=1.0, bias=True, offset=(1, 3), pad=5, out_pad=2)]),
}
PACKED_CASES = [pytest.param(s, "blocks", id="blocks-%dx%dx%d" % s) for s in PACKED_SHAPES] + [
    pytest.param(s, "packing", id="packing-%dx%dx%d" % s) for s in PACK_SHAPES]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,kind", PACKED_CASES)
def test_packed_path(cpu_path, mode, shape, kind):
    seed, checks = PACKED_CHECKS[kind]
    rng = np.random.default_rng(seed)
    for kwargs in checks:
        check(*shape, mode, rng, **kwargs)


# The packed path on a team of threads: with enough MR-row panels (or too few NR-column ones to
# split) the team packs one shared B block cooperatively, each thread a slice of its micro-panels,
# and runs its own rows of C (whole MR panels) over it; otherwise threads take column slices.
# (M, N, K): (250, 1100, 800) several column blocks (N > nc on avx2) and K blocks, uneven row
# split with a partial last tile; (64, 4150, 70) N > nc on every path, column split at 3 threads;
# (40, 20, 900) and (301, 37, 515) too few column panels to split, rows shared at 2 and 3 threads.
SHARED_SHAPES = [(250, 1100, 800), (64, 4150, 70), (40, 20, 900), (301, 37, 515)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHARED_SHAPES)
def test_packed_path_threads(cpu_path, threads, mode, shape):
    outs = []
    for n in (1, 2, 3):
        threads(n)
        rng = np.random.default_rng(21)  # the same operands for every thread count
        outs.append(check(*shape, mode, rng, alpha=0.75, beta=-0.5, bias=True, relu=True))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("mode", MODES)
def test_tall_wide_and_mlp_shapes(cpu_path, mode):
    rng = np.random.default_rng(3)
    for M, N, K in [(1000, 1, 3), (1, 1000, 3), (2000, 2, 2), (2, 2000, 5), (1, 1, 3000),
                    (64, 20, 10), (64, 1, 20), (256, 10, 200), (3, 700, 300), (500, 24, 64)]:
        check(M, N, K, mode, rng, bias=True, relu=True)


def test_few_rows_nt_dot_path(cpu_path):
    # X @ W^T with 1..16 rows (batch-1 forward): dot products along K, no packing.
    rng = np.random.default_rng(12)
    for M in [1, 2, 3, 4, 5, 7, 16]:
        for N, K in [(33, 1), (37, 15), (100, 16), (41, 17), (64, 300)]:
            check(M, N, K, "NT", rng)
            check(M, N, K, "NT", rng, alpha=1.5, beta=-0.5, bias=True, relu=True, offset=(1, 3),
                  pad=2, out_pad=1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(13, 7, 5), (45, 50, 300), (8, 17, 33)])
def test_views_unaligned_and_padded(cpu_path, mode, shape):
    rng = np.random.default_rng(4)
    check(*shape, mode, rng, offset=(1, 3), pad=5, out_pad=3)
    check(*shape, mode, rng, offset=(2, 1), pad=0, out_pad=1, beta=1.0, bias=True)


@pytest.mark.parametrize("mode", MODES)
def test_alpha_beta_bias_relu(cpu_path, mode):
    rng = np.random.default_rng(5)
    for shape in [(9, 19, 7), (40, 40, 40), (70, 90, 280)]:
        for alpha, beta in [(1.0, 0.0), (2.5, 0.0), (1.0, 1.0), (-0.5, 2.0), (0.0, 0.5)]:
            for bias, relu in [(False, False), (True, False), (False, True), (True, True)]:
                check(*shape, mode, rng, alpha, beta, bias, relu)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(5, 6, 0), (40, 70, 0)])
def test_k_zero(cpu_path, mode, shape):
    rng = np.random.default_rng(6)
    M, N, _ = shape
    a = operand(rng, M, 0, mode[0] == "T")
    b = operand(rng, 0, N, mode[1] == "T")
    c = rng.uniform(-1, 1, size=(M, N)).astype(np.float32)
    bias = rng.uniform(-1, 1, size=N).astype(np.float32)
    expect = np.maximum(0.5 * c + bias, 0)
    _C.gemm(a, b, c, beta=0.5, bias=bias, relu=True)
    np.testing.assert_allclose(c, expect, rtol=1e-6, atol=1e-6)
    c[:] = np.nan
    _C.gemm(a, b, c)
    np.testing.assert_array_equal(c, np.zeros((M, N), np.float32))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(7, 9, 5), (64, 20, 10), (120, 100, 300), (50, 10, 700),
                                   (40, 10, 200)])  # the last: the narrow path (N <= 16, K >= 64)
def test_beta_zero_never_reads_nan_c(cpu_path, mode, shape):
    rng = np.random.default_rng(7)
    M, N, K = shape
    a = operand(rng, M, K, mode[0] == "T")
    b = operand(rng, K, N, mode[1] == "T")
    c = np.full((M, N), np.nan, np.float32)
    _C.gemm(a, b, c, beta=0.0, relu=True)
    assert np.all(np.isfinite(c))
    ref, tol = reference(a, b, None, 1.0, 0.0, None, True)
    assert np.all(np.abs(c - ref) <= tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(7, 9, 5), (64, 20, 10), (120, 100, 300), (48, 10, 256)])
def test_relu_keeps_nan(cpu_path, mode, shape):
    rng = np.random.default_rng(8)
    M, N, K = shape
    a = np.ascontiguousarray(operand(rng, M, K, False))
    a[M // 2, K // 2] = np.nan
    a = np.asfortranarray(a) if mode[0] == "T" else a  # Fortran order = a transposed view
    b = operand(rng, K, N, mode[1] == "T")
    out = _C.gemm(a, b, relu=True)
    assert np.all(np.isnan(out[M // 2]))
    rows = np.arange(M) != M // 2
    assert np.all(np.isfinite(out[rows])) and np.all(out[rows] >= 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(300, 200, 150), (128, 1000, 40), (2000, 10, 100),
                                   (700, 40, 50), (64, 512, 512), (5, 3000, 200), (1, 5000, 300),
                                   # the narrow path (N <= 16 not a multiple of 8, K >= 64)
                                   (256, 10, 1024), (1000, 10, 784), (333, 7, 300), (64, 13, 2000),
                                   # the packed path's packing: whole and partial panels, K tails
                                   (102, 144, 203), (97, 131, 1003)])
def test_threads_bitwise_equal(cpu_path, threads, mode, shape):
    rng = np.random.default_rng(9)
    M, N, K = shape
    a = operand(rng, M, K, mode[0] == "T")
    b = operand(rng, K, N, mode[1] == "T")
    bias = rng.uniform(-1, 1, size=N).astype(np.float32)
    c0 = rng.uniform(-1, 1, size=(M, N)).astype(np.float32)
    outs = []
    for n in (1, 2, 3):
        threads(n)
        c = c0.copy()
        _C.gemm(a, b, c, alpha=0.5, beta=0.25, bias=bias, relu=True)
        outs.append(c)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_matches_reference_kernel_and_numpy():
    rng = np.random.default_rng(10)
    a = rng.standard_normal((33, 77), dtype=np.float32)
    b = rng.standard_normal((77, 45), dtype=np.float32)
    fast = _C.gemm(a, b)
    ref = _C.gemm(a, b, reference=True)
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast, a @ b, rtol=1e-4, atol=1e-4)


def test_torch_linear_products():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 30), dtype=np.float32)
    w = rng.standard_normal((20, 30), dtype=np.float32)
    bias = rng.standard_normal(20, dtype=np.float32)
    dy = rng.standard_normal((64, 20), dtype=np.float32)
    y = _C.gemm(x, w.T, bias=bias, relu=True)
    ty = torch.relu(torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w),
                                               torch.from_numpy(bias)))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_C.gemm(dy, w), (torch.from_numpy(dy) @ torch.from_numpy(w)).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_C.gemm(dy.T, x), (torch.from_numpy(dy).T @ torch.from_numpy(x)).numpy(),
                               rtol=1e-5, atol=1e-5)
