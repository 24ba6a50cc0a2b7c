"""Losses against PyTorch: values and gradients for every option combination (float32 on the
kernels, float64 on numpy), the kernels against their naive reference, thread-count independence,
and bad input."""
import pickle
import warnings

import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
import fastmlp.nn.functional as F
from fastmlp import _C

torch = pytest.importorskip("torch")
TF = torch.nn.functional

DTYPES = [np.float32, np.float64]


def tol(dt):
    return dict(rtol=2e-5, atol=2e-6) if dt == np.float32 else dict(rtol=1e-10, atol=1e-12)


def run_both(fm_fn, th_fn, x, others, reduction, rng, grad_target=None):
    """Forward and backward of the same loss in fastmlp and torch; returns both (value, grads)."""
    xa = fastmlp.tensor(x, requires_grad=True)
    xb = torch.tensor(x, requires_grad=True)
    ta = [fastmlp.tensor(o) if isinstance(o, np.ndarray) else o for o in others]
    tb = [torch.tensor(o) if isinstance(o, np.ndarray) else o for o in others]
    if grad_target is not None:
        ta[0] = fastmlp.tensor(others[0], requires_grad=True)
        tb[0] = torch.tensor(others[0], requires_grad=True)
    la, lb = fm_fn(xa, *ta), th_fn(xb, *tb)
    if reduction == "none":
        g = rng.standard_normal(lb.shape).astype(x.dtype)
        la.backward(fastmlp.tensor(g))
        lb.backward(torch.tensor(g))
    else:
        (la * 1.5).backward()
        (lb * 1.5).backward()
    out = [(la.detach().numpy(), lb.detach().numpy()), (xa.grad.numpy(), xb.grad.numpy())]
    if grad_target is not None:
        out.append((ta[0].grad.numpy(), tb[0].grad.numpy()))
    return out


def check(pairs, dt):
    for a, b in pairs:
        assert a.shape == b.shape, (a.shape, b.shape)
        assert a.dtype == b.dtype or a.dtype == np.dtype(dt)
        np.testing.assert_allclose(a, b, **tol(dt))


# ---- cross-entropy ---------------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.25])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (4, 5, 3), (5,), (3, 4, 2, 2)])
def test_cross_entropy_index_targets(dt, reduction, weighted, ls, ignore, shape, rng):
    x = (rng.standard_normal(shape) * 2).astype(dt)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    t = rng.integers(0, C, tshape).astype(np.int64)
    ii = -100
    if ignore:
        ii = 2 if len(shape) > 1 else -100
        if len(shape) > 1:
            t.reshape(-1)[0] = 2
    w = rng.random(C).astype(dt) + 0.1 if weighted else None
    kw = dict(reduction=reduction, label_smoothing=ls, ignore_index=ii)
    fm_w = None if w is None else fastmlp.tensor(w)
    th_w = None if w is None else torch.tensor(w)
    res = run_both(lambda a, b: F.cross_entropy(a, b, weight=fm_w, **kw),
                   lambda a, b: TF.cross_entropy(a, b, weight=th_w, **kw), x, [t], reduction, rng)
    check(res, dt)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)])
def test_cross_entropy_probability_targets(dt, reduction, weighted, ls, shape, rng):
    x = rng.standard_normal(shape).astype(dt)
    p = rng.random(shape).astype(dt)
    p /= p.sum(axis=1, keepdims=True)
    w = rng.random(shape[1]).astype(dt) + 0.1 if weighted else None
    fm_w = None if w is None else fastmlp.tensor(w)
    th_w = None if w is None else torch.tensor(w)
    kw = dict(reduction=reduction, label_smoothing=ls)
    res = run_both(lambda a, b: F.cross_entropy(a, b, weight=fm_w, **kw),
                   lambda a, b: TF.cross_entropy(a, b, weight=th_w, **kw), x, [p], reduction, rng)
    check(res, dt)


def test_cross_entropy_every_cpu_path(cpu_path, rng):
    x = rng.standard_normal((33, 17)).astype(np.float32)
    t = rng.integers(0, 17, 33)
    res = run_both(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1),
                   lambda a, b: TF.cross_entropy(a, b, label_smoothing=0.1), x, [t], "mean", rng)
    check(res, np.float32)


def test_cross_entropy_kernel_matches_reference(rng):
    x = rng.standard_normal((9, 7, 4)).astype(np.float32) * 3
    t = rng.integers(0, 7, (9, 4))
    t[0, 0] = -1
    w = rng.random(7).astype(np.float32)
    for ls in (0.0, 0.4):
        s, ws, rows = _C.cross_entropy_forward(x, t, w, -1, ls, True)
        rs, rws, rrows = _C.cross_entropy_forward_reference(x, t, w, -1, ls)
        np.testing.assert_allclose(rows, rrows, rtol=1e-6, atol=1e-6)
        assert abs(s - rs) < 1e-5 * abs(rs) and abs(ws - rws) < 1e-12


def test_cross_entropy_thread_count_independent(threads, rng):
    x = rng.standard_normal((700, 301)).astype(np.float32)
    t = rng.integers(0, 301, 700)
    w = rng.random(301).astype(np.float32)
    out = []
    for n in (1, 2):
        threads(n)
        out.append(fastmlp.ops.cross_entropy_forward_backward(x, t, w, label_smoothing=0.1))
    assert out[0][0] == out[1][0] and out[0][1] == out[1][1]
    assert np.array_equal(out[0][2], out[1][2])


def test_cross_entropy_stable_for_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [-5e4, 5e4, 0.0]], np.float32)
    t = np.array([1, 0])
    res = run_both(F.cross_entropy, TF.cross_entropy, x, [t], "mean", np.random.default_rng(0))
    check(res, np.float32)


def test_cross_entropy_all_ignored_is_nan_as_torch():
    x = np.zeros((3, 4), np.float32)
    t = np.full(3, -100)
    assert np.isnan(F.cross_entropy(fastmlp.tensor(x), fastmlp.tensor(t)).item())
    assert np.isnan(TF.cross_entropy(torch.tensor(x), torch.tensor(t)).item())


def test_cross_entropy_uint8_targets_and_no_grad(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = rng.integers(0, 4, 5).astype(np.uint8)
    a = F.cross_entropy(fastmlp.tensor(x), fastmlp.tensor(t))
    b = TF.cross_entropy(torch.tensor(x), torch.tensor(t).long())
    assert not a.requires_grad
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-6)


# ---- NLL -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (4, 5, 3), (5,)])
def test_nll_loss(dt, reduction, weighted, shape, rng):
    x = rng.standard_normal(shape).astype(dt)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    t = rng.integers(0, C, tshape).astype(np.int64)
    if len(shape) > 1:
        t.reshape(-1)[0] = 1
    w = rng.random(C).astype(dt) + 0.1 if weighted else None
    fm_w = None if w is None else fastmlp.tensor(w)
    th_w = None if w is None else torch.tensor(w)
    kw = dict(reduction=reduction, ignore_index=1)
    res = run_both(lambda a, b: F.nll_loss(a, b, weight=fm_w, **kw),
                   lambda a, b: TF.nll_loss(a, b, weight=th_w, **kw), x, [t], reduction, rng)
    check(res, dt)


def test_log_softmax_then_nll_equals_cross_entropy_module(rng):
    x = rng.standard_normal((8, 6)).astype(np.float32)
    t = rng.integers(0, 6, 8)
    a = nn.CrossEntropyLoss()(fastmlp.tensor(x), fastmlp.tensor(t))
    b = torch.nn.NLLLoss()(torch.tensor(x).log_softmax(1), torch.tensor(t))
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-6)


# ---- BCE, BCE with logits --------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(dt, reduction, weighted, rng):
    x = rng.random((7, 3)).astype(dt) * 0.98 + 0.01
    t = rng.random((7, 3)).astype(dt)
    w = rng.random((3,)).astype(dt) if weighted else None
    fm_w = None if w is None else fastmlp.tensor(w)
    th_w = None if w is None else torch.tensor(w)
    res = run_both(lambda a, b: F.binary_cross_entropy(a, b, weight=fm_w, reduction=reduction),
                   lambda a, b: TF.binary_cross_entropy(a, b, weight=th_w, reduction=reduction),
                   x, [t], reduction, rng, grad_target=True)
    check(res, dt)


def test_binary_cross_entropy_log_clamped_at_minus_100():
    x = np.array([0.0, 1.0, 0.5], np.float32)
    t = np.array([1.0, 0.0, 1.0], np.float32)
    a = F.binary_cross_entropy(fastmlp.tensor(x), fastmlp.tensor(t), reduction="none")
    b = TF.binary_cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none")
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert a.numpy()[0] == 100.0


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos", [None, "vector", "full"])
def test_binary_cross_entropy_with_logits(dt, reduction, weighted, pos, rng):
    x = (rng.standard_normal((6, 4)) * 4).astype(dt)
    x[0, 0], x[0, 1] = 80.0, -80.0  # the stable form: no overflow
    t = rng.random((6, 4)).astype(dt)
    w = rng.random((6, 1)).astype(dt) if weighted else None
    pw = {None: None, "vector": rng.random(4).astype(dt) * 3,
          "full": rng.random((6, 4)).astype(dt) * 3}[pos]
    fa = dict(weight=None if w is None else fastmlp.tensor(w),
              pos_weight=None if pw is None else fastmlp.tensor(pw), reduction=reduction)
    fb = dict(weight=None if w is None else torch.tensor(w),
              pos_weight=None if pw is None else torch.tensor(pw), reduction=reduction)
    res = run_both(lambda a, b: F.binary_cross_entropy_with_logits(a, b, **fa),
                   lambda a, b: TF.binary_cross_entropy_with_logits(a, b, **fb), x, [t],
                   reduction, rng, grad_target=True)
    check(res, dt)


# ---- L1, SmoothL1, Huber ---------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,kw", [("l1_loss", {}), ("smooth_l1_loss", {"beta": 1.0}),
                                     ("smooth_l1_loss", {"beta": 0.3}),
                                     ("smooth_l1_loss", {"beta": 0.0}),
                                     ("huber_loss", {"delta": 1.0}), ("huber_loss", {"delta": 0.4})])
def test_regression_losses(dt, reduction, name, kw, rng):
    x = (rng.standard_normal((9, 5)) * 1.5).astype(dt)
    t = rng.standard_normal((9, 5)).astype(dt)
    res = run_both(lambda a, b: getattr(F, name)(a, b, reduction=reduction, **kw),
                   lambda a, b: getattr(TF, name)(a, b, reduction=reduction, **kw), x, [t],
                   reduction, rng, grad_target=True)
    check(res, dt)


def test_regression_loss_broadcast_target_warns_as_torch(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = rng.standard_normal((3,)).astype(np.float32)
    with pytest.warns(UserWarning, match="different to the input size"):
        a = F.l1_loss(fastmlp.tensor(x), fastmlp.tensor(t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = TF.l1_loss(torch.tensor(x), torch.tensor(t))
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-6)


def test_elementwise_kernels_thread_count_independent(threads, rng):
    x = rng.standard_normal(100_003).astype(np.float32)
    t = rng.standard_normal(100_003).astype(np.float32)
    got = []
    for n in (1, 2):
        threads(n)
        got.append(fastmlp.ops.loss_elementwise_forward_backward(
            fastmlp.ops.LOSS_KINDS["huber"], x, t, p0=0.5, scale=1e-5))
    assert got[0][0] == got[1][0] and np.array_equal(got[0][1], got[1][1])


# ---- modules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda m, w: m.CrossEntropyLoss(weight=w, label_smoothing=0.1, ignore_index=0),
    lambda m, w: m.NLLLoss(weight=w, reduction="sum"),
    lambda m, w: m.L1Loss(reduction="none"),
    lambda m, w: m.SmoothL1Loss(beta=0.5),
    lambda m, w: m.HuberLoss(delta=2.0, reduction="sum"),
    lambda m, w: m.MSELoss(),
    lambda m, w: m.BCEWithLogitsLoss(pos_weight=w),
    lambda m, w: m.BCELoss(weight=w),
])
def test_loss_modules(make, rng):
    x = rng.random((6, 4)).astype(np.float32) * 0.9 + 0.05
    w = rng.random(4).astype(np.float32) + 0.5
    a_mod, b_mod = make(nn, fastmlp.tensor(w)), make(torch.nn, torch.tensor(w))
    if isinstance(b_mod, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)):
        t = rng.integers(0, 4, 6)
    else:
        t = rng.random((6, 4)).astype(np.float32)
    assert sorted(a_mod.state_dict().keys()) == sorted(b_mod.state_dict().keys())
    a = a_mod(fastmlp.tensor(x), fastmlp.tensor(t))
    b = b_mod(torch.tensor(x), torch.tensor(t))
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_legacy_size_average_reduce(rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    t = rng.integers(0, 3, 5)
    for sa, rd in [(False, None), (None, False), (True, True)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = torch.nn.CrossEntropyLoss(size_average=sa, reduce=rd)(torch.tensor(x),
                                                                       torch.tensor(t))
        a = nn.CrossEntropyLoss(size_average=sa, reduce=rd)(fastmlp.tensor(x), fastmlp.tensor(t))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
        a2 = F.l1_loss(fastmlp.tensor(x), fastmlp.tensor(x * 0), size_average=sa, reduce=rd)
        assert a2.ndim == (2 if b.ndim else 0)


# ---- bad input -------------------------------------------------------------------------------
def test_out_of_range_class_names_value_and_classes():
    x = fastmlp.zeros(3, 5)
    with pytest.raises(IndexError, match=r"Target 7 is out of bounds\..*5 classes") as e:
        F.cross_entropy(x, fastmlp.tensor([1, 7, 2]))
    pickle.loads(pickle.dumps(e.value))
    with pytest.raises(IndexError, match="Target -3 is out of bounds"):
        F.nll_loss(x, fastmlp.tensor([1, -3, 2]))
    with pytest.raises(IndexError, match="Target 9 is out of bounds"):  # the kernel's own check
        _C.cross_entropy_forward(np.zeros((2, 5), np.float32), np.array([0, 9]))


def test_wrong_target_dtype():
    x = fastmlp.zeros(3, 5)
    with pytest.raises(TypeError, match="Long or Byte, but got Int") as e:
        F.cross_entropy(x, fastmlp.tensor(np.array([1, 2, 3], np.int32)))
    pickle.loads(pickle.dumps(e.value))
    with pytest.raises(TypeError, match="int64"):
        _C.cross_entropy_forward(np.zeros((2, 5), np.float32), np.array([0.0, 1.0]))


def test_probability_target_shape_mismatch_names_both_shapes():
    x = fastmlp.zeros(4, 5)
    with pytest.raises(ValueError, match=r"\[4, 5\].*\[4, 3\]"):
        F.cross_entropy(x, fastmlp.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\[4\].*\[4, 5\].*\[5\]"):
        F.cross_entropy(x, fastmlp.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"Target size .*\[4, 3\].*input size .*\[4, 5\]"):
        F.binary_cross_entropy_with_logits(x, fastmlp.zeros(4, 3))
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(fastmlp.zeros(4, 5), fastmlp.zeros(4, 3))


def test_bad_options():
    x = fastmlp.zeros(4, 5)
    t = fastmlp.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=-0.1)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.L1Loss(reduction="avg")
    with pytest.raises(ValueError, match="weight"):
        F.cross_entropy(x, t, weight=fastmlp.ones(3))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(fastmlp.full((2,), 1.5), fastmlp.zeros(2))
    with pytest.raises(ValueError, match="beta"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        F.huber_loss(x, x, delta=0.0)
