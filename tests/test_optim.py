"""optim.SGD against a float64 re-implementation of torch.optim.SGD's update (and torch itself)."""
import numpy as np
import pytest

import fastmlp
from fastmlp import nn, optim


def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
            maximize=False):
    p = p.astype(np.float64).copy()
    buf = None
    for g in grads:
        d = -g if maximize else g.astype(np.float64)
        d = d + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


CASES = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.3),
         dict(lr=0.01, momentum=0.9, weight_decay=1e-2, nesterov=True),
         dict(lr=0.01, weight_decay=0.1, maximize=True)]


@pytest.mark.parametrize("kw", CASES)
def test_sgd_matches_reference(kw):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(5)]
    p = nn.Parameter(fastmlp.tensor(p0))
    opt = optim.SGD([p], **kw)
    for g in grads:
        p.grad = fastmlp.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.numpy(), ref_sgd(p0, grads, **kw), rtol=1e-5, atol=1e-6)


def test_float64_params_use_the_same_update():
    kw = CASES[3]
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(3)]
    p = nn.Parameter(fastmlp.tensor(p0))
    opt = optim.SGD([p], **kw)
    for g in grads:
        p.grad = fastmlp.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.numpy(), ref_sgd(p0, grads, **kw), rtol=1e-12)


def test_param_groups_lr_change_and_skip_none_grads():
    a = nn.Parameter(fastmlp.ones(2))
    b = nn.Parameter(fastmlp.ones(2))
    c = nn.Parameter(fastmlp.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.5)
    a.grad = fastmlp.ones(2)
    b.grad = fastmlp.ones(2)
    opt.step()
    assert a.tolist() == [0.5, 0.5] and b.tolist() == [0.0, 0.0]
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert a.tolist() == [0.25, 0.25]
    opt.add_param_group({"params": c, "lr": 2.0})
    assert opt.param_groups[2]["momentum"] == 0
    opt.zero_grad()
    assert a.grad is None
    opt.step()  # no grads: nothing moves
    assert a.tolist() == [0.25, 0.25]
    a.grad = fastmlp.ones(2)
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_closure():
    p = nn.Parameter(fastmlp.tensor([2.0]))
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0 and p.item() == pytest.approx(2.0 - 0.1 * 4.0)


def test_invalid_arguments():
    params = [nn.Parameter(fastmlp.ones(1))]
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="Invalid momentum value: -0.5"):
        optim.SGD(params, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="Invalid weight_decay value"):
        optim.SGD(params, lr=0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(params[0], lr=0.1)


def test_state_dict_roundtrip():
    rng = np.random.default_rng(2)
    net = nn.Linear(3, 2)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = fastmlp.from_numpy(rng.standard_normal((4, 3)).astype(np.float32))
    net(x).sum().backward()
    opt.step()
    sd = opt.state_dict()
    assert set(sd["state"]) == {0, 1} and sd["param_groups"][0]["params"] == [0, 1]
    assert sd["param_groups"][0]["momentum"] == 0.9
    net2 = nn.Linear(3, 2)
    net2.load_state_dict(net.state_dict())
    opt2 = optim.SGD(net2.parameters(), lr=0.5, momentum=0.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["momentum"] == 0.9
    for o, m in ((opt, net), (opt2, net2)):
        m.zero_grad()
        m(x).sum().backward()
        o.step()
    np.testing.assert_array_equal(net.weight.numpy(), net2.weight.numpy())


def test_against_torch_sgd_momentum_buffers():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(6).astype(np.float32)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    fp = nn.Parameter(fastmlp.tensor(p0))
    kw = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)
    to, fo = torch.optim.SGD([tp], **kw), optim.SGD([fp], **kw)
    for _ in range(10):
        g = rng.standard_normal(6).astype(np.float32)
        tp.grad = torch.from_numpy(g.copy())
        fp.grad = fastmlp.tensor(g)
        to.step()
        fo.step()
    np.testing.assert_allclose(fp.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fo.state[fp]["momentum_buffer"].numpy(),
                               to.state[tp]["momentum_buffer"].numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size", [1, 7, 300, 200_001])
@pytest.mark.parametrize("kw", CASES)
def test_sgd_step_many_bitwise_equals_per_parameter_kernel(size, kw):
    """_C.sgd_step_many (small params run serially in layers.cpp) == ops.sgd_step, bitwise."""
    from fastmlp import _C, ops

    rng = np.random.default_rng(size)
    p = rng.standard_normal(size).astype(np.float32)
    bufs = [rng.standard_normal(size).astype(np.float32) for _ in range(2)]
    opts = dict(lr=kw["lr"], momentum=kw.get("momentum", 0.0), dampening=kw.get("dampening", 0.0),
                weight_decay=kw.get("weight_decay", 0.0), nesterov=kw.get("nesterov", False),
                maximize=kw.get("maximize", False))
    a, b = p.copy(), p.copy()
    ba, bb = bufs[0].copy(), bufs[0].copy()
    for first in (True, False):
        g = rng.standard_normal(size).astype(np.float32)
        ops.sgd_step(a, g, ba, first_step=first, **opts)
        _C.sgd_step_many([b], [g], [bb] if opts["momentum"] else None, [first], opts["lr"],
                         opts["momentum"], opts["dampening"], opts["weight_decay"],
                         opts["nesterov"], opts["maximize"])
    np.testing.assert_array_equal(a, b)
    if opts["momentum"]:
        np.testing.assert_array_equal(ba, bb)
