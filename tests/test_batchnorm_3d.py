"""BatchNorm1d on 3-D (N, C, L) input against PyTorch: statistics over N and L per channel, running
statistics (momentum and cumulative), train/eval, affine or not, no running statistics; values and
gradients inside a model (Linear on the last dim, the norm over the channel dim), float64 numpy
reference of the batch statistics; bad shapes; fit/predict refusing 3-D input."""
import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
import fastmlp.nn.functional as F
from fastmlp import trainer

torch = pytest.importorskip("torch")

DTYPES = [np.float32, np.float64]


def tol(dt):
    return dict(rtol=1e-5, atol=1e-5) if dt == np.float32 else dict(rtol=1e-10, atol=1e-11)


def _fdt(dt):
    return fastmlp.float32 if dt == np.float32 else fastmlp.float64


def _tdt(dt):
    return torch.float32 if dt == np.float32 else torch.float64


def test_batch_statistics_over_n_and_l_float64_reference(rng):
    """Training mode: per channel, mean and biased variance over N and L; the running variance is
    updated with the unbiased one (N * L - 1 in the denominator)."""
    x = rng.standard_normal((5, 3, 7)) * np.array([1.0, 3.0, 0.5])[None, :, None] + 2.0
    m = nn.BatchNorm1d(3, momentum=0.25, dtype=fastmlp.float64)
    y = m(fastmlp.tensor(x)).numpy()
    mean = x.mean(axis=(0, 2))
    var = x.var(axis=(0, 2))
    ref = (x - mean[None, :, None]) / np.sqrt(var[None, :, None] + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.running_mean.numpy(), 0.25 * mean, rtol=1e-12)
    n = 5 * 7
    np.testing.assert_allclose(m.running_var.numpy(), 0.75 + 0.25 * var * n / (n - 1), rtol=1e-12)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("kw", [dict(), dict(momentum=None), dict(affine=False),
                                dict(track_running_stats=False), dict(bias=False)],
                         ids=["default", "cumulative", "no_affine", "no_running", "no_bias"])
def test_model_parity_values_gradients_running_stats(dt, kw, rng, cpu_path):
    """(N, C, L) -> Linear(L, H) -> BatchNorm1d(C) -> ReLU -> Linear(H, 1): several training steps
    then eval, against the same PyTorch model from identical weights."""
    N, C, L, H = 6, 4, 5, 8
    tkw = {k: v for k, v in kw.items() if k != "bias"}
    tm = torch.nn.Sequential(torch.nn.Linear(L, H), torch.nn.BatchNorm1d(C, **tkw),
                             torch.nn.ReLU(), torch.nn.Linear(H, 1)).to(_tdt(dt))
    if kw.get("bias") is False:  # torch has no bias=False for BatchNorm1d: keep its bias at zero
        tm[1].bias.requires_grad_(False)
    fm = nn.Sequential(nn.Linear(L, H), nn.BatchNorm1d(C, **kw), nn.ReLU(), nn.Linear(H, 1))
    fm.to(_fdt(dt))
    if tm[1].weight is not None:
        with torch.no_grad():
            tm[1].weight.copy_(torch.tensor(rng.random(C) + 0.5))
            tm[1].bias.copy_(torch.tensor(0.0 if kw.get("bias") is False
                                          else rng.standard_normal(C)))
    sd = {k: v for k, v in tm.state_dict().items() if k in fm.state_dict()}
    assert set(sd) == set(fm.state_dict())
    fm.load_state_dict(sd)
    topt = torch.optim.SGD([p for p in tm.parameters() if p.requires_grad], lr=0.1)
    fopt = fastmlp.optim.SGD(fm.parameters(), lr=0.1)
    for step in range(3):
        x = (rng.standard_normal((N, C, L)) * 2 + step).astype(dt)
        xa, xb = fastmlp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ya, yb = fm(xa), tm(xb)
        assert tuple(ya.shape) == (N, C, 1)
        np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), **tol(dt))
        g = rng.standard_normal((N, C, 1)).astype(dt)
        fopt.zero_grad()
        topt.zero_grad()
        ya.backward(fastmlp.tensor(g))
        yb.backward(torch.tensor(g))
        np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), **tol(dt))
        tp = dict(tm.named_parameters())
        for name, p in fm.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), **tol(dt),
                                       err_msg=name)
        fopt.step()
        topt.step()
    sa, sb = fm.state_dict(), tm.state_dict()
    for k in sa:
        np.testing.assert_allclose(sa[k].numpy(), sb[k].numpy(), **tol(dt), err_msg=k)
    if kw.get("track_running_stats", True):
        assert int(sa["1.num_batches_tracked"].item()) == 3
    fm.eval()
    tm.eval()
    x = rng.standard_normal((3, C, L)).astype(dt)
    xa, xb = fastmlp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ya, yb = fm(xa), tm(xb)
    np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), **tol(dt))
    ya.sum().backward()
    yb.sum().backward()
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), **tol(dt))


def test_eval_l_of_one_and_functional(rng):
    """(N, C, 1) in training needs N > 1 (N * L values per channel), as PyTorch; eval takes any N;
    F.batch_norm on 3-D matches torch's."""
    m = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\[1, 3, 1\]"):
        m(fastmlp.ones(1, 3, 1))
    m(fastmlp.tensor(rng.standard_normal((1, 3, 2)).astype(np.float32)))  # 2 values: fine
    m.eval()
    x = rng.standard_normal((1, 3, 1)).astype(np.float32)
    t = torch.nn.BatchNorm1d(3)
    t.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in m.state_dict().items()})
    t.eval()
    np.testing.assert_allclose(m(fastmlp.tensor(x)).numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    rm, rv = rng.standard_normal(3).astype(np.float32), rng.random(3).astype(np.float32) + 0.5
    w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    for training in (True, False):
        frm, frv = fastmlp.tensor(rm.copy()), fastmlp.tensor(rv.copy())
        trm, trv = torch.tensor(rm.copy()), torch.tensor(rv.copy())
        ya = F.batch_norm(fastmlp.tensor(x), frm, frv, fastmlp.tensor(w), fastmlp.tensor(b),
                          training=training, momentum=0.3)
        yb = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, torch.tensor(w),
                                            torch.tensor(b), training=training, momentum=0.3)
        np.testing.assert_allclose(ya.numpy(), yb.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(frm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(frv.numpy(), trv.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,msg", [
    ((2, 3, 4, 5), r"expected 2D or 3D input \(got 4D input\).*C = 3.*\[2, 3, 4, 5\]"),
    ((3,), r"expected 2D or 3D input \(got 1D input\).*\[3\]"),
    ((8, 4), r"BatchNorm1d\(3\) expected input with 3 channels \(dim 1\).*\[8, 4\]"),
    ((2, 4, 3), r"BatchNorm1d\(3\) expected input with 3 channels \(dim 1\).*\[2, 4, 3\]"),
])
def test_bad_shapes_name_the_shape(shape, msg):
    m = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=msg):
        m(fastmlp.ones(*shape))
    with pytest.raises((ValueError, RuntimeError)):  # PyTorch refuses the same shapes
        torch.nn.BatchNorm1d(3)(torch.ones(*shape))
    # nothing was counted or updated by a refused call
    assert int(m.num_batches_tracked.item()) == 0
    np.testing.assert_array_equal(m.running_mean.numpy(), np.zeros(3, np.float32))


def test_fit_and_predict_refuse_3d_input():
    m = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    X3 = np.ones((8, 2, 5), np.float32)
    with pytest.raises(ValueError, match=r"fit: X must be 2-D .*\(8, 2, 5\)"):
        fastmlp.fit(m, X3, np.ones((8, 1), np.float32), epochs=1, batch_size=4, lr=0.01,
                    progress=False)
    with pytest.raises(ValueError, match=r"predict: X must have shape \(n, 5\).*\(8, 2, 5\)"):
        trainer.predict(m, X3)
