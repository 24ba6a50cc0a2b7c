"""Every CUDA op against float64 numpy and the CPU path, over many shapes (GPU only).

Marked `cuda` (tests/cuda/conftest.py) and skipped where no GPU, CUDA module or CuPy is present.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import ops

pytestmark = pytest.mark.cuda
cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fastmlp._cuda")

GEMM_SHAPES = [  # (M, N, K)
    (1, 1, 1), (1, 7, 3), (5, 1, 9), (2, 3, 0), (7, 13, 5), (17, 31, 29), (64, 10, 20),
    (64, 20, 10), (63, 65, 67), (127, 129, 131), (128, 128, 8), (256, 1024, 784), (64, 1024, 784),
    (1024, 784, 64), (64, 64, 4096), (3, 5, 1000), (300, 200, 513), (1, 1024, 1024), (520, 1, 300),
]
TRANS = [(False, False), (False, True), (True, False), (True, True)]


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def operand(rng, rows, cols, trans):
    """A host matrix of logical shape (rows, cols): C-contiguous, or a transposed view."""
    if trans:
        return rnd(rng, cols, rows).T
    return rnd(rng, rows, cols)


def to_gpu(x):
    """The same view on the GPU: a transposed numpy view stays a transposed CuPy view."""
    if not x.flags.c_contiguous and x.ndim == 2 and x.T.flags.c_contiguous:
        return cp.asarray(np.ascontiguousarray(x.T)).T
    return cp.asarray(x)


def tol(K):
    return dict(rtol=1e-4, atol=2e-6 * max(K, 1) + 1e-6)


def ref_gemm(a, b, c, alpha, beta, bias, relu):
    r = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    if beta != 0:
        r = r + beta * c.astype(np.float64)
    if bias is not None:
        r = r + bias.astype(np.float64)
    return np.maximum(r, 0) if relu else r


@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
@pytest.mark.parametrize("ta,tb", TRANS)
def test_gemm_vs_float64_and_cpu(M, N, K, ta, tb):
    rng = np.random.default_rng(M * 1000003 + N * 1009 + K)
    a, b = operand(rng, M, K, ta), operand(rng, K, N, tb)
    got = cp.asnumpy(ops.matmul(to_gpu(a), to_gpu(b)))
    np.testing.assert_allclose(got, ref_gemm(a, b, None, 1.0, 0.0, None, False), **tol(K))
    np.testing.assert_allclose(got, ops.matmul(a, b), **tol(K))


@pytest.mark.parametrize("M,N,K", [(7, 13, 5), (64, 10, 20), (130, 70, 300), (256, 1024, 784)])
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)])
@pytest.mark.parametrize("epi", ["none", "bias", "bias_relu", "relu"])
def test_gemm_alpha_beta_epilogue(M, N, K, ta, tb, alpha, beta, epi):
    rng = np.random.default_rng(7)
    a, b, c = operand(rng, M, K, ta), operand(rng, K, N, tb), rnd(rng, M, N)
    bias = rnd(rng, N) if "bias" in epi else None
    relu = "relu" in epi
    out = cp.asarray(c)
    ops.matmul(to_gpu(a), to_gpu(b), out=out, alpha=alpha, beta=beta,
               bias=None if bias is None else cp.asarray(bias), relu=relu)
    np.testing.assert_allclose(cp.asnumpy(out), ref_gemm(a, b, c, alpha, beta, bias, relu), **tol(K))
    if beta != 0:
        cpu = c.copy()
        ops.matmul(a, b, out=cpu, alpha=alpha, beta=beta, bias=bias, relu=relu)
        np.testing.assert_allclose(cp.asnumpy(out), cpu, **tol(K))


def test_gemm_beta_zero_never_reads_c():
    rng = np.random.default_rng(1)
    for M, N, K in [(5, 7, 3), (200, 300, 100), (64, 64, 4096)]:
        a, b = rnd(rng, M, K), rnd(rng, K, N)
        out = cp.full((M, N), cp.nan, dtype=cp.float32)
        ops.matmul(cp.asarray(a), cp.asarray(b), out=out, beta=0.0)
        assert not cp.isnan(out).any()
        np.testing.assert_allclose(cp.asnumpy(out), a.astype(np.float64) @ b, **tol(K))


def test_gemm_misaligned_and_padded_operands():
    rng = np.random.default_rng(2)
    for M, N, K in [(33, 65, 47), (128, 128, 128), (257, 130, 520)]:
        a_h, b_h = rnd(rng, M, K), rnd(rng, K, N)
        # Offset by one float: pointers are not 16-byte aligned -> scalar loads.
        abuf = cp.zeros(M * K + 1, dtype=cp.float32)
        a_mis = abuf[1:].reshape(M, K)
        a_mis[...] = cp.asarray(a_h)
        # Padded rows: ld = K + 3.
        bbuf = cp.zeros((K, N + 3), dtype=cp.float32)
        b_pad = bbuf[:, :N]
        b_pad[...] = cp.asarray(b_h)
        # Output with padded rows and a misaligned start.
        obuf = cp.zeros((M, N + 5), dtype=cp.float32)
        out = obuf[:, 1:N + 1]
        ops.matmul(a_mis, b_pad, out=out)
        ref = a_h.astype(np.float64) @ b_h
        np.testing.assert_allclose(cp.asnumpy(out), ref, **tol(K))
        np.testing.assert_allclose(cp.asnumpy(ops.matmul(a_mis, b_pad.T.T)), ref, **tol(K))
        assert cp.all(obuf[:, 0] == 0) and cp.all(obuf[:, N + 1:] == 0)  # nothing outside written


def test_gemm_k_zero_gives_beta_c_plus_bias():
    c = cp.ones((4, 6), dtype=cp.float32)
    bias = cp.arange(6, dtype=cp.float32)
    ops.matmul(cp.zeros((4, 0), cp.float32), cp.zeros((0, 6), cp.float32), out=c, beta=2.0, bias=bias)
    expected = np.broadcast_to(2.0 + np.arange(6, dtype=np.float32), (4, 6))
    np.testing.assert_array_equal(cp.asnumpy(c), expected)


def test_gemm_relu_keeps_nan():
    a = cp.asarray(np.array([[np.nan, 1.0], [-1.0, -1.0]], np.float32))
    b = cp.eye(2, dtype=cp.float32)
    r = cp.asnumpy(ops.matmul(a, b, relu=True))
    assert np.isnan(r[0, 0]) and r[0, 1] == 1.0 and (r[1] == 0).all()


def test_gemm_deterministic_including_split_k():
    rng = np.random.default_rng(3)
    for M, N, K in [(64, 64, 4096), (64, 1024, 784), (1000, 1000, 1000)]:
        a, b = cp.asarray(rnd(rng, M, K)), cp.asarray(rnd(rng, K, N))
        first = ops.matmul(a, b)
        for _ in range(3):
            assert cp.array_equal(ops.matmul(a, b), first)


def test_gemm_reference_kernel_agrees():
    rng = np.random.default_rng(4)
    for (M, N, K), (ta, tb) in zip([(31, 17, 45), (200, 64, 300), (64, 64, 2048), (9, 130, 5)], TRANS):
        a, b = to_gpu(operand(rng, M, K, ta)), to_gpu(operand(rng, K, N, tb))
        out_fast, out_ref = cp.empty((M, N), cp.float32), cp.empty((M, N), cp.float32)
        _cuda.gemm(a, b, out_fast)
        _cuda.gemm(a, b, out_ref, reference=True)
        np.testing.assert_allclose(cp.asnumpy(out_fast), cp.asnumpy(out_ref), **tol(K))


def test_gemm_plan_small_shapes_use_small_tiles():
    assert _cuda.sgemm_plan(4096, 4096, 4096) == "128x128"
    assert _cuda.sgemm_plan(64, 1024, 784).startswith("64x64")
    assert "split-K" in _cuda.sgemm_plan(64, 64, 4096)


def test_linear_matches_cpu():
    rng = np.random.default_rng(5)
    x, w, b = rnd(rng, 64, 784), rnd(rng, 1024, 784), rnd(rng, 1024)
    got = ops.linear(cp.asarray(x), cp.asarray(w), cp.asarray(b), relu=True)
    np.testing.assert_allclose(cp.asnumpy(got), ops.linear(x, w, b, relu=True), **tol(784))


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (1000,), (3, 5), (64, 1024), (1 << 20,)])
def test_relu_forward_backward(shape):
    rng = np.random.default_rng(6)
    x = rnd(rng, *shape)
    if x.size >= 3:
        x.reshape(-1)[:3] = [np.nan, 0.0, -0.0]
    g = rnd(rng, *shape)
    y = cp.asnumpy(ops.relu(cp.asarray(x)))
    np.testing.assert_array_equal(y, ops.relu(x))
    dx = cp.asnumpy(ops.relu_backward(cp.asarray(g), cp.asarray(x)))
    np.testing.assert_array_equal(dx, np.where(x > 0, g, 0).astype(np.float32))
    xi = cp.asarray(x)
    ops.relu(xi, out=xi)  # in place
    np.testing.assert_array_equal(cp.asnumpy(xi), y)


@pytest.mark.parametrize("B,C", [(1, 1), (7, 3), (64, 10), (1, 1024), (1000, 33), (4096, 1), (256, 1024)])
def test_bias_forward_backward(B, C):
    rng = np.random.default_rng(7)
    x, bias, g = rnd(rng, B, C), rnd(rng, C), rnd(rng, B, C)
    got = cp.asnumpy(ops.bias_add(cp.asarray(x), cp.asarray(bias)))
    np.testing.assert_array_equal(got, x + bias)
    db = cp.asnumpy(ops.bias_grad(cp.asarray(g)))
    np.testing.assert_allclose(db, g.astype(np.float64).sum(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, ops.bias_grad(g), rtol=1e-6, atol=1e-6)
    acc = cp.ones(C, cp.float32)
    ops.bias_grad(cp.asarray(g), out=acc, accumulate=True)
    np.testing.assert_allclose(cp.asnumpy(acc), 1.0 + g.astype(np.float64).sum(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1,), (64, 1), (64, 10), (1000, 7), (1 << 20,), (3000, 1000)])
def test_mse_forward_backward(shape):
    rng = np.random.default_rng(8)
    p, t = rnd(rng, *shape), rnd(rng, *shape)
    loss = ops.mse_loss(cp.asarray(p), cp.asarray(t))
    assert isinstance(loss, cp.ndarray) and loss.shape == () and loss.dtype == cp.float32
    ref = np.mean((p.astype(np.float64) - t) ** 2)
    assert abs(float(loss) - ref) <= 1e-6 * ref
    assert abs(float(loss) - ops.mse_loss(p, t)) <= 1e-6 * ref
    assert float(ops.mse_loss(cp.asarray(p), cp.asarray(t))) == float(loss)  # deterministic
    d = cp.asnumpy(ops.mse_loss_backward(cp.asarray(p), cp.asarray(t)))
    np.testing.assert_allclose(d, ops.mse_loss_backward(p, t), rtol=1e-6, atol=1e-9)
    d2 = cp.asnumpy(ops.mse_loss_backward(cp.asarray(p), cp.asarray(t), grad_output=cp.float32(3.0),
                                          reduction="sum"))
    np.testing.assert_allclose(d2, 6.0 * (p - t), rtol=1e-6, atol=1e-6)


def test_mse_empty_is_nan():
    assert np.isnan(float(ops.mse_loss(cp.zeros(0, cp.float32), cp.zeros(0, cp.float32))))


SGD_OPTS = [
    dict(lr=0.1), dict(lr=0.1, weight_decay=0.01), dict(lr=0.1, maximize=True),
    dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.1),
    dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.01, momentum=0.5, weight_decay=0.1, maximize=True),
]


@pytest.mark.parametrize("opts", SGD_OPTS)
def test_sgd_step_matches_cpu(opts):
    rng = np.random.default_rng(9)
    shapes = [(20, 10), (20,), (1, 20), (1,), (1024, 784)]
    ps = [rnd(rng, *s) for s in shapes]
    bufs = [np.zeros(s, np.float32) for s in shapes] if opts.get("momentum") else None
    gps = [cp.asarray(p) for p in ps]
    gbufs = None if bufs is None else [cp.asarray(b) for b in bufs]
    many = [cp.asarray(p) for p in ps]
    mbufs = None if bufs is None else [cp.asarray(b) for b in bufs]
    for step in range(3):
        gs = [rnd(rng, *s) for s in shapes]
        for i, g in enumerate(gs):
            b = None if bufs is None else bufs[i]
            ops.sgd_step(ps[i], g, b, first_step=step == 0, **opts)
            ops.sgd_step(gps[i], cp.asarray(g), None if gbufs is None else gbufs[i],
                         first_step=step == 0, **opts)
        ops.sgd_step_many(many, [cp.asarray(g) for g in gs], mbufs, first_step=step == 0, **opts)
    for p, gp, m in zip(ps, gps, many):
        np.testing.assert_allclose(cp.asnumpy(gp), p, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(cp.asnumpy(m), cp.asnumpy(gp))


def test_sgd_matches_torch_optim():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    w = rnd(rng, 30, 20)
    tw = torch.nn.Parameter(torch.from_numpy(w.copy()))
    opt = torch.optim.SGD([tw], lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    gw, buf = cp.asarray(w), cp.zeros_like(cp.asarray(w))
    for step in range(4):
        g = rnd(rng, 30, 20)
        tw.grad = torch.from_numpy(g.copy())
        opt.step()
        ops.sgd_step(gw, cp.asarray(g), buf, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                     first_step=step == 0)
    np.testing.assert_allclose(cp.asnumpy(gw), tw.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_runs_on_the_current_cupy_stream():
    rng = np.random.default_rng(11)
    a, b = rnd(rng, 300, 200), rnd(rng, 200, 100)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        ga, gb = cp.asarray(a), cp.asarray(b)
        out = ops.relu(ops.matmul(ga, gb))
        loss = ops.mse_loss(out, cp.zeros_like(out))
    s.synchronize()
    ref = np.maximum(a.astype(np.float64) @ b, 0)
    np.testing.assert_allclose(cp.asnumpy(out), ref, **tol(200))
    assert abs(float(loss) - np.mean(ref ** 2)) <= 1e-4 * np.mean(ref ** 2)


def test_non_contiguous_inputs_are_copied_outputs_refused():
    rng = np.random.default_rng(12)
    x = cp.asarray(rnd(rng, 10, 8))[:, ::2]
    np.testing.assert_array_equal(cp.asnumpy(ops.relu(x)), np.maximum(cp.asnumpy(x), 0))
    with pytest.raises(ValueError, match="contiguous"):
        ops.relu(cp.ones((4, 4), cp.float32), out=cp.empty((4, 8), cp.float32)[:, ::2])


def test_errors_on_gpu():
    a = cp.ones((3, 4), cp.float32)
    with pytest.raises(TypeError, match="cupy"):
        ops.matmul(a, np.ones((4, 5), np.float32))
    with pytest.raises(TypeError, match="float32"):
        ops.relu(cp.ones(3, cp.float64))
    with pytest.raises(ValueError, match="not aligned"):
        ops.matmul(a, cp.ones((5, 5), cp.float32))
    with pytest.raises(ValueError, match="overlaps"):
        ops.matmul(a[:, :3], cp.ones((3, 3), cp.float32), out=a[:, 1:])


def test_device_queries():
    assert fastmlp.cuda.device_count() >= 1
    assert fastmlp.cuda.current_device() == cp.cuda.runtime.getDevice()
    assert isinstance(fastmlp.cuda.get_device_name(0), str)
    fastmlp.cuda.synchronize()
    with pytest.raises(ValueError):
        fastmlp.cuda.get_device_name(fastmlp.cuda.device_count())


@pytest.mark.skipif(fastmlp.cuda.device_count() < 2, reason="needs two GPUs")
def test_arrays_on_different_devices():
    with cp.cuda.Device(0):
        a = cp.ones((3, 3), cp.float32)
    with cp.cuda.Device(1):
        b = cp.ones((3, 3), cp.float32)
    with pytest.raises(ValueError, match="different devices"):
        ops.matmul(a, b)
