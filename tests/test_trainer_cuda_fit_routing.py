"""fastmlp.fit on a GPU model beyond ReLU/MSE/SGD routes to ``fastmlp._cuda.mlp_fit``, without a GPU.

As tests/test_trainer_cuda_routing.py: CuPy and ``_cuda`` are numpy-backed fakes ("GPU arrays" are
host arrays carrying ``__cuda_array_interface__``); the fake ``mlp_fit`` checks that every
parameter, optimizer state, data and weight array it gets is a "GPU" array and the order a host
array, then runs the CPU general trainer with exactly those arguments. So a GPU fit must equal a
CPU fit bitwise, and the recorded calls show what the GPU trainer would be given (the data
uploaded once, the host-made shuffle of the CPU trainer, one set of device state for the fit).
The GPU kernels themselves are checked by tests/cuda/mlp_fit_emulator.cpp.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C, nn, optim, trainer
from fastmlp.trainer import fit, predict

from test_trainer_cuda_routing import FakeCupy, FakeCuda, GpuArray, plain, to_fake_gpu, weights


def _plain_layers(layers):
    out = []
    for d in layers:
        c = dict(d)
        for k in ("weight", "bias"):
            if c.get(k) is not None:
                assert isinstance(c[k], GpuArray), f"the GPU trainer got a host {k}"
                c[k] = plain(c[k])
        for k in ("wstate", "bstate"):
            if c.get(k) is not None:
                for a in c[k]:
                    assert a is None or isinstance(a, GpuArray), "optimizer state on the host"
                c[k] = [plain(a) for a in c[k]]
        if c.get("norm") is not None:  # a LayerNorm / BatchNorm1d: its arrays on the device too
            nd = dict(c["norm"])
            for k in ("weight", "bias", "running_mean", "running_var"):
                if nd.get(k) is not None:
                    assert isinstance(nd[k], GpuArray), f"the GPU trainer got a host norm {k}"
                    nd[k] = plain(nd[k])
            for k in ("wstate", "bstate"):
                if nd.get(k) is not None:
                    assert all(a is None or isinstance(a, GpuArray) for a in nd[k]), \
                        "norm optimizer state on the host"
                    nd[k] = [plain(a) for a in nd[k]]
            c["norm"] = nd
        out.append(c)
    return out


class FakeCudaFit(FakeCuda):
    def mlp_fit(self, layers, X, Y, *, stream, **kw):
        for name in ("sample_weight", "class_weight", "pos_weight"):
            assert kw[name] is None or isinstance(kw[name], GpuArray), name
        assert isinstance(X, GpuArray) and isinstance(Y, GpuArray)
        perm = kw["perm"]
        assert perm is None or type(perm) is np.ndarray  # the order is host memory
        self.calls.append(dict(X=X, Y=Y, perm=None if perm is None else perm.copy(), stream=stream,
                               states=[d.get("wstate") for d in layers], step0=kw["step0"]))
        for name in ("sample_weight", "class_weight", "pos_weight"):
            kw[name] = plain(kw[name])
        return _C.mlp_fit(_plain_layers(layers), plain(X), plain(Y), **kw)

    def mlp_fit_forward(self, layers, X, out, stream):
        assert isinstance(X, GpuArray) and isinstance(out, GpuArray)
        out[...] = _C.mlp_fit_forward(_plain_layers(layers), plain(X))
        return out


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = FakeCudaFit()
    monkeypatch.setattr(trainer, "_cuda_backend", lambda chain: (FakeCupy, fake))
    return fake


def make_model(seed=0, act=nn.Tanh, dropout=0.0, dout=1):
    fastmlp.manual_seed(seed)
    mods = [nn.Linear(6, 16), act()]
    if dropout:
        mods.append(nn.Dropout(dropout))
    mods += [nn.Linear(16, 8), nn.GELU(), nn.Linear(8, dout)]
    return nn.Sequential(*mods)


def data(n=150, dout=1, seed=1, classes=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    if classes:
        return X, rng.integers(0, classes, n).astype(np.int64)
    return X, np.tanh(X[:, :dout] + 0.1).astype(np.float32)


CASES = [
    dict(loss="huber", optimizer="adam", lr=0.01),
    dict(loss="mse", optimizer="adamw", lr=0.01, weight_decay=0.05, dropout=0.2),
    dict(loss="l1", optimizer="rmsprop", lr=0.005, momentum=0.5, shuffle=False),
    dict(loss="mse", optimizer="sgd", lr=0.05, momentum=0.9, act=nn.SiLU, sample_weight=True),
    dict(loss="cross_entropy", optimizer="adam", lr=0.01, classes=4, class_weight=True),
    dict(loss="bce_with_logits", optimizer="adagrad", lr=0.05, dout=3, drop_last=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['loss']}-{c['optimizer']}")
def test_gpu_general_fit_routes_to_cuda_mlp_fit_and_matches_cpu(fake_gpu, case):
    case = dict(case)
    act, dropout = case.pop("act", nn.Tanh), case.pop("dropout", 0.0)
    classes, dout = case.pop("classes", 0), case.pop("dout", 1)
    out = classes or dout
    X, y = data(dout=dout, classes=classes)
    Xv, yv = data(40, dout=dout, seed=2, classes=classes)
    if case.pop("sample_weight", False):
        case["sample_weight"] = np.linspace(0.5, 1.5, len(X)).astype(np.float32)
    if case.pop("class_weight", False):
        case["class_weight"] = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    if case["loss"] == "bce_with_logits":
        y = (y > 0).astype(np.float32)
        yv = (yv > 0).astype(np.float32)
    cpu = make_model(act=act, dropout=dropout, dout=out)
    gpum = to_fake_gpu(make_model(act=act, dropout=dropout, dout=out))
    kw = dict(epochs=3, batch_size=32, seed=7, validation_data=(Xv, yv), progress=False, **case)
    h_cpu = fit(cpu, X, y, **kw)
    h_gpu = fit(gpum, X, y, **kw)
    assert h_gpu["device"] == "cuda:0" and h_cpu["device"] == "cpu"
    for a, b in zip(weights(gpum), weights(cpu)):
        np.testing.assert_array_equal(a, b)
    assert h_gpu["loss"] == h_cpu["loss"] and h_gpu["val_loss"] == h_cpu["val_loss"]
    assert h_gpu["steps"] == h_cpu["steps"]
    if classes:
        assert h_gpu["val_accuracy"] == h_cpu["val_accuracy"]
    calls = fake_gpu.calls
    assert len(calls) == 3 and all(c["stream"] == 0 for c in calls)
    assert all(c["X"] is calls[0]["X"] and c["Y"] is calls[0]["Y"] for c in calls)  # uploaded once
    assert [c["step0"] for c in calls] == [0, h_cpu["steps"] // 3, 2 * h_cpu["steps"] // 3]
    for e, c in enumerate(calls):  # the CPU trainer's own shuffle, made on the host
        if case.get("shuffle", True):
            np.testing.assert_array_equal(c["perm"], _C.mlp_shuffle_order(len(X), 7, e))
        else:
            assert c["perm"] is None
    st0 = calls[0]["states"]
    assert all(c["states"][0] is not None and all(a is b for a, b in zip(c["states"][0], st0[0]))
               for c in calls)  # one set of device state for the whole fit
    # predict on the GPU model runs the general forward there, as the CPU one
    np.testing.assert_array_equal(predict(gpum, Xv), predict(cpu, Xv))


def test_gpu_general_fit_with_an_optimizer_instance_leaves_its_state_on_the_device(fake_gpu):
    X, y = data()
    cpu, gpum = make_model(), to_fake_gpu(make_model())
    oc = optim.Adam(cpu.parameters(), lr=0.01)
    og = optim.Adam(gpum.parameters(), lr=0.01)
    for m, o in ((cpu, oc), (gpum, og)):
        fit(m, X, y, epochs=2, batch_size=32, optimizer=o, loss=nn.SmoothL1Loss(), seed=3,
            progress=False)
    for a, b in zip(weights(gpum), weights(cpu)):
        np.testing.assert_array_equal(a, b)
    for pg, pc in zip(gpum.parameters(), cpu.parameters()):
        sg, sc = og.state[pg], oc.state[pc]
        assert isinstance(sg["exp_avg"]._data, GpuArray)
        np.testing.assert_array_equal(plain(sg["exp_avg"]._data), sc["exp_avg"]._data)
        np.testing.assert_array_equal(plain(sg["exp_avg_sq"]._data), sc["exp_avg_sq"]._data)
        assert float(sg["step"]) == float(sc["step"])


def norm_model(seed=0, momentum=0.1, eval_bn=False):
    fastmlp.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16, momentum=momentum), nn.ReLU(),
                      nn.Linear(16, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 1))
    if eval_bn:
        m[1].eval()
    return m


def to_fake_gpu_all(model):
    """Parameters and buffers (running statistics, num_batches_tracked) on the fake GPU."""
    to_fake_gpu(model)
    for b in model.buffers():
        b._data = b._data.view(GpuArray)
    return model


@pytest.mark.parametrize("opts", [dict(momentum=0.1), dict(momentum=None), dict(eval_bn=True)],
                         ids=["bn-momentum", "bn-cumulative", "bn-eval"])
def test_gpu_fit_with_norm_layers_routes_to_cuda_mlp_fit_and_matches_cpu(fake_gpu, opts):
    X, y = data()
    Xv, yv = data(40, seed=2)
    cpu, gpum = norm_model(**opts), to_fake_gpu_all(norm_model(**opts))
    kw = dict(epochs=2, batch_size=32, seed=5, loss="mse", optimizer="adam", lr=0.01,
              validation_data=(Xv, yv), progress=False)
    h_cpu, h_gpu = fit(cpu, X, y, **kw), fit(gpum, X, y, **kw)
    assert len(fake_gpu.calls) == 2
    for a, b in zip(weights(gpum), weights(cpu)):
        np.testing.assert_array_equal(a, b)
    for bg, bc in zip(gpum.buffers(), cpu.buffers()):  # running statistics and the batch count
        assert isinstance(bg._data, GpuArray)
        np.testing.assert_array_equal(plain(bg._data), bc._data)
    if not opts.get("eval_bn"):
        assert int(plain(gpum[1].num_batches_tracked._data)) == h_cpu["steps"] > 0
    assert h_gpu["loss"] == h_cpu["loss"] and h_gpu["val_loss"] == h_cpu["val_loss"]
    gpum.eval(), cpu.eval()
    np.testing.assert_array_equal(predict(gpum, Xv), predict(cpu, Xv))
