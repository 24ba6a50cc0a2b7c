"""fastmlp.fit on the GPU (fastmlp._cuda.mlp_train) against fit on the CPU, from the same weights
and the same seed (so the same batches): weights, momentum variants, a net ending in ReLU,
drop_last, the non-finite stop, GPU data used in place, a side stream, the probe path, predict and
the CLI's --device cuda. GPU only: marked `cuda` and skipped elsewhere (tests/cuda/conftest.py).
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.trainer import NonFiniteLossError, fit, predict

pytestmark = pytest.mark.cuda
cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fastmlp._cuda")


def make_model(widths, seed=0, relu_last=False, device="cpu"):
    fastmlp.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(widths) - 2 or relu_last:
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods)
    return model.to(device) if device != "cpu" else model


def host_weights(model):
    out = []
    for p in model.parameters():
        a = p._data
        out.append(a.get() if hasattr(a, "get") else np.array(a))
    return out


def data(n, din, dout, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, din)).astype(np.float32)
    W = rng.standard_normal((din, dout)).astype(np.float32) / np.sqrt(din)
    return X, np.tanh(X @ W + 0.1).astype(np.float32)


def assert_same_weights(gpu_model, cpu_model, rtol=1e-5, atol=1e-6):
    for g, c in zip(host_weights(gpu_model), host_weights(cpu_model)):
        np.testing.assert_allclose(g, c, rtol=rtol, atol=atol)


NETS = {"seed": (10, 20, 1), "3-layer": (16, 64, 32, 3)}
OPTS = {"plain": dict(), "momentum": dict(momentum=0.9), "nesterov": dict(momentum=0.9, nesterov=True),
        "dampening_wd": dict(momentum=0.8, dampening=0.3, weight_decay=0.01)}


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("opt", OPTS)
def test_gpu_fit_matches_cpu_fit(net, opt):
    widths = NETS[net]
    X, y = data(512, widths[0], widths[-1])
    Xv, yv = data(100, widths[0], widths[-1], seed=2)
    cpu, gpu = make_model(widths), make_model(widths, device="cuda")
    kw = dict(epochs=2, batch_size=32, lr=0.05, seed=5, validation_data=(Xv, yv), progress=False,
              **OPTS[opt])
    h_cpu, h_gpu = fit(cpu, X, y, **kw), fit(gpu, X, y, **kw)
    assert h_gpu["device"].startswith("cuda") and h_gpu["steps"] == h_cpu["steps"] == 32
    assert_same_weights(gpu, cpu)
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=1e-5)
    np.testing.assert_allclose(h_gpu["val_loss"], h_cpu["val_loss"], rtol=1e-5)


def test_gpu_fit_net_ending_in_relu():
    X, y = data(300, 8, 4)
    y = np.abs(y)
    cpu, gpu = make_model((8, 24, 4), relu_last=True), make_model((8, 24, 4), relu_last=True, device="cuda")
    kw = dict(epochs=2, batch_size=16, lr=0.1, seed=1, progress=False)
    fit(cpu, X, y, **kw)
    fit(gpu, X, y, **kw)
    assert_same_weights(gpu, cpu)


@pytest.mark.parametrize("drop_last", [False, True])
def test_gpu_fit_partial_last_batch(drop_last):
    X, y = data(203, 10, 1)
    cpu, gpu = make_model((10, 20, 1)), make_model((10, 20, 1), device="cuda")
    kw = dict(epochs=2, batch_size=25, lr=0.05, seed=3, momentum=0.9, drop_last=drop_last, progress=False)
    h_cpu, h_gpu = fit(cpu, X, y, **kw), fit(gpu, X, y, **kw)
    assert h_gpu["steps"] == h_cpu["steps"] == (16 if drop_last else 18)
    assert_same_weights(gpu, cpu)
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=1e-5)


def test_gpu_fit_in_order_and_explicit_permutation():
    X, y = data(256, 10, 1)
    perm = np.stack([np.random.default_rng(e).permutation(256) for e in range(2)])
    for kw in (dict(shuffle=False), dict(permutation=perm)):
        cpu, gpu = make_model((10, 20, 1)), make_model((10, 20, 1), device="cuda")
        fit(cpu, X, y, epochs=2, batch_size=32, lr=0.05, progress=False, **kw)
        fit(gpu, X, y, epochs=2, batch_size=32, lr=0.05, progress=False, **kw)
        assert_same_weights(gpu, cpu)


def test_gpu_nonfinite_loss_stops_with_weights_before_the_batch():
    X, y = data(256, 10, 1)
    X[150, 2] = np.nan
    cpu, gpu = make_model((10, 20, 1)), make_model((10, 20, 1), device="cuda")
    kw = dict(epochs=2, batch_size=32, lr=0.05, seed=4, momentum=0.9, progress=False)
    with pytest.raises(NonFiniteLossError) as e_cpu:
        fit(cpu, X, y, **kw)
    with pytest.raises(NonFiniteLossError) as e_gpu:
        fit(gpu, X, y, **kw)
    assert (e_gpu.value.epoch, e_gpu.value.batch) == (e_cpu.value.epoch, e_cpu.value.batch)
    assert all(np.isfinite(w).all() for w in host_weights(gpu))
    assert_same_weights(gpu, cpu)
    # allow_nonfinite keeps going: the NaN spreads into the weights, as on the CPU.
    gpu2 = make_model((10, 20, 1), device="cuda")
    h = fit(gpu2, X, y, allow_nonfinite=True, **kw)
    assert h["steps"] == 16 and not np.isfinite(h["loss"][0])


def test_gpu_data_in_place_and_on_a_side_stream():
    X, y = data(256, 10, 1)
    ref = make_model((10, 20, 1), device="cuda")
    fit(ref, X, y, epochs=2, batch_size=32, lr=0.05, seed=2, progress=False)
    gpu = make_model((10, 20, 1), device="cuda")
    with cp.cuda.Stream(non_blocking=True):
        fit(gpu, cp.asarray(X), fastmlp.tensor(y).cuda(), epochs=2, batch_size=32, lr=0.05, seed=2,
            progress=False)
    for a, b in zip(host_weights(gpu), host_weights(ref)):
        np.testing.assert_array_equal(a, b)  # same kernels, same order: bitwise


def test_gpu_fit_large_layers_split_k():
    X, y = data(1024, 784, 10)
    widths = (784, 1024, 1024, 10)
    cpu, gpu = make_model(widths), make_model(widths, device="cuda")
    kw = dict(epochs=1, batch_size=256, lr=0.01, seed=0, momentum=0.9, progress=False)
    h_cpu, h_gpu = fit(cpu, X, y, **kw), fit(gpu, X, y, **kw)
    assert_same_weights(gpu, cpu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_gpu["loss"], h_cpu["loss"], rtol=1e-4)


def test_gpu_probe_path_and_predict():
    class Net(nn.Module):  # the seed program's hand-written forward
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(10, 20)
            self.fc2 = nn.Linear(20, 1)

        def forward(self, x):
            return self.fc2(nn.functional.relu(self.fc1(x)))

    fastmlp.manual_seed(0)
    cpu = Net()
    fastmlp.manual_seed(0)
    gpu = Net().cuda()
    X, y = data(256, 10, 1)
    fit(cpu, X, y, epochs=1, batch_size=32, lr=0.05, seed=1, progress=False)
    fit(gpu, X, y, epochs=1, batch_size=32, lr=0.05, seed=1, progress=False)
    assert_same_weights(gpu, cpu)
    p = predict(gpu, X)
    assert type(p) is np.ndarray
    np.testing.assert_allclose(p, predict(cpu, X), rtol=1e-5, atol=1e-6)
    pd = predict(gpu, cp.asarray(X))
    assert isinstance(pd, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(pd), p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cp.asnumpy(gpu(fastmlp.tensor(X).cuda())._data), p, rtol=1e-5, atol=1e-6)


def test_binding_rejects_host_pointer_and_device_mismatch_before_launch():
    w = [cp.zeros((20, 10), cp.float32), cp.zeros((1, 20), cp.float32)]
    b = [cp.zeros(20, cp.float32), cp.zeros(1, cp.float32)]
    X, Y = cp.zeros((8, 10), cp.float32), cp.zeros((8, 1), cp.float32)

    class HostPointer:  # a valid interface pointing at host memory
        def __init__(self, a):
            self.a = a
            self.__cuda_array_interface__ = {"shape": a.shape, "typestr": "<f4",
                                             "data": (a.ctypes.data, False), "version": 3}

    with pytest.raises(TypeError, match="host memory"):
        _cuda.mlp_train(w, b, [True, False], HostPointer(np.zeros((8, 10), np.float32)), Y)
    assert float(cp.abs(w[0]).sum()) == 0.0  # nothing ran
    r = _cuda.mlp_train(w, b, [True, False], X, Y, epochs=0)
    assert r["losses"] == [] and r["steps"] == 0


def test_cli_train_device_cuda(tmp_path, capsys):
    from fastmlp.__main__ import main

    X, y = data(200, 3, 1)
    path = tmp_path / "d.csv"
    with open(path, "w") as f:
        f.write("a,b,c,target\n")
        for row, t in zip(X, y[:, 0]):
            f.write(",".join(f"{v:.5f}" for v in row) + f",{t:.5f}\n")
    for dev in ("cpu", "cuda"):
        assert main(["train", str(path), "--target", "target", "--hidden", "8", "--epochs", "3",
                     "--device", dev, "--out", str(tmp_path / f"m_{dev}.npz"), "--no-progress",
                     "--val-split", "0.2"]) == 0
    out = capsys.readouterr().out
    mses = [float(line.split("train MSE ")[1].split(",")[0]) for line in out.splitlines() if "train MSE" in line]
    assert len(mses) == 2 and mses[1] == pytest.approx(mses[0], rel=1e-4)
    assert main(["predict", str(tmp_path / "m_cuda.npz"), str(path)]) == 0
