"""sgemm's narrow path (N <= 16 columns, N not a multiple of 8, K >= 64: e.g. a 10-class head
784/1024 -> 10): dot tiles for NN/NT (op(A) rows along K), column tiles for TN/TT (op(A) columns
along M), against a float64 numpy reference on every CPU path, with the epilogue (alpha, beta,
bias, ReLU), views, edge rows (M not a multiple of the tile), K not a multiple of 8 (masked
tail), and bitwise equality across thread counts. Shapes at the path's borders (N = 8, 16,
K = 63) check the neighbouring paths still agree.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C

from test_gemm import MODES, check, operand

PATHS = fastmlp.supported_cpu_paths()


@pytest.fixture(params=PATHS)
def cpu_path(request):
    before = fastmlp.get_cpu_path()
    fastmlp.set_cpu_path(request.param)
    yield request.param
    fastmlp.set_cpu_path(before)


@pytest.fixture
def threads():
    before = fastmlp.get_num_threads()
    yield fastmlp.set_num_threads
    fastmlp.set_num_threads(before)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("N", [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 15])
def test_narrow_columns(cpu_path, mode, N):
    rng = np.random.default_rng(N)
    for M, K in [(1, 64), (2, 100), (3, 71), (16, 64), (17, 129), (33, 784), (50, 1024)]:
        check(M, N, K, mode, rng)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(256, 10, 784), (256, 10, 1024), (64, 10, 64), (31, 10, 63),
                                   (40, 8, 200), (40, 16, 200), (45, 14, 333)])
def test_narrow_mlp_heads_and_borders(cpu_path, mode, shape):
    M, N, K = shape
    check(M, N, K, mode, np.random.default_rng(M + N + K))


@pytest.mark.parametrize("mode", MODES)
def test_narrow_epilogue_and_views(cpu_path, mode):
    rng = np.random.default_rng(5)
    for M, N, K in [(37, 10, 300), (16, 5, 64), (7, 13, 257)]:
        check(M, N, K, mode, rng, alpha=0.75, beta=0.5, bias=True, relu=True)
        check(M, N, K, mode, rng, alpha=-1.5, beta=0.0, bias=True)
        check(M, N, K, mode, rng, offset=(1, 3), pad=5, out_pad=2)


@pytest.mark.parametrize("mode", MODES)
def test_narrow_beta_zero_never_reads_nan_c(cpu_path, mode):
    rng = np.random.default_rng(6)
    a = operand(rng, 40, 200, mode[0] == "T")
    b = operand(rng, 200, 10, mode[1] == "T")
    c = np.full((40, 10), np.nan, np.float32)
    _C.gemm(a, b, c, beta=0.0)
    assert np.all(np.isfinite(c))
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_narrow_relu_keeps_nan(cpu_path, mode):
    rng = np.random.default_rng(7)
    M, N, K = 48, 10, 256
    a = np.ascontiguousarray(operand(rng, M, K, False))
    a[M // 2, K // 2] = np.nan
    a = np.asfortranarray(a) if mode[0] == "T" else a
    b = operand(rng, K, N, mode[1] == "T")
    out = _C.gemm(a, b, relu=True)
    assert np.all(np.isnan(out[M // 2]))
    rows = np.arange(M) != M // 2
    assert np.all(np.isfinite(out[rows])) and np.all(out[rows] >= 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(256, 10, 1024), (1000, 10, 784), (333, 7, 300), (64, 13, 2000)])
def test_narrow_threads_bitwise_equal(cpu_path, threads, mode, shape):
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
