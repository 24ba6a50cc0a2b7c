"""sgemm's narrow path (N <= 16 columns, N not a multiple of 8, K >= 64: e.g. a 10-class head
784/1024 -> 10): dot tiles for NN/NT (op(A) rows along K), column tiles for TN/TT (op(A) columns
along M), against a float64 numpy reference on every CPU path, with the epilogue (alpha, beta,
bias, ReLU), views, edge rows (M not a multiple of the tile), K not a multiple of 8 (masked
tail). NaN handling and bitwise equality across thread counts for these shapes are in
test_gemm.py's parametrisations. Shapes at the path's borders (N = 8, 16,
K = 63) check the neighbouring paths still agree.
"""
import numpy as np
import pytest


from test_gemm import MODES, check



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
