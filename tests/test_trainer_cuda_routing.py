"""fastmlp.fit / predict on a model whose parameters live on the GPU, without a GPU.

The GPU path of fit is orchestration (upload once, the host-made sample order per epoch, momentum
buffers on the device, validation on the device, history, the non-finite stop) around one call of
``fastmlp._cuda.mlp_train`` per epoch. Here that call and CuPy are replaced by numpy-backed fakes:
"GPU arrays" are host arrays carrying ``__cuda_array_interface__``, and the fake ``mlp_train``
runs the CPU trainer with exactly the arguments the GPU one received. So a fit routed to the "GPU"
must equal a CPU fit bitwise, and the recorded calls show what the GPU trainer would be given.
The real GPU trainer is compared with the CPU in tests/cuda/test_cuda_fit.py (GPU only).
"""
import contextlib
import types

import numpy as np
import pytest

import fastmlp
from fastmlp import _C, nn, trainer
from fastmlp.trainer import NonFiniteLossError, fit, predict


class GpuArray(np.ndarray):
    """A host array posing as a CuPy array on cuda:0."""

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False),
                "strides": None if self.flags.c_contiguous else self.strides, "version": 3}

    @property
    def device(self):
        return types.SimpleNamespace(id=0)

    def get(self):
        return np.array(self.view(np.ndarray))


def gpu(a):
    return np.asarray(a).view(GpuArray)


def plain(a):
    return None if a is None else a.view(np.ndarray)


class FakeCupy:
    float32, float64, ndarray = np.float32, np.float64, GpuArray
    asarray = staticmethod(lambda a, dtype=None: np.asarray(a, dtype=dtype).view(GpuArray))
    ascontiguousarray = staticmethod(lambda a, dtype=None: np.ascontiguousarray(a, dtype=dtype).view(GpuArray))
    zeros_like = staticmethod(lambda a: np.zeros_like(a).view(GpuArray))
    empty = staticmethod(lambda shape, dtype=np.float32: np.empty(shape, dtype).view(GpuArray))
    asnumpy = staticmethod(lambda a: np.array(a.view(np.ndarray)))
    cuda = types.SimpleNamespace(Device=lambda i: contextlib.nullcontext(),
                                 get_current_stream=lambda: types.SimpleNamespace(ptr=0))


class FakeCuda:
    """fastmlp._cuda's trainer entry points, recorded and run by the CPU trainer."""

    def __init__(self):
        self.calls = []

    def mlp_train(self, weights, biases, relu, X, Y, *, epochs, batch_size, drop_last, perm, lr,
                  momentum, dampening, weight_decay, nesterov, weight_bufs, bias_bufs, first_step,
                  allow_nonfinite, stream, frozen=None, interruptible=False):
        for a in [*weights, *[b for b in biases if b is not None], X, Y,
                  *(weight_bufs or []), *[b for b in (bias_bufs or []) if b is not None]]:
            assert isinstance(a, GpuArray), "the GPU trainer got a host array"
        assert perm is None or type(perm) is np.ndarray  # the order is host memory
        self.calls.append(dict(X=X, Y=Y, perm=None if perm is None else perm.copy(), epochs=epochs,
                               first_step=first_step, stream=stream, bufs=weight_bufs))
        return _C.mlp_train([plain(w) for w in weights], [plain(b) for b in biases], relu,
                            plain(X), plain(Y), epochs=epochs, batch_size=batch_size,
                            drop_last=drop_last, shuffle=False, perm=perm, lr=lr, momentum=momentum,
                            dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                            weight_bufs=None if weight_bufs is None else [plain(w) for w in weight_bufs],
                            bias_bufs=None if bias_bufs is None else [plain(b) for b in bias_bufs],
                            first_step=first_step, allow_nonfinite=allow_nonfinite,
                            frozen=frozen, interruptible=interruptible)

    def mlp_forward(self, weights, biases, relu, X, out, stream):
        assert isinstance(X, GpuArray) and isinstance(out, GpuArray)
        _C.mlp_forward([plain(w) for w in weights], [plain(b) for b in biases], relu, plain(X),
                       plain(out))
        return out


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(trainer, "_cuda_backend", lambda chain: (FakeCupy, fake))
    return fake


def make_model(widths=(10, 20, 1), seed=0, relu_last=False):
    fastmlp.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(widths) - 2 or relu_last:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def to_fake_gpu(model):
    for p in model.parameters():
        p._data = p._data.view(GpuArray)
    return model


def weights(model):
    return [np.array(plain(p._data)) for p in model.parameters()]


def data(n=200, din=10, dout=1, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, din)).astype(np.float32)
    return X, np.tanh(X[:, :dout] + 0.1).astype(np.float32)


@pytest.mark.parametrize("opts", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=0.01),
                                  dict(shuffle=False), dict(drop_last=True)])
def test_gpu_model_routes_to_gpu_trainer_and_matches_cpu_fit(fake_gpu, opts):
    X, y = data()
    Xv, yv = data(50, seed=2)
    cpu, gpum = make_model(), to_fake_gpu(make_model())
    kw = dict(epochs=3, batch_size=32, lr=0.05, seed=7, validation_data=(Xv, yv), progress=False, **opts)
    h_cpu = fit(cpu, X, y, **kw)
    h_gpu = fit(gpum, X, y, **kw)
    assert h_gpu["device"] == "cuda:0" and h_cpu["device"] == "cpu"
    for a, b in zip(weights(gpum), weights(cpu)):
        np.testing.assert_array_equal(a, b)
    assert h_gpu["loss"] == h_cpu["loss"] and h_gpu["val_loss"] == pytest.approx(h_cpu["val_loss"], rel=1e-12)
    assert h_gpu["steps"] == h_cpu["steps"]
    calls = fake_gpu.calls
    assert len(calls) == 3 and all(c["epochs"] == 1 and c["stream"] == 0 for c in calls)
    assert [c["first_step"] for c in calls] == [True, False, False]
    assert all(c["X"] is calls[0]["X"] for c in calls)  # uploaded once, not per epoch
    for e, c in enumerate(calls):  # the CPU trainer's own shuffle, made on the host
        if opts.get("shuffle", True):
            np.testing.assert_array_equal(c["perm"], _C.mlp_shuffle_order(len(X), 7, e))
        else:
            assert c["perm"] is None
    if opts.get("momentum"):
        assert all(isinstance(b, GpuArray) for b in calls[0]["bufs"])
        assert all(c["bufs"] is calls[0]["bufs"] for c in calls)  # one set of buffers for the fit


def test_gpu_data_is_used_in_place_and_permutation_passed_per_epoch(fake_gpu):
    X, y = data()
    Xg, yg = gpu(X), gpu(y)
    perm = np.stack([np.random.default_rng(e).permutation(len(X)) for e in range(2)])
    cpu, gpum = make_model(), to_fake_gpu(make_model())
    fit(cpu, X, y, epochs=2, batch_size=16, lr=0.05, permutation=perm, progress=False)
    fit(gpum, Xg, yg, epochs=2, batch_size=16, lr=0.05, permutation=perm, progress=False)
    assert fake_gpu.calls[0]["X"] is Xg or np.shares_memory(fake_gpu.calls[0]["X"], Xg)
    for e, c in enumerate(fake_gpu.calls):
        np.testing.assert_array_equal(c["perm"], perm[e])
    for a, b in zip(weights(gpum), weights(cpu)):
        np.testing.assert_array_equal(a, b)


def test_gpu_data_of_another_dtype_is_converted_on_the_device(fake_gpu):
    X, y = data()
    gpum = to_fake_gpu(make_model())
    fit(gpum, gpu(X.astype(np.float64)), gpu(y[:, 0]), epochs=1, batch_size=16, lr=0.05, seed=0,
        progress=False)
    c = fake_gpu.calls[0]
    assert c["X"].dtype == np.float32 and c["Y"].shape == (len(X), 1)
    with pytest.raises(ValueError, match="X has 9 features"):
        fit(gpum, gpu(X[:, :9]), y, epochs=1, batch_size=16, lr=0.05, progress=False)


def test_gpu_nonfinite_loss_stops_like_cpu(fake_gpu):
    X, y = data()
    X[130, 3] = np.nan
    cpu, gpum = make_model(), to_fake_gpu(make_model())
    kw = dict(epochs=3, batch_size=32, lr=0.05, seed=3, momentum=0.9, progress=False)
    with pytest.raises(NonFiniteLossError) as e_cpu:
        fit(cpu, X, y, **kw)
    with pytest.raises(NonFiniteLossError) as e_gpu:
        fit(gpum, X, y, **kw)
    assert (e_gpu.value.epoch, e_gpu.value.batch) == (e_cpu.value.epoch, e_cpu.value.batch)
    assert e_gpu.value.history["loss"] == e_cpu.value.history["loss"]
    for a, b in zip(weights(gpum), weights(cpu)):
        np.testing.assert_array_equal(a, b)


def test_predict_on_gpu_model(fake_gpu):
    X, _ = data(40)
    cpu, gpum = make_model(), to_fake_gpu(make_model())
    host = predict(gpum, X)
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, predict(cpu, X))
    dev = predict(gpum, gpu(X))
    assert isinstance(dev, GpuArray)
    np.testing.assert_array_equal(plain(dev), host)


def test_model_split_across_devices_is_a_clear_error(fake_gpu):
    model = make_model((10, 20, 5, 1))
    lin = [m for m in model.children() if isinstance(m, nn.Linear)]
    lin[1].weight._data = lin[1].weight._data.view(GpuArray)
    X, y = data()
    with pytest.raises(ValueError, match=r"different devices \(layer 0 weight on cpu, layer 1 weight on cuda:0\)"):
        fit(model, X, y, epochs=1, batch_size=16, lr=0.05, progress=False)
    assert fake_gpu.calls == []


@pytest.mark.skipif(__import__("fastmlp.ops_cuda").ops_cuda.unavailable_reason() == "",
                    reason="CUDA and CuPy are usable here")
def test_gpu_model_without_cuda_is_a_clear_error():
    gpum = to_fake_gpu(make_model())
    X, y = data()
    with pytest.raises(RuntimeError, match=r"parameters are on cuda:0, but CUDA is not available"):
        fit(gpum, X, y, epochs=1, batch_size=16, lr=0.05, progress=False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        predict(gpum, X)


def test_cli_device_cuda_without_cupy_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    from fastmlp import ops_cuda
    from fastmlp.__main__ import main

    monkeypatch.setattr(fastmlp.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ops_cuda, "unavailable_reason", lambda: "CuPy is not installed: pip install cupy-cuda12x")
    path = tmp_path / "d.csv"
    X, y = data(30, din=3)
    with open(path, "w") as f:
        f.write("a,b,c,target\n")
        for row, t in zip(X, y[:, 0]):
            f.write(",".join(f"{v:.4f}" for v in row) + f",{t:.4f}\n")
    assert main(["train", str(path), "--target", "target", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CuPy is not installed" in err


def test_gpu_fit_passes_frozen_parameters(fake_gpu):
    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))
    model[0].weight.requires_grad_(False)
    ref = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))
    ref.load_state_dict(model.state_dict())
    ref[0].weight.requires_grad_(False)
    X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    y = X[:, :1] * 2
    w0 = model[0].weight.numpy().copy()
    to_fake_gpu(model)
    fastmlp.fit(model, X, y, epochs=2, batch_size=8, lr=0.05, momentum=0.9, seed=3,
                progress=False)
    fastmlp.fit(ref, X, y, epochs=2, batch_size=8, lr=0.05, momentum=0.9, seed=3, progress=False)
    assert np.array_equal(plain(model[0].weight._data), w0)
    np.testing.assert_allclose(plain(model[2].weight._data), ref[2].weight.numpy(), rtol=1e-5,
                               atol=1e-6)
