"""Every op of fastmlp.ops and its gradient against a float64 numpy reference, on every CPU path."""
import numpy as np
import pytest

import fastmlp
from fastmlp import ops

SHAPES = [(1, 1), (1, 7), (7, 1), (2, 3), (13, 17), (64, 10), (31, 37), (100, 3), (3, 129)]
GEMM_SHAPES = [(1, 1, 1), (1, 5, 1), (3, 1, 4), (7, 13, 5), (64, 10, 20), (64, 20, 1), (37, 41, 43),
               (5, 0, 3), (0, 4, 3), (3, 4, 0), (128, 64, 96), (1, 300, 17), (130, 2, 129)]


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def tol(k):
    return 1e-5 * max(1, k) ** 0.5 * 4


def relu64(x):
    return np.where(np.isnan(x), x, np.maximum(x, 0))


@pytest.mark.parametrize("m,k,n", GEMM_SHAPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_transposes(cpu_path, rng, m, k, n, ta, tb):
    a = f32(rng, k, m).T if ta else f32(rng, m, k)
    b = f32(rng, n, k).T if tb else f32(rng, k, n)
    out = ops.matmul(a, b)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert out.shape == (m, n) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=tol(k), atol=tol(k))


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 9, 23), (64, 10, 20), (33, 65, 7)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (0.0, 1.0)])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_alpha_beta_epilogue(cpu_path, rng, m, k, n, alpha, beta, relu, with_bias):
    a, b, c0 = f32(rng, m, k), f32(rng, k, n), f32(rng, m, n)
    bias = f32(rng, n) if with_bias else None
    out = c0.copy()
    ops.matmul(a, b, out=out, alpha=alpha, beta=beta, bias=bias, relu=relu)
    ref = alpha * (a.astype(np.float64) @ b) + beta * c0.astype(np.float64)
    if with_bias:
        ref = ref + bias
    if relu:
        ref = relu64(ref)
    np.testing.assert_allclose(out, ref, rtol=tol(k), atol=tol(k))


def test_matmul_beta0_ignores_nan_in_out(cpu_path, rng):
    a, b = f32(rng, 9, 5), f32(rng, 5, 11)
    out = np.full((9, 11), np.nan, np.float32)
    ops.matmul(a, b, out=out, beta=0.0)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_matmul_nan_propagates_through_relu(cpu_path, rng):
    a, b = f32(rng, 4, 3), f32(rng, 3, 5)
    a[1, 2] = np.nan
    out = ops.matmul(a, b, relu=True)
    assert np.isnan(out[1]).all() and not np.isnan(np.delete(out, 1, axis=0)).any()


def test_matmul_into_padded_rows(cpu_path, rng):
    # out with a leading dimension larger than its width (a column slice of a bigger array)
    a, b = f32(rng, 6, 4), f32(rng, 4, 5)
    big = np.zeros((6, 9), np.float32)
    ops.matmul(a, b, out=big[:, 2:7])
    np.testing.assert_allclose(big[:, 2:7], a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    assert (big[:, :2] == 0).all() and (big[:, 7:] == 0).all()


def test_matmul_strided_inputs(cpu_path, rng):
    a = f32(rng, 10, 12)[::2, 1::3]  # no unit stride: copied for reading
    b = f32(rng, 8, 7)[::2][:, ::-1]
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(ops.matmul(a, b), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,k,n", [(1, 10, 20), (64, 10, 20), (7, 3, 1), (5, 0, 4)])
@pytest.mark.parametrize("relu", [False, True])
def test_linear(cpu_path, rng, m, k, n, relu):
    x, w, bias = f32(rng, m, k), f32(rng, n, k), f32(rng, n)
    out = ops.linear(x, w, bias, relu=relu)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + bias
    if relu:
        ref = relu64(ref)
    np.testing.assert_allclose(out, ref, rtol=tol(k), atol=tol(k))
    np.testing.assert_allclose(ops.linear(x, w), x.astype(np.float64) @ w.T, rtol=tol(k), atol=tol(k))


@pytest.mark.parametrize("shape", SHAPES + [(0, 3), (5,)])
def test_relu_and_backward(cpu_path, rng, shape):
    x = f32(rng, *shape)
    if x.size:
        x.flat[0] = 0.0
        x.flat[-1] = np.nan
    np.testing.assert_array_equal(ops.relu(x), relu64(x.astype(np.float64)).astype(np.float32))
    g = f32(rng, *shape)
    y = ops.relu(x)
    # gradient at 0 is 0; through NaN it is 0 (NaN > 0 is false), as PyTorch's threshold_backward
    np.testing.assert_array_equal(ops.relu_backward(g, y), np.where(y > 0, g, 0).astype(np.float32))


def test_relu_in_place(rng):
    x = f32(rng, 5, 6)
    ref = np.maximum(x, 0)
    assert ops.relu(x, out=x) is x
    np.testing.assert_array_equal(x, ref)


@pytest.mark.parametrize("shape", SHAPES + [(0, 4), (4, 0), (1000, 3)])
def test_bias_add_and_grad(cpu_path, rng, shape):
    x, bias = f32(rng, *shape), f32(rng, shape[1])
    np.testing.assert_allclose(ops.bias_add(x, bias), x.astype(np.float64) + bias, rtol=1e-6, atol=1e-6)
    g = f32(rng, *shape)
    np.testing.assert_allclose(ops.bias_grad(g), g.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    acc = np.ones(shape[1], np.float32)
    ops.bias_grad(g, out=acc, accumulate=True)
    np.testing.assert_allclose(acc, 1 + g.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES + [(100000, 1), (5,)])
def test_mse_and_backward(cpu_path, rng, shape):
    p, t = f32(rng, *shape), f32(rng, *shape)
    d = p.astype(np.float64) - t
    assert ops.mse_loss(p, t) == pytest.approx(np.mean(d * d), rel=1e-12)
    np.testing.assert_allclose(ops.mse_loss_backward(p, t), 2 * d / d.size, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ops.mse_loss_backward(p, t, reduction="sum", grad_output=0.5), d,
                               rtol=1e-6, atol=1e-9)


def test_mse_large_batch_is_accurate():
    # 4M elements of 0.1 error: float32 sequential accumulation would drift; float64 chunks do not
    n = 1 << 22
    p = np.full(n, 0.1, np.float32)
    t = np.zeros(n, np.float32)
    assert ops.mse_loss(p, t) == pytest.approx(float(np.float32(0.1)) ** 2, rel=1e-12)


def test_mse_empty_is_nan():
    e = np.zeros((0, 1), np.float32)
    assert np.isnan(ops.mse_loss(e, e))


def sgd_reference(p, g, buf, lr, momentum, dampening, wd, nesterov, maximize, first):
    p, g = p.astype(np.float64), g.astype(np.float64)
    g = -g if maximize else g
    g = g + wd * p
    if momentum:
        buf = g.copy() if first else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


@pytest.mark.parametrize("momentum,dampening,wd,nesterov,maximize",
                         [(0, 0, 0, False, False), (0.9, 0, 1e-4, True, False), (0.9, 0.1, 0, False, False),
                          (0.5, 0, 0.01, False, True), (0, 0, 0.1, False, False)])
def test_sgd_step_matches_torch_semantics(cpu_path, rng, momentum, dampening, wd, nesterov, maximize):
    p, buf = f32(rng, 37, 5), np.zeros((37, 5), np.float32)
    ref_p, ref_buf = p.astype(np.float64), None
    for step in range(3):
        g = f32(rng, 37, 5)
        ref_p, ref_buf = sgd_reference(ref_p, g, ref_buf, 0.1, momentum, dampening, wd, nesterov,
                                       maximize, step == 0)
        ops.sgd_step(p, g, buf if momentum else None, lr=0.1, momentum=momentum, dampening=dampening,
                     weight_decay=wd, nesterov=nesterov, maximize=maximize, first_step=step == 0)
    np.testing.assert_allclose(p, ref_p, rtol=1e-5, atol=1e-6)


def test_gradients_by_finite_differences(rng):
    """loss(x) = mse(relu(x W^T + b) V^T + c, t): the ops' backward chain vs central differences in float64."""
    x, w, b, v, c, t = (f32(rng, 4, 3), f32(rng, 5, 3), f32(rng, 5), f32(rng, 2, 5), f32(rng, 2),
                        f32(rng, 4, 2))

    def loss64(w_):
        h = relu64(x.astype(np.float64) @ w_.T + b)
        y = h @ v.T.astype(np.float64) + c
        return np.mean((y - t) ** 2)

    h = ops.linear(x, w, b, relu=True)
    y = ops.linear(h, v, c)
    dy = ops.mse_loss_backward(y, t)
    dh = ops.matmul(dy, v)
    dz = ops.relu_backward(dh, h)
    dw = ops.matmul(dz.T, x)
    db = ops.bias_grad(dz)
    eps = 1e-6
    w64 = w.astype(np.float64)
    num = np.zeros_like(w64)
    for i in np.ndindex(*w.shape):
        e = np.zeros_like(w64)
        e[i] = eps
        num[i] = (loss64(w64 + e) - loss64(w64 - e)) / (2 * eps)
    np.testing.assert_allclose(dw, num, rtol=1e-3, atol=1e-5)
    numb = np.array([(loss64_b(x, w64, b, v, c, t, j, eps)) for j in range(5)])
    np.testing.assert_allclose(db, numb, rtol=1e-3, atol=1e-5)


def loss64_b(x, w, b, v, c, t, j, eps):
    def f(b_):
        h = relu64(x.astype(np.float64) @ w.T + b_)
        return np.mean((h @ v.T.astype(np.float64) + c - t) ** 2)
    e = np.zeros(len(b))
    e[j] = eps
    return (f(b + e) - f(b - e)) / (2 * eps)


def test_one_and_two_threads_bitwise_equal(threads, rng):
    a, b, bias = f32(rng, 300, 200), f32(rng, 200, 150), f32(rng, 150)
    g = f32(rng, 5000, 70)
    results = []
    for n in (1, 2):
        threads(n)
        results.append((ops.matmul(a, b, bias=bias, relu=True), ops.bias_grad(g), ops.mse_loss(g, g * 0.5)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]


# ---- argument checks (the bindings) -------------------------------------------------------

def test_wrong_dtype_is_type_error_with_fix():
    a = np.ones((2, 3))
    with pytest.raises(TypeError, match=r"float64.*astype\(numpy.float32\)"):
        ops.matmul(a, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        ops.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="int64"):
        ops.relu(np.arange(3))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        ops.matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="same shape"):
        ops.mse_loss(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="10 features"):
        ops.linear(np.ones((4, 7), np.float32), np.ones((20, 10), np.float32))


def test_outputs_must_be_writable_contiguous():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.matmul(a, a, out=np.zeros((4, 4), np.float32).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.relu(a, out=np.zeros((4, 8), np.float32)[:, ::2])
    ro = np.zeros((4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.matmul(a, a, out=ro)
    p = np.zeros((4, 4), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.sgd_step(p, np.ones((4, 2), np.float32), lr=0.1)


def test_aliased_output_is_rejected():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        ops.matmul(a, a, out=a)
    x = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        ops.bias_add(x, x[0], out=x)  # the bias row would be overwritten while being read
    flat = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        ops.relu(flat[:8], out=flat[2:])  # shifted overlap: only an exact alias is in-place


def test_beta_without_out_is_an_error():
    a = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="beta"):
        ops.matmul(a, a, beta=1.0)


def test_bad_cpu_path_is_clear_error():
    with pytest.raises(ValueError, match="generic, avx2, avx512"):
        fastmlp.set_cpu_path("sse9")
