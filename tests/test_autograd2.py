"""Autograd, round two (issues 12 and 16): second derivatives (create_graph=True), autograd.grad and
backward(inputs=) that touch no other leaf, non-leaf inputs, version counters, anomaly detection,
frozen parameters, grad-mode helpers. The reference is PyTorch, from identical weights."""
import re
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
import fastmlp.nn as fnn

torch = pytest.importorskip("torch")



def _pair_mlp(sizes, act="tanh", seed=0):
    torch.manual_seed(seed)
    tl, fl = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        tl.append(torch.nn.Linear(a, b))
        fl.append(fnn.Linear(a, b))
        if i < len(sizes) - 2:
            tl.append(torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU())
            fl.append(fnn.Tanh() if act == "tanh" else fnn.ReLU())
    tnet, fnet = torch.nn.Sequential(*tl), fnn.Sequential(*fl)
    fnet.load_state_dict({k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()})
    return tnet, fnet


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


# ---- the PINN residual: u_xx + u * u_x through a Tanh MLP ---------------------------------
def _residual(lib, net, xs):
    x = lib.tensor(xs, requires_grad=True)
    u = net(x)
    ux = lib.autograd.grad(u, x, grad_outputs=lib.ones_like(u), create_graph=True)[0]
    uxx = lib.autograd.grad(ux, x, grad_outputs=lib.ones_like(ux), create_graph=True)[0]
    return u, ux, uxx, uxx + u * ux


@pytest.mark.parametrize("sizes", [[1, 16, 1], [1, 20, 20, 1], [1, 7, 5, 3, 1]])
def test_pinn_residual_matches_torch_and_weight_grads(sizes, cpu_path):
    tnet, fnet = _pair_mlp(sizes)
    xs = np.linspace(-1.5, 1.5, 13, dtype=np.float32).reshape(-1, 1)
    tu, tux, tuxx, tr = _residual(torch, tnet, xs)
    fu, fux, fuxx, fr = _residual(fastmlp, fnet, xs)
    for a, b in ((tu, fu), (tux, fux), (tuxx, fuxx), (tr, fr)):
        np.testing.assert_allclose(_np(b), _np(a), rtol=1e-5, atol=1e-6)
    assert fr.requires_grad and fr.grad_fn is not None
    (tr ** 2).mean().backward()
    (fr ** 2).mean().backward()
    for (n, tp), fp in zip(tnet.named_parameters(), fnet.parameters()):
        np.testing.assert_allclose(_np(fp.grad), _np(tp.grad), rtol=1e-4, atol=1e-7, err_msg=n)


def test_pinn_derivatives_match_finite_differences():
    _, fnet = _pair_mlp([1, 12, 12, 1])
    fnet64 = fnet.double()
    xs = np.linspace(-1.0, 1.0, 9).reshape(-1, 1)
    u, ux, uxx, _ = _residual(fastmlp, fnet64, xs)

    def f(v):
        with fastmlp.no_grad():
            return fnet64(fastmlp.tensor(v)).numpy().copy()

    h = 1e-4
    fd1 = (f(xs + h) - f(xs - h)) / (2 * h)
    fd2 = (f(xs + h) - 2 * f(xs) + f(xs - h)) / (h * h)
    np.testing.assert_allclose(_np(ux), fd1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_np(uxx), fd2, rtol=1e-4, atol=1e-5)


def test_pinn_training_step_with_optimizer_follows_torch():
    tnet, fnet = _pair_mlp([1, 10, 10, 1])
    topt = torch.optim.SGD(tnet.parameters(), lr=1e-2, momentum=0.9)
    fopt = fastmlp.optim.SGD(fnet.parameters(), lr=1e-2, momentum=0.9)
    xs = np.linspace(-1, 1, 16, dtype=np.float32).reshape(-1, 1)
    for _ in range(3):
        for lib, net, opt in ((torch, tnet, topt), (fastmlp, fnet, fopt)):
            opt.zero_grad()
            u, ux, uxx, r = _residual(lib, net, xs)
            loss = (r ** 2).mean() + ((u[0] - 1.0) ** 2).sum()
            loss.backward()
            opt.step()
    for tp, fp in zip(tnet.parameters(), fnet.parameters()):
        np.testing.assert_allclose(_np(fp), _np(tp), rtol=1e-4, atol=1e-5)


OPS = {
    "exp": lambda L, x: L.exp(x), "log": lambda L, x: L.log(x * x + 1),
    "tanh": lambda L, x: L.tanh(x), "sigmoid": lambda L, x: L.sigmoid(x),
    "sin": lambda L, x: L.sin(x), "cos": lambda L, x: L.cos(x),
    "pow3": lambda L, x: x ** 3, "powT": lambda L, x: (x * x + 1) ** (x * 0.5),
    "div": lambda L, x: x / (x * x + 2), "rdiv": lambda L, x: 1.0 / (x * x + 1),
    "mul_sub_neg": lambda L, x: -(x * x - 3 * x), "sqrt": lambda L, x: L.sqrt(x * x + 1),
    "matmul": lambda L, x: (x @ x.T) @ x, "sum_dim": lambda L, x: (x * x).sum(1, keepdim=True) * x,
    "mean": lambda L, x: (x ** 2).mean(0) * x, "reshape_T": lambda L, x: (x.reshape(-1) ** 3).reshape(4, 3).T,
    "index": lambda L, x: x[1:3] ** 3, "expand": lambda L, x: (x[:, :1] ** 2).expand(4, 3) * x,
    "relu": lambda L, x: L.relu(x) * x, "mse": lambda L, x: L.nn.functional.mse_loss(x ** 2, x),
    "where_clamp": lambda L, x: L.where(x > 0, x ** 2, x ** 3) + L.clamp(x, -0.5, 0.5) * x,
    "maximum": lambda L, x: L.maximum(x ** 2, x) * x, "cat": lambda L, x: L.cat([x ** 2, x ** 3], 1),
    "abs": lambda L, x: L.abs(x) * x, "log1p_expm1": lambda L, x: L.log1p(x * x) + L.expm1(x),
    "linear": lambda L, x: L.nn.functional.linear(x.tanh(), x[:2] * 1.5, x[0, :2]),
    "norm": lambda L, x: L.norm(x, dim=1) * x.sum(),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_second_derivative_of_each_op_matches_torch(name):
    rng = np.random.default_rng(3)
    xs = rng.uniform(-1, 1, (4, 3))
    res = []
    for L in (torch, fastmlp):
        x = L.tensor(xs, requires_grad=True)
        y = OPS[name](L, x)
        g = L.autograd.grad(y.sum() if y.ndim else y, x, create_graph=True)[0]
        w = L.tensor(rng.uniform(-1, 1, (4, 3)) if L is torch else res[0][2])
        gg = L.autograd.grad((g * w).sum(), x)[0]
        res.append((_np(g), _np(gg), _np(w)))
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-9, atol=1e-12)


def test_create_graph_through_an_op_without_recorded_backward_names_it():
    x = fastmlp.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = fastmlp.cumprod(x, 0).sum()
    with pytest.raises(NotImplementedError, match="CumprodBackward0"):
        fastmlp.autograd.grad(y, x, create_graph=True)


def test_backward_create_graph_gives_grad_with_graph():
    for L in (torch, fastmlp):
        x = L.tensor([0.3, -0.7], requires_grad=True)
        (x ** 3).sum().backward(create_graph=True)
        assert x.grad.requires_grad
        g1 = _np(x.grad).copy()
        x.grad.sum().backward()  # accumulates d(3x^2)/dx = 6x into x.grad (with the graph)
        if L is torch:
            ref = (g1, _np(x.grad))
        else:
            np.testing.assert_allclose(g1, ref[0], rtol=1e-6)
            np.testing.assert_allclose(_np(x.grad), ref[1], rtol=1e-6)


# ---- autograd.grad / backward(inputs=) write no other leaf ------------------------------
def test_grad_and_backward_inputs_leave_other_leaves_alone():
    tnet, fnet = _pair_mlp([3, 5, 2], act="relu")
    xs = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    for lib, net in ((torch, tnet), (fastmlp, fnet)):
        w0, b0, w1, b1 = list(net.parameters())
        loss = (net(lib.tensor(xs)) ** 2).mean()
        sentinel = lib.ones_like(b1) * 7
        b1.grad = sentinel.clone()
        (gw,) = lib.autograd.grad(loss, [w0], retain_graph=True)
        assert w1.grad is None and w0.grad is None and b0.grad is None
        np.testing.assert_array_equal(_np(b1.grad), _np(sentinel))
        loss.backward(inputs=[w1])
        assert w0.grad is None and b0.grad is None
        np.testing.assert_array_equal(_np(b1.grad), _np(sentinel))
        if lib is torch:
            ref = (_np(gw).copy(), _np(w1.grad).copy())
        else:
            np.testing.assert_allclose(_np(gw), ref[0], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(_np(w1.grad), ref[1], rtol=1e-5, atol=1e-7)
        assert all(p.requires_grad for p in net.parameters())


def test_backward_inputs_accumulates_like_torch():
    out = []
    for L in (torch, fastmlp):
        w = L.tensor([1.0, 2.0], requires_grad=True)
        v = L.tensor([3.0, 4.0], requires_grad=True)
        for _ in range(2):
            (w * v).sum().backward(inputs=[w])
        out.append((_np(w.grad), v.grad))
    np.testing.assert_array_equal(out[1][0], out[0][0])
    assert out[1][1] is None and out[0][1] is None


def test_grad_non_leaf_inputs_match_torch():
    tnet, fnet = _pair_mlp([3, 6, 1])
    xs = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    res = []
    for L, net in ((torch, tnet), (fastmlp, fnet)):
        h = net[1](net[0](L.tensor(xs)))
        y = net[2](h).pow(2).sum()
        gh, gw = L.autograd.grad(y, [h, net[0].weight])
        assert net[0].weight.grad is None
        res.append((_np(gh), _np(gw)))
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-5, atol=1e-7)


def test_grad_errors_as_torch():
    x = fastmlp.tensor([1.0], requires_grad=True)
    z = fastmlp.tensor([1.0], requires_grad=True)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        fastmlp.autograd.grad(y, z, retain_graph=True)
    assert fastmlp.autograd.grad(y, [x, z], allow_unused=True, retain_graph=True)[1] is None
    assert fastmlp.autograd.grad(y, [z], materialize_grads=True)[0].tolist() == [0.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        fastmlp.autograd.grad(y, fastmlp.tensor([1.0]))


# ---- version counters ----------------------------------------------------------------------
def _version_msg(fn):
    try:
        fn()
    except RuntimeError as e:
        return str(e)
    return None


CASES = {
    "input_mul_": lambda L, x, w: ((x @ w).sum(), lambda: x.mul_(2)),
    "input_setitem": lambda L, x, w: ((x @ w).sum(), lambda: x.__setitem__(0, 5.0)),
    "weight_no_grad": lambda L, x, w: ((x @ w).sum(), lambda: _under_no_grad(L, lambda: w.add_(1))),
    "weight_zero_twice": lambda L, x, w: ((x * w[:, 0]).sum(),
                                          lambda: _under_no_grad(L, lambda: (w.zero_(), w.fill_(1)))),
    "copy_": lambda L, x, w: ((x @ w).sum(), lambda: x.copy_(x * 0)),
    "add_needs_nothing": lambda L, x, w: ((x + w[:, 0]).sum(), lambda: x.add_(1)),
    "tanh_output": lambda L, x, w: (_tanh_out(L, x, w), None),
    "linear_hidden_weight": lambda L, x, w: (_two_linears(L, x, w), lambda: _under_no_grad(
        L, lambda: w.mul_(0.5))),
    "linear_first_weight": lambda L, x, w: (_two_linears(L, x, w, first=True), lambda: _under_no_grad(
        L, lambda: w.mul_(0.5))),
    "transposed_view": lambda L, x, w: ((L.tanh(x @ w) @ w.t()).sum(), lambda: _under_no_grad(
        L, lambda: w.add_(1))),
    "slice_of_input": lambda L, x, w: ((x @ w).sum(), lambda: x[1:].mul_(3)),
}


def _two_linears(L, x, w, first=False):
    F = L.nn.functional
    if first:  # a first layer's weight is not saved (its input needs no gradient), as in torch
        return F.linear(x, w.t()).sum()
    wt = w.detach().t().contiguous().requires_grad_()  # a (4, 3) weight of its own
    h = L.tanh(F.linear(x, wt))  # (3, 4): requires grad
    return F.linear(h, w).sum()  # w (3, 4) is the second layer's weight, saved for h's gradient


def _under_no_grad(L, fn):
    with L.no_grad():
        fn()


def _tanh_out(L, x, w):
    y = (x @ w).tanh()
    with L.no_grad():
        y.mul_(2)
    return y.sum()


@pytest.mark.parametrize("case", sorted(CASES))
def test_version_counter_errors_match_torch(case):
    msgs = []
    for L in (torch, fastmlp):
        x = L.ones(3, 3)
        w = L.ones(3, 4, requires_grad=True)
        loss, modify = CASES[case](L, x, w)
        if modify is not None:
            modify()
        msgs.append(_version_msg(loss.backward))
    tmsg, fmsg = msgs
    assert (tmsg is None) == (fmsg is None), (tmsg, fmsg)
    if tmsg is not None:
        pat = r"\[torch\.\w+ \[[\d, ]*\]\](, which is output 0 of \w+,)? is at version \d+; expected version \d+"
        tpart = re.search(pat, tmsg).group(0)
        fpart = re.search(pat, fmsg).group(0)
        assert tpart.split("is at")[1] == fpart.split("is at")[1]
        assert tpart.split("]]")[0] == fpart.split("]]")[0]
        assert "modified by an inplace operation" in fmsg


def test_version_counter_counts_in_place_ops():
    x = fastmlp.zeros(3)
    assert x._version == 0
    x.add_(1)
    x[0] = 2
    x.zero_()
    x.clamp_(min=0)
    assert x._version == 4
    d = x.detach()
    d.mul_(2)
    assert x._version == 5  # detach shares the counter, as in torch


def test_modified_after_backward_is_fine_and_hot_loop_unaffected():
    w = fastmlp.ones(3, requires_grad=True)
    for _ in range(3):
        loss = (w * w).sum()
        loss.backward()
        with fastmlp.no_grad():
            w -= 0.1 * w.grad
        w.grad = None
    np.testing.assert_allclose(w.numpy(), 0.8 ** 3, rtol=1e-6)


# ---- anomaly detection ---------------------------------------------------------------------
_TORCH_ANOMALY = """
import warnings, torch
warnings.simplefilter("ignore")
x = torch.tensor([-1.0, 4.0], requires_grad=True)
with torch.autograd.detect_anomaly():
    y = torch.sqrt(x).sum()
    try:
        y.backward()
    except RuntimeError as e:
        print(e)
"""


def test_detect_anomaly_names_the_node_as_torch():
    # torch's half runs in a subprocess (its anomaly mode and warnings stay out of this process)
    tmsg = subprocess.run([sys.executable, "-c", _TORCH_ANOMALY], capture_output=True, text=True,
                          check=True).stdout.strip()
    x = fastmlp.tensor([-1.0, 4.0], requires_grad=True)
    with fastmlp.autograd.detect_anomaly():
        y = fastmlp.sqrt(x).sum()
        with pytest.raises(RuntimeError) as ei:
            y.backward()
    assert str(ei.value) == tmsg == "Function 'SqrtBackward0' returned nan values in its 0th output."
    # set_detect_anomaly as a function switches it on and off
    fastmlp.autograd.set_detect_anomaly(True)
    try:
        assert fastmlp.autograd.is_anomaly_enabled()
    finally:
        fastmlp.autograd.set_detect_anomaly(False)
    assert not fastmlp.autograd.is_anomaly_enabled()
    with fastmlp.autograd.set_detect_anomaly(True):
        assert fastmlp.autograd.is_anomaly_enabled()
    assert not fastmlp.autograd.is_anomaly_enabled()
    x = fastmlp.tensor([-1.0], requires_grad=True)
    fastmlp.sqrt(x).sum().backward()  # off: no check
    assert np.isnan(x.grad.numpy()).all()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ---- frozen parameters, grad modes, seeds -------------------------------------------------
def test_frozen_parameters_get_no_grad_and_stay_put():
    tnet, fnet = _pair_mlp([4, 6, 2], act="relu")
    xs = np.random.default_rng(2).standard_normal((8, 4)).astype(np.float32)
    for net in (tnet, fnet):
        net[0].weight.requires_grad = False
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    fopt = fastmlp.optim.SGD(fnet.parameters(), lr=0.1, momentum=0.9)
    w_before = fnet[0].weight.numpy().copy()
    for lib, net, opt in ((torch, tnet, topt), (fastmlp, fnet, fopt)):
        for _ in range(2):
            opt.zero_grad()
            (net(lib.tensor(xs)) ** 2).mean().backward()
            opt.step()
    assert fnet[0].weight.grad is None
    np.testing.assert_array_equal(fnet[0].weight.numpy(), w_before)
    np.testing.assert_allclose(fnet[0].bias.numpy(), _np(tnet[0].bias), rtol=1e-5, atol=1e-6)


def test_grad_modes_and_decorators():
    x = fastmlp.ones(2, requires_grad=True)

    @fastmlp.no_grad
    def f1():
        return x * 2

    @fastmlp.no_grad()
    def f2():
        return x * 2

    @fastmlp.inference_mode()
    def f3():
        assert fastmlp.is_inference_mode_enabled() if hasattr(fastmlp, "is_inference_mode_enabled") \
            else fastmlp.autograd.is_inference_mode_enabled()
        return x * 2

    @fastmlp.enable_grad()
    def f4():
        return x * 2

    assert not f1().requires_grad and not f2().requires_grad and not f3().requires_grad
    with fastmlp.no_grad():
        assert f4().requires_grad
    with fastmlp.inference_mode(False):
        assert (x * 2).requires_grad
    with fastmlp.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    fastmlp.set_grad_enabled(False)
    try:
        assert not fastmlp.is_grad_enabled()
    finally:
        fastmlp.set_grad_enabled(True)

    @fastmlp.set_grad_enabled(False)
    def f5():
        return x * 2

    assert fastmlp.is_grad_enabled() and not f5().requires_grad and fastmlp.is_grad_enabled()


def test_default_seed_is_fresh_per_process_unless_seeded():
    code = "import fastmlp; print(fastmlp.initial_seed(), float(fastmlp.rand(1)))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(outs) == 2
    seeded = "import fastmlp; fastmlp.manual_seed(3); print(float(fastmlp.rand(1)))"
    outs = {subprocess.run([sys.executable, "-c", seeded], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(outs) == 1
    assert fastmlp.Generator().initial_seed() == 67280421310721


@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_second_derivatives_through_sequential_fused_and_sigmoid(act):
    torch.manual_seed(1)
    mk = {"relu": (torch.nn.ReLU, fnn.ReLU), "sigmoid": (torch.nn.Sigmoid, fnn.Sigmoid)}[act]
    tnet = torch.nn.Sequential(torch.nn.Linear(2, 8), mk[0](), torch.nn.Linear(8, 1))
    fnet = fnn.Sequential(fnn.Linear(2, 8), mk[1](), fnn.Linear(8, 1))
    fnet.load_state_dict({k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()})
    xs = np.random.default_rng(4).standard_normal((6, 2)).astype(np.float32)
    res = []
    for L, net in ((torch, tnet), (fastmlp, fnet)):
        x = L.tensor(xs, requires_grad=True)
        u = net(x)
        (gx,) = L.autograd.grad(u.sum(), x, create_graph=True)
        lap = L.autograd.grad(gx[:, 0].sum(), x, create_graph=True)[0][:, 0] + \
            L.autograd.grad(gx[:, 1].sum(), x, create_graph=True)[0][:, 1]
        loss = (gx ** 2).sum() + (lap ** 2).sum() + u.sum()
        loss.backward()
        res.append([_np(gx), _np(lap)] + [_np(p.grad) for p in net.parameters()])
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_backward_inputs_non_leaf_and_retained_graph_version_check():
    out = []
    for L in (torch, fastmlp):
        x = L.tensor([1.0, 2.0], requires_grad=True)
        h = x * 3
        if L is torch:
            h.retain_grad()
        y = (h * h).sum()
        y.backward(inputs=[h], retain_graph=True)
        out.append((_np(h.grad).copy(), x.grad))
        with L.no_grad():
            x.mul_(2)  # x is saved by nothing here (h = x * 3 saves the constant), so fine
        y.backward(inputs=[h], retain_graph=True)
        out.append(_np(h.grad).copy())
    np.testing.assert_array_equal(out[2][0], out[0][0])
    assert out[0][1] is None and out[2][1] is None
    np.testing.assert_array_equal(out[3], out[1])


def test_create_graph_gradient_of_non_leaf():
    res = []
    for L in (torch, fastmlp):
        x = L.tensor([0.5, -1.0, 2.0], requires_grad=True)
        h = L.tanh(x) * x
        y = (h ** 3).sum()
        (gh,) = L.autograd.grad(y, h, create_graph=True)
        (gx,) = L.autograd.grad(gh.sum(), x)
        res.append((_np(gh), _np(gx)))
    np.testing.assert_allclose(res[1][0], res[0][0], rtol=1e-6)
    np.testing.assert_allclose(res[1][1], res[0][1], rtol=1e-6)
