"""Property-based tests: every op of fastmlp.ops against a float64 numpy reference over random
shapes, layouts and values (hypothesis; bounded example counts so the file runs in seconds)."""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import ops  # noqa: E402

# FASTMLP_HYPOTHESIS_EXAMPLES=2000 for a deeper (random, not derandomized) local hunt.
_EXAMPLES = int(os.environ.get("FASTMLP_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXAMPLES or 60, deadline=None, derandomize=not _EXAMPLES, database=None)

dim = st.integers(0, 40)
pos = st.integers(1, 40)
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
any_float = st.floats(width=32)  # includes nan, +-inf, subnormals, -0.0


def arrays(shape, elements=finite):
    return hnp.arrays(np.float32, shape, elements=elements)


@st.composite
def layout(draw, arr):
    """The same logical matrix as a C-contiguous, transposed-storage, strided or reversed view."""
    kind = draw(st.sampled_from(["c", "t", "strided", "reversed", "padded", "padded_t"]))
    if kind == "t":
        return np.ascontiguousarray(arr.T).T
    if kind in ("padded", "padded_t") and arr.ndim == 2:
        # read in place with a leading dimension larger than the row (no copy in the binding);
        # the padding holds NaN so reading it would show in the result
        src = arr if kind == "padded" else arr.T
        pad = draw(st.integers(1, 17))
        big = np.full((src.shape[0], src.shape[1] + pad), np.nan, np.float32)
        off = draw(st.integers(0, pad))
        view = big[:, off:off + src.shape[1]]
        view[...] = src
        return view if kind == "padded" else view.T
    if kind == "strided":
        big = np.zeros((arr.shape[0] * 2, arr.shape[1] * 3 if arr.ndim > 1 else 0) if arr.ndim > 1
                       else (arr.shape[0] * 2,), np.float32)
        view = big[::2, ::3] if arr.ndim > 1 else big[::2]
        view[...] = arr
        return view
    if kind == "reversed":
        r = np.ascontiguousarray(arr[::-1])[::-1]
        return r
    return arr


def tol(k, scale=1.0):
    return 2e-6 * max(1, k) * max(scale, 1.0)


def relu64(x):
    return np.where(np.isnan(x), x, np.maximum(x, 0))


@st.composite
def gemm_case(draw):
    m, k, n = draw(dim), draw(dim), draw(dim)
    a = draw(arrays((m, k)))
    b = draw(arrays((k, n)))
    return m, k, n, draw(layout(a)), draw(layout(b))


@SETTINGS
@given(gemm_case(), st.sampled_from([1.0, -0.5, 2.0]), st.sampled_from([0.0, 1.0, 0.25]),
       st.booleans(), st.booleans(), st.data())
def test_matmul(case, alpha, beta, relu, with_bias, data):
    m, k, n, a, b = case
    c0 = data.draw(arrays((m, n)))
    bias = data.draw(arrays((n,))) if with_bias else None
    out = c0.copy()
    ops.matmul(a, b, out=out, alpha=alpha, beta=beta, bias=bias, relu=relu)
    ref = alpha * (a.astype(np.float64) @ b.astype(np.float64)) + beta * c0.astype(np.float64)
    if with_bias:
        ref = ref + bias
    if relu:
        ref = relu64(ref)
    scale = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=tol(k, scale) + 1e-6 * float(np.abs(ref).max(initial=0)))


@SETTINGS
@given(pos, pos, pos, st.data())
def test_linear(m, k, n, data):
    x = data.draw(layout(data.draw(arrays((m, k)))))
    w = data.draw(layout(data.draw(arrays((n, k)))))
    b = data.draw(arrays((n,)))
    relu = data.draw(st.booleans())
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    if relu:
        ref = relu64(ref)
    scale = float(np.abs(x).max()) * float(np.abs(w).max())
    np.testing.assert_allclose(ops.linear(x, w, b, relu=relu), ref, rtol=1e-5, atol=tol(k, scale) + 1e-3)


@SETTINGS
@given(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=20), st.data())
def test_relu_forward_backward(shape, data):
    x = data.draw(arrays(shape, any_float))
    g = data.draw(arrays(shape, any_float))
    y = ops.relu(x)
    np.testing.assert_array_equal(y, relu64(x.astype(np.float64)).astype(np.float32))
    ref = np.where(y.astype(np.float64) > 0, g.astype(np.float64), 0.0)
    np.testing.assert_array_equal(ops.relu_backward(g, y), ref.astype(np.float32))


@SETTINGS
@given(dim, dim, st.data())
def test_bias_add_and_grad(bsz, c, data):
    x = data.draw(layout(data.draw(arrays((bsz, c)))))
    b = data.draw(arrays((c,)))
    np.testing.assert_allclose(ops.bias_add(x, b), x.astype(np.float64) + b, rtol=1e-6, atol=1e-4)
    ref = x.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(ops.bias_grad(x), ref, rtol=1e-5, atol=1e-6 * max(bsz, 1) * 1e3)


@SETTINGS
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=20), st.data())
def test_mse_loss_and_backward(shape, data):
    p = data.draw(arrays(shape))
    t = data.draw(arrays(shape))
    d = p.astype(np.float64) - t.astype(np.float64)
    n = d.size
    loss = ops.mse_loss(p, t)
    if n == 0:
        assert np.isnan(loss)
    else:
        np.testing.assert_allclose(loss, np.mean(d * d), rtol=1e-9)
    reduction = data.draw(st.sampled_from(["mean", "sum"]))
    go = data.draw(st.sampled_from([1.0, 0.5, -3.0]))
    ref = 2.0 * d * go / (max(n, 1) if reduction == "mean" else 1)
    np.testing.assert_allclose(ops.mse_loss_backward(p, t, grad_output=go, reduction=reduction), ref,
                               rtol=1e-5, atol=1e-5)


@SETTINGS
@given(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=30),
       st.sampled_from([0.01, 0.1, 1.0]), st.sampled_from([0.0, 0.9]), st.sampled_from([0.0, 0.1]),
       st.sampled_from([0.0, 1e-2]), st.booleans(), st.booleans(), st.booleans(), st.data())
def test_sgd_step_matches_torch_formula(shape, lr, momentum, dampening, wd, nesterov, maximize, first, data):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False
    p = data.draw(arrays(shape))
    g = data.draw(arrays(shape))
    buf = data.draw(arrays(shape)) if momentum else None
    p64, g64 = p.astype(np.float64), g.astype(np.float64)
    # torch.optim.SGD (single tensor), in float64
    d = -g64 if maximize else g64
    if wd:
        d = d + wd * p64
    want_buf = None
    if momentum:
        want_buf = d.copy() if first else momentum * buf.astype(np.float64) + (1 - dampening) * d
        d = d + momentum * want_buf if nesterov else want_buf
    want = p64 - lr * d
    ops.sgd_step(p, g, buf, lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd,
                 nesterov=nesterov, maximize=maximize, first_step=first)
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-3)
    if momentum:
        np.testing.assert_allclose(buf, want_buf, rtol=1e-5, atol=1e-3)


@SETTINGS
@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 64), st.data())
def test_thread_count_never_changes_results(m, n, k, data):
    a = data.draw(arrays((m, k)))
    b = data.draw(arrays((k, n)))
    before = fastmlp.get_num_threads()
    try:
        res = []
        for t in (1, 2):
            fastmlp.set_num_threads(t)
            res.append((ops.matmul(a, b, relu=True), ops.bias_grad(a), ops.mse_loss(a, a * 0.5)))
    finally:
        fastmlp.set_num_threads(before)
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])
    assert res[0][2] == res[1][2]


# ---- the layer kernels behind nn.Linear / optim.SGD (fastmlp._C) ------------------------------

@SETTINGS
@given(dim, pos, pos, st.booleans(), st.booleans(), st.data())
def test_linear_forward_backward_kernels(b, c, oc, relu, with_bias, data):
    _C = fastmlp._C
    x = data.draw(arrays((b, c)))
    w = data.draw(arrays((oc, c)))
    bias = data.draw(arrays((oc,))) if with_bias else None
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    z = x64 @ w64.T + (bias if with_bias else 0.0)
    ref = relu64(z) if relu else z
    y = _C.linear_forward(x, w, bias, relu)
    scale = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=tol(c, scale) + 1e-3)
    g = data.draw(arrays((b, oc)))
    acc = data.draw(st.booleans())
    dw0 = data.draw(arrays((oc, c)))
    db0 = data.draw(arrays((oc,)))
    dw, db = dw0.copy(), db0.copy()
    dx, dw_r, db_r = _C.linear_backward(g, x, w, y if relu else None, dweight=dw, dbias=db,
                                        accumulate_weight=acc, accumulate_bias=acc)
    assert dw_r is dw and db_r is db
    gm = g.astype(np.float64) * (y > 0) if relu else g.astype(np.float64)
    gscale = float(np.abs(g).max(initial=0))
    np.testing.assert_allclose(dx, gm @ w64, rtol=1e-5, atol=tol(oc, gscale * float(np.abs(w).max(initial=0))) + 1e-3)
    np.testing.assert_allclose(dw, gm.T @ x64 + (dw0 if acc else 0.0), rtol=1e-5,
                               atol=tol(b, gscale * float(np.abs(x).max(initial=0))) + 1e-3)
    np.testing.assert_allclose(db, gm.sum(0) + (db0 if acc else 0.0), rtol=1e-5, atol=tol(b, gscale) + 1e-3)


@SETTINGS
@given(st.lists(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=12), min_size=1, max_size=4),
       st.sampled_from([0.0, 0.9]), st.booleans(), st.data())
def test_sgd_step_many_matches_sgd_step(shapes, momentum, first, data):
    params = [data.draw(arrays(s)) for s in shapes]
    grads = [data.draw(arrays(s)) for s in shapes]
    bufs = [data.draw(arrays(s)) for s in shapes] if momentum else None
    want_p = [p.copy() for p in params]
    want_b = [b.copy() for b in bufs] if momentum else [None] * len(shapes)
    for p, g, b in zip(want_p, grads, want_b):
        ops.sgd_step(p, g, b, lr=0.1, momentum=momentum, weight_decay=0.01, first_step=first)
    fastmlp._C.sgd_step_many(params, grads, bufs, [first] * len(shapes), 0.1, momentum=momentum,
                             weight_decay=0.01)
    for a, b in zip(params, want_p):
        np.testing.assert_array_equal(a, b)
    if momentum:
        for a, b in zip(bufs, want_b):
            np.testing.assert_array_equal(a, b)
