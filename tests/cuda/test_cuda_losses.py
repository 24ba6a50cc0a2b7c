"""The CUDA loss kernels against the CPU kernels and torch-shaped eager use (GPU only).

Marked `cuda` (tests/cuda/conftest.py) and skipped where no GPU, CUDA module or CuPy is present.
"""
import numpy as np
import pytest

import fastmlp
import fastmlp.nn.functional as F
from fastmlp import ops

pytestmark = pytest.mark.cuda
cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fastmlp._cuda")


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 10), (3, 1000), (4, 6, 3), (300, 257)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_cross_entropy_index_matches_cpu(shape, weighted, ls):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[1], shape[:1] + shape[2:])
    t.reshape(-1)[0] = -100
    w = rng.random(shape[1]).astype(np.float32) + 0.1 if weighted else None
    kw = dict(ignore_index=-100, label_smoothing=ls)
    s, ws, d, rows = ops.cross_entropy_forward_backward(x, t, w, want_rows=True, **kw)
    gs, gws, gd, grows = ops.cross_entropy_forward_backward(
        cp.asarray(x), cp.asarray(t), None if w is None else cp.asarray(w), want_rows=True, **kw)
    np.testing.assert_allclose(gs, s, rtol=1e-6, atol=1e-6)
    assert abs(gws - ws) <= 1e-9 * max(1.0, abs(ws))
    np.testing.assert_allclose(cp.asnumpy(gd), d, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(grows), rows, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(rows.shape).astype(np.float32)
    db = ops.cross_entropy_backward(x, t, w, g, scale=0.5, **kw)
    gdb = ops.cross_entropy_backward(cp.asarray(x), cp.asarray(t),
                                     None if w is None else cp.asarray(w), cp.asarray(g), scale=0.5,
                                     **kw)
    np.testing.assert_allclose(cp.asnumpy(gdb), db, rtol=1e-5, atol=1e-7)


def test_cross_entropy_probabilities_and_bad_class():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 7)).astype(np.float32)
    p = rng.random((9, 7)).astype(np.float32)
    s, _ = ops.cross_entropy_prob_forward(x, p, label_smoothing=0.1)
    gs, _ = ops.cross_entropy_prob_forward(cp.asarray(x), cp.asarray(p), label_smoothing=0.1)
    np.testing.assert_allclose(gs, s, rtol=1e-6)
    d = ops.cross_entropy_prob_backward(x, p, None, None, scale=0.3, label_smoothing=0.1)
    gd = ops.cross_entropy_prob_backward(cp.asarray(x), cp.asarray(p), None, None, scale=0.3,
                                         label_smoothing=0.1)
    np.testing.assert_allclose(cp.asnumpy(gd), d, rtol=1e-5, atol=1e-7)
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        ops.cross_entropy_forward(cp.asarray(x), cp.asarray(np.full(9, 7)))


@pytest.mark.parametrize("kind", ["mse", "l1", "smooth_l1", "huber", "bce_with_logits"])
@pytest.mark.parametrize("n", [1, 100, 70001])
def test_elementwise_losses_match_cpu(kind, n):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(n).astype(np.float32) * 2
    t = np.abs(rng.standard_normal(n).astype(np.float32)) / 3
    w = rng.random(n).astype(np.float32)
    k = ops.LOSS_KINDS[kind]
    s, out = ops.loss_elementwise_forward(k, x, t, w, p0=0.5, want_out=True)
    gs, gout = ops.loss_elementwise_forward(k, cp.asarray(x), cp.asarray(t), cp.asarray(w), p0=0.5,
                                            want_out=True)
    np.testing.assert_allclose(gs, s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(gout), out, rtol=1e-6, atol=1e-7)
    d = ops.loss_elementwise_backward(k, x, t, w, None, None, p0=0.5, scale=0.1)
    gd = ops.loss_elementwise_backward(k, cp.asarray(x), cp.asarray(t), cp.asarray(w), None, None,
                                       p0=0.5, scale=0.1)
    np.testing.assert_allclose(cp.asnumpy(gd), d, rtol=1e-6, atol=1e-7)


def test_eager_losses_on_cuda_tensors():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    t = rng.integers(0, 5, 16)
    a = fastmlp.tensor(x, requires_grad=True)
    F.cross_entropy(a, fastmlp.tensor(t), label_smoothing=0.1).backward()
    b = fastmlp.tensor(x, device="cuda", requires_grad=True)
    lb = F.cross_entropy(b, fastmlp.tensor(t, device="cuda"), label_smoothing=0.1)
    lb.backward()
    np.testing.assert_allclose(b.grad.cpu().numpy(), a.grad.numpy(), rtol=1e-5, atol=1e-7)
    y = rng.random((16, 5)).astype(np.float32)
    for fn in (F.l1_loss, F.huber_loss, F.smooth_l1_loss, F.binary_cross_entropy_with_logits):
        la = fn(fastmlp.tensor(x), fastmlp.tensor(y))
        lg = fn(fastmlp.tensor(x, device="cuda"), fastmlp.tensor(y, device="cuda"))
        np.testing.assert_allclose(float(lg.item()), float(la.item()), rtol=1e-5)
