"""The fused trainer (fastmlp.fit / _C.mlp_train) against a float64 numpy reference of the eager loop
and against PyTorch (torch.optim.SGD on the same batches from the same weights)."""
import copy
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import _C
from fastmlp.trainer import NonFiniteLossError, extract_chain


def init_params(sizes, rng):
    ws, bs = [], []
    for i, o in zip(sizes[:-1], sizes[1:]):
        k = 1.0 / np.sqrt(i)
        ws.append(rng.uniform(-k, k, (o, i)).astype(np.float32))
        bs.append(rng.uniform(-k, k, o).astype(np.float32))
    return ws, bs


def reference_train(ws, bs, relu, X, Y, orders, B, lr, momentum=0.0, dampening=0.0,
                    weight_decay=0.0, nesterov=False, drop_last=False, no_bias=False):
    """The eager loop in float64: MSELoss(mean), torch.optim.SGD, DataLoader batching."""
    ws = [w.astype(np.float64) for w in ws]
    bs = [b.astype(np.float64) for b in bs]
    params = [p for pair in zip(ws, bs) for p in pair]
    bufs = [None] * len(params)
    losses = []
    for order in orders:
        n = len(order)
        stop = (n // B) * B if drop_last else n
        tot, used = 0.0, 0
        for s in range(0, stop, B):
            idx = order[s:s + B]
            acts = [X[idx].astype(np.float64)]
            for l, (w, b) in enumerate(zip(ws, bs)):
                z = acts[-1] @ w.T + b
                acts.append(np.maximum(z, 0) if relu[l] else z)
            y = Y[idx]
            loss = np.mean((acts[-1] - y) ** 2)
            tot += loss * len(idx)
            used += len(idx)
            d = 2 * (acts[-1] - y) / y.size
            if relu[-1]:  # a net that ends in ReLU
                d = d * (acts[-1] > 0)
            grads = [None] * len(params)
            for l in range(len(ws) - 1, -1, -1):
                grads[2 * l] = d.T @ acts[l]
                grads[2 * l + 1] = d.sum(0)
                if l > 0:
                    d = d @ ws[l]
                    if relu[l - 1]:
                        d = d * (acts[l] > 0)
            for i, (p, g) in enumerate(zip(params, grads)):
                if no_bias and i % 2 == 1:
                    continue
                g = g + weight_decay * p
                if momentum:
                    bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * g
                    g = g + momentum * bufs[i] if nesterov else bufs[i]
                p -= lr * g
        losses.append(tot / used)
    return ws, bs, losses


def assert_params_close(ws, bs, rws, rbs, rtol=1e-5):
    for a, r in zip(list(ws) + list(bs), list(rws) + list(rbs)):
        scale = np.abs(r).max() + 1e-12
        np.testing.assert_allclose(a, r, rtol=0, atol=rtol * scale)


def data(n, d_in, d_out, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in)).astype(np.float32)
    Y = rng.standard_normal((n, d_out)).astype(np.float32)
    return X, Y


CASES = [
    dict(sizes=(10, 20, 1), B=64, n=300),       # the seed net, partial last batch of 44
    dict(sizes=(7, 33, 5, 3), B=13, n=100),     # odd widths, 3 layers, partial batch of 9
    dict(sizes=(3, 1), B=1, n=17),              # one Linear, batch 1
    dict(sizes=(40, 70, 2), B=50, n=120),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c["sizes"])))
@pytest.mark.parametrize("path", ["small", "gemm"])
@pytest.mark.parametrize("opt", [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(momentum=0.5, dampening=0.3, weight_decay=1e-3),
    dict(weight_decay=0.05),
], ids=["sgd", "momentum", "nesterov_wd", "dampening", "wd"])
def test_epochs_match_float64_reference(case, path, opt):
    rng = np.random.default_rng(0)
    ws, bs = init_params(case["sizes"], rng)
    relu = [True] * (len(ws) - 1) + [False]
    X, Y = data(case["n"], case["sizes"][0], case["sizes"][-1])
    orders = np.stack([rng.permutation(case["n"]) for _ in range(2)])
    rws, rbs, rloss = reference_train(ws, bs, relu, X, Y, orders, case["B"], 0.05, **opt)
    w2 = [w.copy() for w in ws]
    b2 = [b.copy() for b in bs]
    mom = opt.get("momentum", 0.0)
    wb = [np.zeros_like(w) for w in w2] if mom else None
    bb = [np.zeros_like(b) for b in b2] if mom else None
    r = _C.mlp_train(w2, b2, relu, X, Y, epochs=2, batch_size=case["B"], perm=orders, lr=0.05,
                     weight_bufs=wb, bias_bufs=bb, path=path, **opt)
    assert r["small_path"] == (path == "small")
    assert r["steps"] == 2 * -(-case["n"] // case["B"])
    assert_params_close(w2, b2, rws, rbs)
    np.testing.assert_allclose(r["losses"], rloss, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c["sizes"])))
@pytest.mark.parametrize("path", ["small", "gemm"])
def test_net_ending_in_relu_masks_the_output_gradient(case, path):
    """Sequential(..., Linear, ReLU): the loss gradient passes the final ReLU's mask (the targets
    are half negative, so about half the outputs sit at 0 and must not move their layer)."""
    rng = np.random.default_rng(3)
    ws, bs = init_params(case["sizes"], rng)
    relu = [True] * len(ws)
    X, Y = data(case["n"], case["sizes"][0], case["sizes"][-1], seed=4)
    orders = np.stack([rng.permutation(case["n"]) for _ in range(2)])
    rws, rbs, rloss = reference_train(ws, bs, relu, X, Y, orders, case["B"], 0.05, momentum=0.9)
    w2, b2 = [w.copy() for w in ws], [b.copy() for b in bs]
    r = _C.mlp_train(w2, b2, relu, X, Y, epochs=2, batch_size=case["B"], perm=orders, lr=0.05,
                     momentum=0.9, weight_bufs=[np.zeros_like(w) for w in w2],
                     bias_bufs=[np.zeros_like(b) for b in b2], path=path)
    assert r["small_path"] == (path == "small")
    assert_params_close(w2, b2, rws, rbs)
    np.testing.assert_allclose(r["losses"], rloss, rtol=1e-5)


def test_fit_on_a_net_ending_in_relu_matches_the_eager_loop():
    nn = pytest.importorskip("fastmlp.nn")
    optim = pytest.importorskip("fastmlp.optim")
    fastmlp.manual_seed(5)
    eager = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3), nn.ReLU())
    fused = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3), nn.ReLU())
    fused.load_state_dict(eager.state_dict())
    X, Y = data(200, 6, 3, seed=6)
    order = np.random.default_rng(16).permutation(200)
    opt = optim.SGD(eager.parameters(), lr=0.05)
    for s in range(0, 200, 32):
        idx = order[s:s + 32]
        loss = nn.MSELoss()(eager(fastmlp.tensor(X[idx])), fastmlp.tensor(Y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    fastmlp.fit(fused, X, Y, epochs=1, batch_size=32, lr=0.05, permutation=order, progress=False)
    for p, q in zip(fused.parameters(), eager.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-5 * np.abs(q.numpy()).max())


@pytest.mark.parametrize("path", ["small", "gemm"])
def test_drop_last_skips_partial_batch(path):
    rng = np.random.default_rng(3)
    ws, bs = init_params((5, 8, 2), rng)
    X, Y = data(70, 5, 2)
    order = rng.permutation(70)
    rws, rbs, rloss = reference_train(ws, bs, [True, False], X, Y, [order], 16, 0.1, drop_last=True)
    r = _C.mlp_train(ws, bs, [True, False], X, Y, batch_size=16, perm=order, lr=0.1,
                     drop_last=True, path=path)
    assert r["steps"] == 4
    assert_params_close(ws, bs, rws, rbs)
    np.testing.assert_allclose(r["losses"], rloss, rtol=1e-5)


@pytest.mark.parametrize("path", ["small", "gemm"])
def test_layers_without_bias(path):
    rng = np.random.default_rng(16)
    ws, _ = init_params((6, 12, 2), rng)
    zeros = [np.zeros(12), np.zeros(2)]
    X, Y = data(90, 6, 2)
    order = rng.permutation(90)
    rws, rbs, _ = reference_train(ws, zeros, [True, False], X, Y, [order], 16, 0.1, momentum=0.9,
                                  no_bias=True)
    wb = [np.zeros_like(w) for w in ws]
    _C.mlp_train(ws, [None, None], [True, False], X, Y, batch_size=16, perm=order, lr=0.1,
                 momentum=0.9, weight_bufs=wb, bias_bufs=[None, None], path=path)
    assert_params_close(ws, [], rws, [])
    assert not rbs[0].any()


def test_chunked_calls_equal_one_call():
    """Epoch e shuffles the same whether run in one call or one call per epoch (fit's way)."""
    rng = np.random.default_rng(4)
    ws, bs = init_params((6, 9, 1), rng)
    X, Y = data(90, 6, 1)
    w1, b1 = [w.copy() for w in ws], [b.copy() for b in bs]
    wb1, bb1 = [np.zeros_like(w) for w in ws], [np.zeros_like(b) for b in bs]
    _C.mlp_train(w1, b1, [True, False], X, Y, epochs=3, batch_size=8, seed=7, lr=0.05,
                 momentum=0.9, weight_bufs=wb1, bias_bufs=bb1)
    w2, b2 = [w.copy() for w in ws], [b.copy() for b in bs]
    wb2, bb2 = [np.zeros_like(w) for w in ws], [np.zeros_like(b) for b in bs]
    for e in range(3):
        _C.mlp_train(w2, b2, [True, False], X, Y, epochs=1, epoch_offset=e, batch_size=8, seed=7,
                     lr=0.05, momentum=0.9, weight_bufs=wb2, bias_bufs=bb2, first_step=e == 0)
    for a, b in zip(w1 + b1, w2 + b2):
        np.testing.assert_array_equal(a, b)
    # and the seeded order is the one mlp_shuffle_order reports
    order = _C.mlp_shuffle_order(90, 7, 0)
    assert sorted(order) == list(range(90))
    w3, b3 = [w.copy() for w in ws], [b.copy() for b in bs]
    w4, b4 = [w.copy() for w in ws], [b.copy() for b in bs]
    _C.mlp_train(w3, b3, [True, False], X, Y, batch_size=8, seed=7, lr=0.05)
    _C.mlp_train(w4, b4, [True, False], X, Y, batch_size=8, perm=order, lr=0.05)
    for a, b in zip(w3 + b3, w4 + b4):
        np.testing.assert_array_equal(a, b)


def test_one_and_two_threads_bitwise_equal():
    rng = np.random.default_rng(5)
    sizes = (64, 256, 256, 8)  # big enough for the gemm path to use threads (forced below)
    ws, bs = init_params(sizes, rng)
    X, Y = data(512, 64, 8)
    results = []
    old = fastmlp.get_num_threads()
    try:
        for t in (1, 2):
            fastmlp.set_num_threads(t)
            w, b = [x.copy() for x in ws], [x.copy() for x in bs]
            wb, bb = [np.zeros_like(x) for x in w], [np.zeros_like(x) for x in b]
            r = _C.mlp_train(w, b, [True, True, False], X, Y, epochs=2, batch_size=128, seed=1,
                             lr=0.01, momentum=0.9, weight_bufs=wb, bias_bufs=bb, path="gemm")
            assert not r["small_path"]
            results.append((w, b, r["losses"]))
    finally:
        fastmlp.set_num_threads(old)
    for a, b in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        np.testing.assert_array_equal(a, b)
    assert results[0][2] == results[1][2]


@pytest.mark.parametrize("cpu", fastmlp.supported_cpu_paths())
def test_every_cpu_path_matches_reference(cpu):
    old = fastmlp.get_cpu_path()
    rng = np.random.default_rng(6)
    ws, bs = init_params((10, 20, 1), rng)
    X, Y = data(200, 10, 1)
    order = rng.permutation(200)
    rws, rbs, _ = reference_train(ws, bs, [True, False], X, Y, [order], 64, 0.02, momentum=0.9)
    try:
        fastmlp.set_cpu_path(cpu)
        wb, bb = [np.zeros_like(w) for w in ws], [np.zeros_like(b) for b in bs]
        _C.mlp_train(ws, bs, [True, False], X, Y, batch_size=64, perm=order, lr=0.02,
                     momentum=0.9, weight_bufs=wb, bias_bufs=bb, path="small")
    finally:
        fastmlp.set_cpu_path(old)
    assert_params_close(ws, bs, rws, rbs)


def test_mlp_forward_matches_numpy():
    rng = np.random.default_rng(7)
    ws, bs = init_params((9, 31, 4), rng)
    X, _ = data(2100, 9, 1)
    out = _C.mlp_forward(ws, bs, [True, False], X)
    ref = np.maximum(X.astype(np.float64) @ ws[0].T + bs[0], 0) @ ws[1].T + bs[1]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_binding_rejects_bad_arguments():
    rng = np.random.default_rng(8)
    ws, bs = init_params((4, 3, 1), rng)
    X, Y = data(10, 4, 1)
    with pytest.raises(ValueError, match="outputs 3 features"):
        _C.mlp_train([ws[0], np.zeros((1, 2), np.float32)], bs, [True, False], X, Y)
    with pytest.raises(ValueError, match="shape"):
        _C.mlp_train(ws, bs, [True, False], X[:, :3].copy(), Y)
    with pytest.raises(ValueError, match="momentum"):
        _C.mlp_train(ws, bs, [True, False], X, Y, momentum=0.9)
    with pytest.raises(ValueError, match="outside"):
        _C.mlp_train(ws, bs, [True, False], X, Y, perm=np.arange(10) + 1)
    with pytest.raises(ValueError, match="batch_size"):
        _C.mlp_train(ws, bs, [True, False], X, Y, batch_size=0)
    with pytest.raises(TypeError, match="float32"):
        _C.mlp_train([w.astype(np.float64) for w in ws], bs, [True, False], X, Y)
    with pytest.raises(ValueError, match="overlaps"):
        _C.mlp_train([ws[0], ws[1]], [bs[0], bs[0][:1]], [True, False], X, Y)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.mlp_train([np.zeros((8, 3), np.float32)[::2], ws[1]], bs, [True, False], X, Y)


# ---- fit() -----------------------------------------------------------------------------------

class ArrayLinear:
    """A minimal Linear stand-in (weight/bias numpy arrays) for the chain extraction."""

    def __init__(self, w, b):
        self.weight, self.bias = w, b


ArrayLinear.__name__ = "Linear"


class ArrayReLU:
    pass


ArrayReLU.__name__ = "ReLU"


class ArraySequential:
    def __init__(self, *mods):
        self._mods = list(mods)

    def children(self):
        return iter(self._mods)


ArraySequential.__name__ = "Sequential"


def seq_model(sizes, rng):
    ws, bs = init_params(sizes, rng)
    mods = []
    for i, (w, b) in enumerate(zip(ws, bs)):
        mods.append(ArrayLinear(w, b))
        if i < len(ws) - 1:
            mods.append(ArrayReLU())
    return ArraySequential(*mods), ws, bs


def test_fit_matches_reference_and_reports_history():
    rng = np.random.default_rng(9)
    model, ws, bs = seq_model((10, 20, 1), rng)
    ws0, bs0 = [w.copy() for w in ws], [b.copy() for b in bs]
    X, Y = data(300, 10, 1)
    perm = np.stack([rng.permutation(300) for _ in range(3)])
    Xv, Yv = data(50, 10, 1, seed=2)
    h = fastmlp.fit(model, X, Y[:, 0], epochs=3, batch_size=64, lr=0.05, momentum=0.9,
                    nesterov=True, permutation=perm, validation_data=(Xv, Yv), progress=False)
    rws, rbs, rloss = reference_train(ws0, bs0, [True, False], X, Y, perm, 64, 0.05,
                                      momentum=0.9, nesterov=True)
    assert_params_close(ws, bs, rws, rbs)  # the model's own arrays were trained in place
    np.testing.assert_allclose(h["loss"], rloss, rtol=1e-5)
    assert h.loss is h["loss"] and len(h["val_loss"]) == 3 and h["steps"] == 15
    pred = np.maximum(Xv @ rws[0].T + rbs[0], 0) @ rws[1].T + rbs[1]
    np.testing.assert_allclose(h["val_loss"][-1], np.mean((pred - Yv) ** 2), rtol=1e-4)
    assert h["samples_per_sec"] > 0
    np.testing.assert_allclose(fastmlp.trainer.predict(model, Xv), pred, rtol=1e-4, atol=1e-5)


def test_fit_seed_determinism():
    X, Y = data(200, 10, 1)
    outs = []
    for seed in (3, 3, 4):
        model, ws, bs = seq_model((10, 20, 1), np.random.default_rng(0))
        h = fastmlp.fit(model, X, Y, epochs=2, batch_size=32, lr=0.05, seed=seed, progress=False)
        outs.append((ws[0].copy(), h["loss"]))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]
    assert not np.array_equal(outs[0][0], outs[2][0])
    model, ws, bs = seq_model((10, 20, 1), np.random.default_rng(0))
    h = fastmlp.fit(model, X, Y, epochs=1, batch_size=32, lr=0.05, progress=False)
    assert isinstance(h["seed"], int)


def test_fit_shuffle_false_is_in_order():
    rng = np.random.default_rng(10)
    model, ws, bs = seq_model((4, 6, 1), rng)
    ws0, bs0 = [w.copy() for w in ws], [b.copy() for b in bs]
    X, Y = data(50, 4, 1)
    fastmlp.fit(model, X, Y, epochs=2, batch_size=16, lr=0.1, shuffle=False, progress=False)
    rws, rbs, _ = reference_train(ws0, bs0, [True, False], X, Y, [np.arange(50)] * 2, 16, 0.1)
    assert_params_close(ws, bs, rws, rbs)


def test_fit_nonfinite_loss_stops_with_epoch_and_batch():
    rng = np.random.default_rng(11)
    model, ws, bs = seq_model((4, 6, 1), rng)
    X, Y = data(64, 4, 1)
    X[40, 2] = np.nan  # batch 3 (1-based) of epoch 1 with batch 16, in order
    before = [w.copy() for w in ws]
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 3") as ei:
        fastmlp.fit(model, X, Y, epochs=2, batch_size=16, lr=0.1, shuffle=False, progress=False)
    assert (ei.value.epoch, ei.value.batch) == (0, 2)
    assert np.isfinite(ws[0]).all() and not np.array_equal(ws[0], before[0])
    model, ws, bs = seq_model((4, 6, 1), rng)
    h = fastmlp.fit(model, X, Y, epochs=2, batch_size=16, lr=0.1, shuffle=False, progress=False,
                    allow_nonfinite=True)
    assert len(h["loss"]) == 2 and np.isnan(h["loss"][0])


def test_fit_argument_errors():
    rng = np.random.default_rng(12)
    model, ws, bs = seq_model((4, 6, 2), rng)
    X, Y = data(20, 4, 2)
    with pytest.raises(ValueError, match="2 outputs"):
        fastmlp.fit(model, X, Y[:, 0], epochs=1, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="features"):
        fastmlp.fit(model, X[:, :3], Y, epochs=1, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="samples"):
        fastmlp.fit(model, X, Y[:5], epochs=1, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="no batch"):
        fastmlp.fit(model, X, Y, epochs=1, batch_size=64, lr=0.1, drop_last=True, progress=False)
    with pytest.raises(ValueError, match="learning rate"):
        fastmlp.fit(model, X, Y, epochs=1, batch_size=4, lr=-1, progress=False)
    with pytest.raises(TypeError, match="epochs"):
        fastmlp.fit(model, X, Y, epochs=1.5, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(TypeError, match="numbers"):
        fastmlp.fit(model, X.astype(str), Y, epochs=1, batch_size=4, lr=0.1, progress=False)

    class Tanh:
        pass

    bad = ArraySequential(ArrayLinear(ws[0], bs[0]), Tanh(), ArrayLinear(ws[1], bs[1]))
    with pytest.raises(ValueError, match="eager loop"):
        fastmlp.fit(bad, X, Y, epochs=1, batch_size=4, lr=0.1, progress=False)


def test_progress_line_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model, _, _ = seq_model((4, 6, 1), np.random.default_rng(13))
    X, Y = data(40, 4, 1)
    fastmlp.fit(model, X, Y, epochs=2, batch_size=8, lr=0.1, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss" in err and "samples/s" in err
    fastmlp.fit(model, X, Y, epochs=2, batch_size=8, lr=0.1, progress=False)
    assert capsys.readouterr().err == ""


# ---- against PyTorch -------------------------------------------------------------------------

def torch_eager(model, X, Y, orders, B, **opt):
    torch = pytest.importorskip("torch")
    sgd = torch.optim.SGD(model.parameters(), **opt)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    for order in orders:
        for s in range(0, len(order), B):
            idx = torch.from_numpy(order[s:s + B])
            loss = torch.nn.functional.mse_loss(model(Xt[idx]), Yt[idx])
            sgd.zero_grad()
            loss.backward()
            sgd.step()


@pytest.mark.parametrize("opt", [dict(lr=0.05), dict(lr=0.02, momentum=0.9, nesterov=True),
                                 dict(lr=0.02, momentum=0.8, dampening=0.1, weight_decay=1e-3)])
def test_fit_matches_torch(opt):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):  # the seed's network, forward written by hand
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(10, 20)
            self.fc2 = torch.nn.Linear(20, 1)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    ref = Net()
    ours = copy.deepcopy(ref)
    assert extract_chain(ours).relu == [True, False]
    X, Y = data(500, 10, 1)
    rng = np.random.default_rng(14)
    perm = np.stack([rng.permutation(500) for _ in range(2)])
    torch_eager(ref, X, Y, perm, 64, **opt)
    fastmlp.fit(ours, X, Y, epochs=2, batch_size=64, permutation=perm, progress=False, **opt)
    for p, q in zip(ours.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-5 * float(q.detach().abs().max()))


def test_probe_finds_relu_placement():
    torch = pytest.importorskip("torch")

    class NoRelu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 5)
            self.b = torch.nn.Linear(5, 4)
            self.c = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.c(torch.relu(self.b(self.a(x))))

    assert extract_chain(NoRelu()).relu == [False, True, False]

    class Tanh(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 5)
            self.b = torch.nn.Linear(5, 1)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    with pytest.raises(ValueError, match="eager loop"):
        extract_chain(Tanh())
    seq = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    assert extract_chain(seq).relu == [True, False]
    with pytest.raises(ValueError, match="Sigmoid"):
        extract_chain(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Sigmoid()))


def test_fit_matches_fastmlp_eager_loop():
    """fit on a fastmlp.nn model gives what the eager fastmlp loop (nn + optim.SGD) gives."""
    nn = pytest.importorskip("fastmlp.nn")
    optim = pytest.importorskip("fastmlp.optim")
    fastmlp.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(10, 20)
            self.fc2 = nn.Linear(20, 1)

        def forward(self, x):
            return self.fc2(fastmlp.relu(self.fc1(x)))

    eager, fused = Net(), Net()
    fused.load_state_dict(eager.state_dict())
    X, Y = data(300, 10, 1)
    order = np.random.default_rng(15).permutation(300)
    opt = optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.MSELoss()
    for s in range(0, 300, 64):
        idx = order[s:s + 64]
        loss = loss_fn(eager(fastmlp.tensor(X[idx])), fastmlp.tensor(Y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    fastmlp.fit(fused, fastmlp.tensor(X), fastmlp.tensor(Y), epochs=1, batch_size=64, lr=0.05,
                momentum=0.9, permutation=order, progress=False)  # Tensors in, like numpy
    for p, q in zip(fused.parameters(), eager.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-5 * np.abs(q.numpy()).max())
    seq = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1))
    assert extract_chain(seq).relu == [True, False]
    nested = nn.Sequential(nn.Sequential(nn.Linear(10, 20), nn.ReLU()), nn.Linear(20, 1), nn.ReLU())
    assert extract_chain(nested).relu == [True, True]
    with pytest.raises(ValueError, match="before the first Linear"):
        extract_chain(nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))


def test_progress_bar_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    model, _, _ = seq_model((4, 6, 1), np.random.default_rng(17))
    X, Y = data(40, 4, 1)
    fastmlp.fit(model, X, Y, epochs=3, batch_size=8, lr=0.1, progress=True,
                validation_data=(X, Y))
    err = capsys.readouterr().err
    assert "3/3" in err and "val_loss" in err and "samples/s" in err
