"""Dropout, LayerNorm, BatchNorm1d, Flatten/Unflatten and Embedding against PyTorch: values,
gradients, running statistics over several steps, state_dict names and loading a torch state_dict;
Dropout's statistics and seeding; bad input."""
import pickle

import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
import fastmlp.nn.functional as F

torch = pytest.importorskip("torch")

DTYPES = [np.float32, np.float64]


def tol(dt):
    return dict(rtol=1e-5, atol=1e-5) if dt == np.float32 else dict(rtol=1e-10, atol=1e-11)


def copy_params(dst, src):
    dst.load_state_dict(src.state_dict())


# ---- Dropout ---------------------------------------------------------------------------------
def test_dropout_statistics_and_gradient():
    fastmlp.manual_seed(0)
    x = fastmlp.ones(400, 500, requires_grad=True)
    p = 0.3
    y = F.dropout(x, p=p, training=True)
    a = y.detach().numpy()
    kept = a != 0
    assert abs(kept.mean() - (1 - p)) < 0.005  # 200k Bernoulli draws: sd ~0.001
    np.testing.assert_allclose(a[kept], 1 / (1 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), a)  # gradient is the same scaled mask


def test_dropout_seeded_by_manual_seed_and_modes():
    m = nn.Dropout(0.5)
    x = fastmlp.randn(50, 40)
    fastmlp.manual_seed(7)
    a = m(x).numpy()
    fastmlp.manual_seed(7)
    b = m(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, m(x).numpy())
    m.eval()
    assert m(x) is x
    assert F.dropout(x, 0.5, training=False) is x


def test_dropout_p0_p1_exact():
    x = fastmlp.randn(20, 30, requires_grad=True)
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    assert np.all(y.detach().numpy() == 0)
    y.sum().backward()
    assert np.all(x.grad.numpy() == 0)
    tx = torch.randn(20, 30)
    assert torch.all(torch.nn.functional.dropout(tx, 1.0) == 0)


def test_dropout_inplace():
    x = fastmlp.ones(30, 30)
    y = F.dropout(x, 0.5, inplace=True)
    assert y is x and (x.numpy() == 0).any()
    w = fastmlp.ones(10, 10, requires_grad=True)
    h = w * 3.0
    out = nn.Dropout(0.5, inplace=True)(h)
    assert out is h
    out.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 3.0 * (h.detach().numpy() != 0) * 2.0)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        F.dropout(w, 0.5, inplace=True)


def test_dropout_bad_p():
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5") as e:
        nn.Dropout(p=1.5)
    pickle.loads(pickle.dumps(e.value))
    with pytest.raises(ValueError, match="but got -0.1"):
        F.dropout(fastmlp.ones(2), p=-0.1)


def test_dropout_in_model_eval_matches_torch():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2))
    fm = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))
    copy_params(fm, tm)
    tm.eval()
    fm.eval()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(fm(fastmlp.tensor(x)).detach().numpy(),
                               tm(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


# ---- LayerNorm -------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape,ns", [((6, 5), 5), ((3, 4, 5), (4, 5)), ((2, 3, 7), [7])])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_layer_norm(dt, shape, ns, affine, bias, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(dt)
    tdt = torch.float32 if dt == np.float32 else torch.float64
    tm = torch.nn.LayerNorm(ns, eps=1e-4, elementwise_affine=affine, bias=bias, dtype=tdt)
    fm = nn.LayerNorm(ns, eps=1e-4, elementwise_affine=affine, bias=bias,
                      dtype=fastmlp.float32 if dt == np.float32 else fastmlp.float64)
    assert list(fm.state_dict()) == list(tm.state_dict())
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype(dt)))
    copy_params(fm, tm)
    xa, xb = fastmlp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ya, yb = fm(xa), tm(xb)
    np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), **tol(dt))
    g = rng.standard_normal(shape).astype(dt)
    ya.backward(fastmlp.tensor(g))
    yb.backward(torch.tensor(g))
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), **tol(dt))
    for (na, pa), (nb, pb) in zip(fm.named_parameters(), tm.named_parameters()):
        assert na == nb
        np.testing.assert_allclose(pa.grad.numpy(), pb.grad.numpy(), **tol(dt))


def test_layer_norm_bad_shape():
    with pytest.raises(ValueError, match=r"normalized_shape=\[4\].*\[3, 5\]"):
        F.layer_norm(fastmlp.ones(3, 5), (4,))


# ---- BatchNorm1d -----------------------------------------------------------------------------
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_eval_running_stats(dt, momentum, shape, affine, rng):
    tdt = torch.float32 if dt == np.float32 else torch.float64
    tm = torch.nn.BatchNorm1d(3, momentum=momentum, affine=affine, dtype=tdt)
    fm = nn.BatchNorm1d(3, momentum=momentum, affine=affine,
                        dtype=fastmlp.float32 if dt == np.float32 else fastmlp.float64)
    assert list(fm.state_dict()) == list(tm.state_dict())
    if affine:
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(rng.random(3).astype(dt) + 0.5))
            tm.bias.copy_(torch.tensor(rng.standard_normal(3).astype(dt)))
        copy_params(fm, tm)
    for step in range(4):
        x = (rng.standard_normal(shape) * 2 + step).astype(dt)
        xa, xb = fastmlp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ya, yb = fm(xa), tm(xb)
        np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), **tol(dt))
        g = rng.standard_normal(shape).astype(dt)
        ya.backward(fastmlp.tensor(g))
        yb.backward(torch.tensor(g))
        np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), **tol(dt))
        if affine:
            np.testing.assert_allclose(fm.weight.grad.numpy(), tm.weight.grad.numpy(), **tol(dt))
            np.testing.assert_allclose(fm.bias.grad.numpy(), tm.bias.grad.numpy(), **tol(dt))
    sa, sb = fm.state_dict(), tm.state_dict()
    for k in sb:
        np.testing.assert_allclose(sa[k].numpy(), sb[k].numpy(), **tol(dt))
    assert int(sa["num_batches_tracked"].item()) == 4
    fm.eval()
    tm.eval()
    x = rng.standard_normal(shape).astype(dt)
    xa, xb = fastmlp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ya, yb = fm(xa), tm(xb)
    np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), **tol(dt))
    ya.sum().backward()
    yb.sum().backward()
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), **tol(dt))


def test_batch_norm_no_running_stats_and_load_torch_state_dict(rng):
    tm = torch.nn.BatchNorm1d(4, track_running_stats=False)
    fm = nn.BatchNorm1d(4, track_running_stats=False)
    assert list(fm.state_dict()) == list(tm.state_dict()) == ["weight", "bias"]
    fm.eval()
    tm.eval()
    x = rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_allclose(fm(fastmlp.tensor(x)).numpy(), tm(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    # a trained torch model's state_dict loads into fastmlp (running stats included)
    tnet = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU())
    for _ in range(3):
        tnet(torch.randn(10, 3))
    fnet = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())
    fnet.load_state_dict(tnet.state_dict())
    assert int(fnet[1].num_batches_tracked.item()) == 3
    tnet.eval()
    fnet.eval()
    x = rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(fnet(fastmlp.tensor(x)).numpy(), tnet(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    tnet.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in fnet.state_dict().items()})


def test_batch_norm_bad_input():
    m = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(fastmlp.ones(1, 3))
    with pytest.raises(ValueError, match="3 channels"):
        m(fastmlp.ones(4, 5))


# ---- Flatten / Unflatten ---------------------------------------------------------------------
def test_flatten_unflatten(rng):
    x = rng.standard_normal((2, 12, 3)).astype(np.float32)
    for args in [(1, (3, 4)), (1, (-1, 2)), (-2, [2, 2, 3])]:
        a = nn.Unflatten(*args)(fastmlp.tensor(x))
        b = torch.nn.Unflatten(*args)(torch.tensor(x))
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    a = nn.Flatten(0, 1)(fastmlp.tensor(x))
    assert tuple(a.shape) == (24, 3)
    xa = fastmlp.tensor(x, requires_grad=True)
    nn.Unflatten(1, (3, 4))(xa).sum().backward()
    assert xa.grad.shape == x.shape
    with pytest.raises(ValueError, match="don't multiply up"):
        nn.Unflatten(1, (5, 2))(fastmlp.tensor(x))


# ---- Embedding -------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_embedding(padding_idx, scale_grad_by_freq, rng):
    tm = torch.nn.Embedding(7, 4, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
    fm = nn.Embedding(7, 4, padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
    if padding_idx is not None:
        assert np.all(fm.weight.detach().numpy()[padding_idx] == 0)
    assert list(fm.state_dict()) == ["weight"]
    copy_params(fm, tm)
    idx = rng.integers(0, 7, (5, 3))
    idx[0, 0] = 2
    idx[1, 1] = 6
    ya, yb = fm(fastmlp.tensor(idx)), tm(torch.tensor(idx))
    np.testing.assert_array_equal(ya.detach().numpy(), yb.detach().numpy())
    g = rng.standard_normal((5, 3, 4)).astype(np.float32)
    ya.backward(fastmlp.tensor(g))
    yb.backward(torch.tensor(g))
    np.testing.assert_allclose(fm.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_embedding_max_norm_and_functional(rng):
    w = rng.standard_normal((6, 3)).astype(np.float32) * 3
    idx = np.array([[0, 1], [1, 4]])
    wa, wb = fastmlp.tensor(w.copy(), requires_grad=True), torch.tensor(w.copy(), requires_grad=True)
    ya = F.embedding(fastmlp.tensor(idx), wa, max_norm=1.0)
    yb = torch.nn.functional.embedding(torch.tensor(idx), wb, max_norm=1.0)
    np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wa.detach().numpy(), wb.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_embedding_bad_input():
    m = nn.Embedding(5, 2)
    with pytest.raises(IndexError, match="index out of range in self.*5"):
        m(fastmlp.tensor([1, 5]))
    with pytest.raises(TypeError, match="int64"):
        m(fastmlp.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="Padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)


def test_layers_exported():
    for name in ["Dropout", "LayerNorm", "BatchNorm1d", "Flatten", "Unflatten", "Embedding"]:
        assert hasattr(nn, name)
    for name in ["dropout", "layer_norm", "batch_norm", "embedding", "cross_entropy", "nll_loss",
                 "binary_cross_entropy", "binary_cross_entropy_with_logits", "l1_loss",
                 "smooth_l1_loss", "huber_loss", "mse_loss"]:
        assert callable(getattr(F, name))
