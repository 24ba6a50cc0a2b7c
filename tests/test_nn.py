"""nn: Module registration/traversal/state dicts, Linear/ReLU/MSELoss vs float64 numpy, fusion."""
from collections import OrderedDict

import numpy as np
import pytest

import fastmlp
import fastmlp as torch  # the import swap the API is made for
from fastmlp import nn
import fastmlp.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 1)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = self.fc2(x)
        return x


def ref_forward(x, w1, b1, w2, b2):
    h = np.maximum(x @ w1.T + b1, 0)
    return h, h @ w2.T + b2


def test_registration_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert len(list(net.parameters())) == 4
    assert [n for n, _ in net.named_children()] == ["fc1", "fc2"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "fc2"]
    assert len(list(net.modules())) == 3
    net.register_buffer("steps", fastmlp.zeros(1))
    assert "steps" in net.state_dict()
    net.add_module("extra", nn.Identity())
    assert "extra" in dict(net.named_children())
    p = nn.Parameter(fastmlp.ones(2))
    net.register_parameter("scale", p)
    assert net.scale is p and "scale" in dict(net.named_parameters())
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    assert net.training and not net.eval().training and not net.fc1.training
    net.train()
    assert net.fc2.training
    with pytest.raises(TypeError, match="cannot assign"):
        net.fc1 = 3
    shared = nn.Linear(2, 2)
    m = nn.Sequential(shared, shared)
    assert len(list(m.parameters())) == 2


def test_module_without_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_repr_like_torch():
    assert repr(nn.Linear(10, 20)) == "Linear(in_features=10, out_features=20, bias=True)"
    assert repr(Net()) == ("Net(\n  (fc1): Linear(in_features=10, out_features=20, bias=True)\n"
                           "  (fc2): Linear(in_features=20, out_features=1, bias=True)\n)")
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1, bias=False))
    assert repr(s) == ("Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)\n"
                       "  (1): ReLU()\n  (2): Linear(in_features=3, out_features=1, bias=False)\n)")
    assert repr(nn.MSELoss()) == "MSELoss()"


def test_linear_init_distribution():
    fastmlp.manual_seed(0)
    lin = nn.Linear(400, 300)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = 1 / np.sqrt(400)
    assert w.shape == (300, 400) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-a, a) has std a/sqrt(3)
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound
    assert abs(w.mean()) < 0.01 * bound
    assert lin.weight.requires_grad and lin.weight.dtype == fastmlp.float32


def test_forward_backward_matches_numpy():
    rng = np.random.default_rng(0)
    net = Net()
    w1, b1, w2, b2 = (p.numpy().astype(np.float64) for p in net.parameters())
    x = rng.standard_normal((33, 10)).astype(np.float32)
    y = rng.standard_normal((33, 1)).astype(np.float32)
    out = net(fastmlp.from_numpy(x))
    assert out.grad_fn.name() == "AddmmBackward0"
    h, ref = ref_forward(x.astype(np.float64), w1, b1, w2, b2)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)
    loss = nn.MSELoss()(out, fastmlp.from_numpy(y))
    d = ref - y
    np.testing.assert_allclose(loss.item(), (d ** 2).mean(), rtol=1e-5)
    loss.backward()
    g = 2 * d / d.size
    np.testing.assert_allclose(net.fc2.weight.grad.numpy(), g.T @ h, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(net.fc2.bias.grad.numpy(), g.sum(0), rtol=1e-4, atol=1e-7)
    gh = (g @ w2) * (h > 0)
    np.testing.assert_allclose(net.fc1.weight.grad.numpy(), gh.T @ x, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(net.fc1.bias.grad.numpy(), gh.sum(0), rtol=1e-4, atol=1e-7)
    # a second backward accumulates into the same .grad buffers
    w1g = net.fc1.weight.grad.numpy().copy()
    nn.MSELoss()(net(fastmlp.from_numpy(x)), fastmlp.from_numpy(y)).backward()
    np.testing.assert_allclose(net.fc1.weight.grad.numpy(), 2 * w1g, rtol=1e-5, atol=1e-7)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_fusion_is_invisible():
    """relu(linear(x)) fused in place gives the same values and grads as the unfused ops."""
    fastmlp.manual_seed(1)
    lin = nn.Linear(6, 5)
    x = fastmlp.randn(7, 6, requires_grad=True)
    y = fastmlp.relu(lin(x))  # fused: relu applied on the linear output in place
    assert y.grad_fn.name() == "ReluBackward0"
    (y * y).sum().backward()
    fused = [lin.weight.grad.numpy().copy(), lin.bias.grad.numpy().copy(), x.grad.numpy().copy()]
    lin.zero_grad()
    x.grad = None
    h = lin(x)  # held in a variable: no in-place fusion
    y2 = fastmlp.relu(h)
    assert h.grad_fn.name() == "AddmmBackward0" and y2.grad_fn.name() == "ReluBackward0"
    assert (h.numpy() < 0).any()  # h itself was not overwritten
    np.testing.assert_array_equal(y2.numpy(), y.numpy())
    (y2 * y2).sum().backward()
    for a, b in zip(fused, [lin.weight.grad.numpy(), lin.bias.grad.numpy(), x.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Sequential(Linear, ReLU) runs the gemm with the ReLU epilogue
    seq = nn.Sequential(lin, nn.ReLU())
    np.testing.assert_array_equal(seq(x).numpy(), y.numpy())
    assert seq(x).grad_fn.name() == "ReluBackward0"


def test_functional_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    out = F.linear(fastmlp.from_numpy(x), fastmlp.from_numpy(w), fastmlp.from_numpy(b))
    np.testing.assert_allclose(out.numpy(), x @ w.T + b, rtol=1e-5)
    r = F.relu(fastmlp.tensor([-1.0, 0.0, 2.0, float("nan")]))
    assert r.tolist()[:3] == [0.0, 0.0, 2.0] and np.isnan(r.tolist()[3])
    a, t = fastmlp.from_numpy(x), fastmlp.from_numpy(x[::-1].copy())
    d = (x - x[::-1]).astype(np.float64)
    assert F.mse_loss(a, t).item() == pytest.approx((d ** 2).mean(), rel=1e-6)
    assert F.mse_loss(a, t, reduction="sum").item() == pytest.approx((d ** 2).sum(), rel=1e-6)
    np.testing.assert_allclose(F.mse_loss(a, t, reduction="none").numpy(), d ** 2, rtol=1e-6)
    # 3-D input to Linear (batch dims) and 1-D input
    x3 = fastmlp.randn(2, 4, 3, requires_grad=True)
    lin = nn.Linear(3, 5)
    assert lin(x3).shape == (2, 4, 5)
    lin(x3).sum().backward()
    assert x3.grad.shape == (2, 4, 3)
    assert lin(fastmlp.randn(3)).shape == (5,)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_grads(reduction):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 2)).astype(np.float32)
    y = rng.standard_normal((5, 2)).astype(np.float32)
    a = fastmlp.tensor(x, requires_grad=True)
    t = fastmlp.tensor(y, requires_grad=True)
    loss = nn.MSELoss(reduction=reduction)(a, t)
    loss.sum().backward()
    g = 2 * (x - y).astype(np.float64) / (x.size if reduction == "mean" else 1)
    np.testing.assert_allclose(a.grad.numpy(), g, rtol=1e-5)
    np.testing.assert_allclose(t.grad.numpy(), -g, rtol=1e-5)
    with pytest.raises(ValueError):
        nn.MSELoss(reduction="avg")


def test_float64_model_works():
    lin = nn.Linear(3, 2).double()
    x = fastmlp.randn(4, 3, dtype=fastmlp.float64, requires_grad=True)
    out = fastmlp.relu(lin(x))
    assert out.dtype == fastmlp.float64
    out.sum().backward()
    assert lin.weight.grad.dtype == fastmlp.float64 and x.grad.shape == (4, 3)


def test_bad_input_messages():
    net = Net()
    with pytest.raises(ValueError, match=r"Linear\(10, 20\) expected input with 10 features, got "
                                         r"shape \(64, 7\)"):
        net(fastmlp.zeros(64, 7))
    with pytest.raises(RuntimeError):  # also a RuntimeError, as torch raises
        net(fastmlp.zeros(64, 7))
    with pytest.raises(TypeError, match=r"float64.*\.float\(\)"):
        net(fastmlp.from_numpy(np.zeros((4, 10))))
    with pytest.raises(TypeError, match="target"):
        F.mse_loss(fastmlp.zeros(3), fastmlp.zeros(3, dtype=fastmlp.float64))
    with pytest.warns(UserWarning, match="target size"):
        F.mse_loss(fastmlp.zeros(4, 1), fastmlp.zeros(4))


def test_state_dict_roundtrip_and_errors():
    a, b = Net(), Net()
    sd = a.state_dict()
    assert list(sd) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert sd["fc1.weight"].numpy() is a.fc1.weight.numpy()  # shares memory, detached
    assert not sd["fc1.weight"].requires_grad
    w_before = b.fc1.weight
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert b.fc1.weight is w_before  # copied in place
    np.testing.assert_array_equal(b.fc1.weight.numpy(), a.fc1.weight.numpy())
    # numpy arrays are accepted too
    b.load_state_dict({k: v.numpy() * 2 for k, v in sd.items()})
    np.testing.assert_allclose(b.fc2.bias.numpy(), 2 * a.fc2.bias.numpy())
    bad = dict(sd)
    del bad["fc1.bias"]
    bad["foo"] = fastmlp.zeros(1)
    bad["fc2.weight"] = fastmlp.zeros(1, 7)
    with pytest.raises(RuntimeError) as e:
        b.load_state_dict(bad)
    msg = str(e.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "fc1.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "foo"' in msg
    assert "size mismatch for fc2.weight" in msg and "[1, 7]" in msg and "[1, 20]" in msg
    del bad["fc2.weight"]
    res = b.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["fc1.bias", "fc2.weight"] and res.unexpected_keys == ["foo"]


def test_state_dict_with_torch():
    torch_ = pytest.importorskip("torch")
    ours = Net()
    tnet = torch_.nn.Sequential()
    tnet.fc1 = torch_.nn.Linear(10, 20)
    tnet.fc2 = torch_.nn.Linear(20, 1)
    ours.load_state_dict(tnet.state_dict())  # torch tensors, duck-typed
    np.testing.assert_array_equal(ours.fc1.weight.numpy(), tnet.fc1.weight.detach().numpy())
    # and back: the documented recipe
    tnet.load_state_dict({k: torch_.from_numpy(v.numpy()) for k, v in ours.state_dict().items()})


def test_sequential_indexing():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    assert len(s) == 5 and isinstance(s[1], nn.ReLU) and isinstance(s[-1], nn.Linear)
    head = s[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is s[0]
    assert [type(m).__name__ for m in s] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    x = fastmlp.randn(5, 2)
    h = s[:2](x)
    assert (h.numpy() >= 0).all()
    np.testing.assert_allclose(s(x).numpy(), s[2:](h).numpy(), rtol=1e-6)
    od = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert od.fc is od[0] and list(dict(od.named_children())) == ["fc", "act"]
    s.append(nn.Identity())
    assert len(s) == 6 and s(x).shape == (5, 1)
    with pytest.raises(IndexError):
        s[10]


def test_mse_gradient_scaled_by_upstream():
    x = fastmlp.tensor([[1.0], [2.0]], requires_grad=True)
    t = fastmlp.tensor([[0.0], [0.0]])
    (nn.MSELoss()(x, t) * 3).backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * np.array([[1.0], [2.0]]) / 2)
    x.grad = None
    loss = nn.MSELoss(reduction="sum")(x, t)
    assert loss.item() == 5.0
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[2.0], [4.0]])
    with fastmlp.no_grad():
        assert nn.MSELoss()(x, t).item() == 2.5


# ---- the layer kernels under nn.Linear (fastmlp.ops.linear_backward / _C.linear_forward) ------
@pytest.mark.parametrize("B,C,OC", [(1, 1, 1), (7, 13, 5), (64, 10, 20), (33, 17, 1), (0, 4, 3),
                                    (5, 0, 3), (130, 67, 35)])
@pytest.mark.parametrize("relu", [False, True])
def test_layer_kernels_match_float64(B, C, OC, relu):
    from fastmlp import _C, ops

    rng = np.random.default_rng(B * 100 + C)
    x = rng.standard_normal((B, C)).astype(np.float32)
    w = rng.standard_normal((OC, C)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    g = rng.standard_normal((B, OC)).astype(np.float32)
    y = _C.linear_forward(x, w, b, relu, None)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    if relu:
        ref = np.maximum(ref, 0)
    tol = 1e-5 * max(C, 1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=tol)
    gm = g.astype(np.float64) * ((y > 0) if relu else 1)
    g_before = g.copy()
    dx, dw, db = ops.linear_backward(g, x, w, relu_out=y if relu else None)
    np.testing.assert_array_equal(g, g_before)  # grad is not written
    np.testing.assert_allclose(dx, gm @ w, rtol=1e-5, atol=1e-5 * max(OC, 1))
    np.testing.assert_allclose(dw, gm.T @ x, rtol=1e-5, atol=1e-5 * max(B, 1))
    np.testing.assert_allclose(db, gm.sum(0), rtol=1e-5, atol=1e-5 * max(B, 1))
    dw2, db2 = np.ones_like(dw), np.ones_like(db)
    out = ops.linear_backward(g, x, w, relu_out=y if relu else None, dweight=dw2, dbias=db2,
                              accumulate=True, need_input_grad=False)
    assert out[0] is None and out[1] is dw2 and out[2] is db2
    np.testing.assert_allclose(dw2, 1 + gm.T @ x, rtol=1e-5, atol=1e-5 * max(B, 1))
    np.testing.assert_allclose(db2, 1 + gm.sum(0), rtol=1e-5, atol=1e-5 * max(B, 1))


def test_layer_kernels_thread_count_independent():
    from fastmlp import ops

    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 200)).astype(np.float32)
    w = rng.standard_normal((150, 200)).astype(np.float32)
    g = rng.standard_normal((300, 150)).astype(np.float32)
    prev = fastmlp.get_num_threads()
    try:
        res = []
        for n in (1, 2):
            fastmlp.set_num_threads(n)
            res.append(ops.linear_backward(g, x, w, relu_out=g))
    finally:
        fastmlp.set_num_threads(prev)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_layer_kernels_bad_input():
    from fastmlp import _C, ops

    x = np.zeros((4, 3), np.float32)
    w = np.zeros((2, 3), np.float32)
    g = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="float32"):
        _C.linear_forward(x.astype(np.float64), w)
    with pytest.raises(ValueError, match=r"'x' must have shape \(batch, 3\)"):
        _C.linear_forward(np.zeros((4, 5), np.float32), w)
    with pytest.raises(ValueError, match="'bias'"):
        _C.linear_forward(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="'grad' must have shape"):
        ops.linear_backward(np.zeros((4, 3), np.float32), x, w)
    with pytest.raises(ValueError, match="'relu_out'"):
        ops.linear_backward(g, x, w, relu_out=np.zeros((3, 2), np.float32))
    ro = np.zeros((2, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.linear_backward(g, x, w, dweight=ro)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.linear_backward(g, x, w, dweight=np.zeros((3, 2), np.float32).T)
    with pytest.raises(ValueError, match="overlap"):
        ops.linear_backward(g, x, w, dweight=w)
    with pytest.raises(ValueError, match="'dbias' must have shape"):
        ops.linear_backward(g, x, w, dbias=np.zeros(5, np.float32))
    with pytest.raises(TypeError):
        ops.linear_backward(g, [[1.0]], w)
    with pytest.raises(ValueError):
        _C.sgd_step_many([w], [g], None, [False], 0.1)
    with pytest.raises(ValueError, match="nesterov"):
        _C.sgd_step_many([w], [w.copy()], [w.copy()], [False], 0.1, 0.0, 0.0, 0.0, True)
    with pytest.raises(ValueError, match="momentum_buffers"):
        _C.sgd_step_many([w], [w.copy()], None, [False], 0.1, 0.9)
    with pytest.raises(ValueError, match="reduction"):
        ops.mse_loss_and_grad(x, x, reduction="none")


@pytest.mark.parametrize("B,OC", [(64, 20), (3, 1), (1000, 300)])  # serial and parallel paths
def test_linear_backward_bias_is_bitwise_bias_kernel(B, OC):
    from fastmlp import ops

    rng = np.random.default_rng(B)
    g = rng.standard_normal((B, OC)).astype(np.float32)
    y = np.maximum(rng.standard_normal((B, OC)).astype(np.float32), 0)
    x = rng.standard_normal((B, 5)).astype(np.float32)
    w = rng.standard_normal((OC, 5)).astype(np.float32)
    _, _, db = ops.linear_backward(g, x, w, relu_out=y, need_input_grad=False)
    np.testing.assert_array_equal(db, ops.bias_grad(ops.relu_backward(g, y)))


def test_init_functions():
    from fastmlp.nn import init

    assert init.calculate_gain("relu") == pytest.approx(np.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", np.sqrt(5)) == pytest.approx(np.sqrt(1 / 3))
    assert init.calculate_gain("linear") == 1
    with pytest.raises(ValueError):
        init.calculate_gain("swish")
    w = nn.Parameter(fastmlp.empty(300, 200))
    assert init.zeros_(w) is w and not w.numpy().any()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    init.constant_(w, 0.5)
    assert (w.numpy() == 0.5).all()
    init.xavier_uniform_(w)
    a = np.sqrt(6 / 500)
    assert np.abs(w.numpy()).max() <= a and np.abs(w.numpy()).max() > 0.95 * a
    init.kaiming_uniform_(w, nonlinearity="relu")
    b = np.sqrt(2) * np.sqrt(3 / 200)
    assert np.abs(w.numpy()).max() <= b and np.abs(w.numpy()).max() > 0.95 * b
    init.normal_(w, mean=2.0, std=0.1)
    assert abs(w.numpy().mean() - 2.0) < 0.01 and abs(w.numpy().std() - 0.1) < 0.01
    init.uniform_(w, -3, -2)
    assert w.numpy().min() >= -3 and w.numpy().max() <= -2
    assert w.requires_grad and w.dtype == fastmlp.float32 and w.grad_fn is None
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(nn.Parameter(fastmlp.zeros(3)))


def test_module_dtype_conversion_keeps_parameter_identity():
    net = Net()
    w = net.fc1.weight
    opt_params = list(net.parameters())
    net.double()
    assert net.fc1.weight is w and w.dtype == fastmlp.float64
    assert all(a is b for a, b in zip(opt_params, net.parameters()))
    out = net(fastmlp.randn(4, 10, dtype=fastmlp.float64))
    assert out.dtype == fastmlp.float64
    net.float()
    assert w.dtype == fastmlp.float32
    with pytest.raises(TypeError, match="floating point"):
        net.to(fastmlp.int64)


@pytest.mark.parametrize("kind", ["Sequential", "ModuleList"])
def test_container_edits_renumber_like_torch(kind):
    """del, insert, append and slices keep the keys 0..n-1 in order, as PyTorch's containers do;
    a Sequential edited this way runs the edited chain."""
    mods = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1)]
    c = nn.Sequential(*mods) if kind == "Sequential" else nn.ModuleList(mods)
    del c[1]
    assert [type(m).__name__ for m in c] == ["Linear", "Linear", "ReLU", "Linear"]
    c.insert(1, nn.ReLU())
    del c[3:4]
    c.append(nn.Identity())
    assert list(c._modules) == [str(i) for i in range(len(c))]
    assert [type(m).__name__ for m in c] == ["Linear", "ReLU", "Linear", "Linear", "Identity"]
    assert [k for k, _ in c.named_parameters()] == [
        "0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    if kind == "Sequential":
        x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
        w = [p.numpy() for p in c.parameters()]
        ref = np.maximum(x @ w[0].T + w[1], 0) @ w[2].T + w[3]
        ref = ref @ w[4].T + w[5]
        np.testing.assert_allclose(c(fastmlp.tensor(x)).numpy(), ref, rtol=1e-5, atol=1e-6)
