"""optim.LBFGS: the same iterates as torch.optim.LBFGS on a small regression from the same start
(with and without the strong-Wolfe line search, float64 and float32, a short history), state
carried across step() calls, and bad input."""
import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
import fastmlp.optim as optim

torch = pytest.importorskip("torch")


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 5)).astype(dtype)
    y = (np.tanh(X @ rng.standard_normal((5, 1))) + 0.1 * rng.standard_normal((40, 1))).astype(dtype)
    w1 = (0.5 * rng.standard_normal((8, 5))).astype(dtype)
    b1 = (0.1 * rng.standard_normal(8)).astype(dtype)
    w2 = (0.5 * rng.standard_normal((1, 8))).astype(dtype)
    return X, y, [w1, b1, w2]


def _fm_model(ws):
    m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1, bias=False))
    m[0].weight.data = fastmlp.tensor(ws[0].copy())
    m[0].bias.data = fastmlp.tensor(ws[1].copy())
    m[2].weight.data = fastmlp.tensor(ws[2].copy())
    return m


def _th_model(ws):
    m = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1, bias=False))
    if ws[0].dtype == np.float64:
        m = m.double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor(ws[0]))
        m[0].bias.copy_(torch.tensor(ws[1]))
        m[2].weight.copy_(torch.tensor(ws[2]))
    return m


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
@pytest.mark.parametrize("kw", [dict(history_size=3, max_iter=15, lr=0.5),
                                dict(line_search_fn="strong_wolfe", history_size=5, max_iter=15),
                                dict(line_search_fn="strong_wolfe", history_size=2, max_eval=9)])
def test_same_iterates_as_torch(dtype, tol, kw):
    X, y, ws = _problem(dtype)
    fm, tm = _fm_model(ws), _th_model(ws)
    if dtype == np.float64:
        fm = fm.double()
    fo = optim.LBFGS(fm.parameters(), **kw)
    to = torch.optim.LBFGS(tm.parameters(), **kw)
    fx, fy = fastmlp.tensor(X), fastmlp.tensor(y)
    tx, ty = torch.tensor(X), torch.tensor(y)

    def fclosure():
        fo.zero_grad()
        loss = ((fm(fx) - fy) ** 2).mean()
        loss.backward()
        return loss

    def tclosure():
        to.zero_grad()
        loss = ((tm(tx) - ty) ** 2).mean()
        loss.backward()
        return loss

    # float32: one step (max_iter inner iterations); beyond that the float32 rounding of the two
    # libraries' gradients (1 ulp apart) is amplified by the quasi-Newton updates.
    for _ in range(2 if dtype == np.float64 else 1):
        lf = float(fo.step(fclosure))
        lt = float(to.step(tclosure).detach())
        assert lf == pytest.approx(lt, rel=tol, abs=tol)
        for p, q in zip(fm.parameters(), tm.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=tol, atol=tol)
        fs = fo.state[fo._params[0]]
        ts = to.state[to._params[0]]
        assert fs["n_iter"] == ts["n_iter"] and fs["func_evals"] == ts["func_evals"]
    # it learned
    assert float(fclosure()) < 0.5 * float(((fastmlp.tensor(y)) ** 2).mean())


def test_bad_input():
    p = [nn.Parameter(fastmlp.ones(2))]
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.LBFGS(p, lr=-1)
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS(p, line_search_fn="armijo")
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": p}, {"params": [nn.Parameter(fastmlp.ones(1))]}])
    with pytest.raises(RuntimeError, match="closure"):
        optim.LBFGS(p).step(None)
