"""fastmlp._cuda.mlp_fit (the GPU general fused trainer) against fastmlp._C.mlp_fit from the same
weights, order and dropout seed: a sample of activation x loss x optimizer, dropout (the same masks
as the CPU's), sample/class weights, schedules, frozen parameters, LayerNorm / BatchNorm1d layers
(running statistics, momentum=None, eval mode); fit() on a GPU model; bad input.
GPU only: marked `cuda` and skipped elsewhere (tests/cuda/conftest.py). The same host loop runs on
the CPU over emulated launches in tests/cuda/mlp_fit_emulator.cpp (every combination).
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C, nn
from fastmlp.tracing import ACT_KINDS
from fastmlp.training_spec import LOSS_KINDS, OPTIM_KINDS
from fastmlp.trainer import fit, predict

pytestmark = pytest.mark.cuda
cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fastmlp._cuda")


def layers(widths, acts, rng, drops=None, needs=(True, True, False), frozen=None):
    host = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        st = [np.zeros_like(w) if k else None for k in needs]
        bst = [np.zeros_like(bias) if k else None for k in needs]
        fw, fb = frozen[i] if frozen else (False, False)
        host.append({"weight": w, "bias": bias, "act": (ACT_KINDS[acts[i]], *((0.1, 0.0) if acts[i] == "leaky_relu" else (0.0, 0.0))),
                     "dropout": drops[i] if drops else 0.0, "frozen_weight": fw, "frozen_bias": fb,
                     "wstate": st, "bstate": bst})
    return host


def to_device(host):
    dev = []
    for d in host:
        c = dict(d)
        c["weight"] = cp.asarray(d["weight"])
        c["bias"] = None if d["bias"] is None else cp.asarray(d["bias"])
        for k in ("wstate", "bstate"):
            c[k] = None if d[k] is None else [None if a is None else cp.asarray(a) for a in d[k]]
        dev.append(c)
    return dev


def compare(host, dev, tol):
    for h, d in zip(host, dev):
        for k in ("weight", "bias"):
            if h[k] is not None:
                np.testing.assert_allclose(cp.asnumpy(d[k]), h[k], rtol=tol, atol=tol)
        for k in ("wstate", "bstate"):
            for a, b in zip(h[k] or [], d[k] or []):
                if a is not None:
                    np.testing.assert_allclose(cp.asnumpy(b), a, rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["tanh", "gelu", "relu", "leaky_relu", "softplus"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "huber", "bce_with_logits"])
@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_cuda_mlp_fit_matches_cpu(act, loss, opt):
    rng = np.random.default_rng(0)
    n, widths = 300, [12, 32, 16, 5]
    X = rng.standard_normal((n, widths[0])).astype(np.float32)
    Y = (rng.integers(0, 5, n).astype(np.int64) if loss == "cross_entropy"
         else rng.random((n, 5)).astype(np.float32))
    needs = {"sgd": (True, False, False), "adam": (True, True, False), "adamw": (True, True, True),
             "rmsprop": (True, True, True), "adagrad": (True, False, False)}[opt]
    host = layers(widths, [act, act, "identity"], rng, drops=[0.2, 0.0, 0.0], needs=needs)
    dev = to_device(host)
    o = {"kind": OPTIM_KINDS[opt], "lr": 0.01, "momentum": 0.9 if opt in ("sgd", "rmsprop") else 0.0,
         "amsgrad": opt == "adamw", "centered": opt == "rmsprop", "weight_decay": 0.01}
    lo = {"kind": LOSS_KINDS[loss], "p0": 0.5}
    perm = np.stack([rng.permutation(n) for _ in range(2)]).astype(np.int64)
    kw = dict(loss=lo, optim=o, epochs=2, batch_size=64, perm=perm, dropout_seed=5)
    rc = _C.mlp_fit(host, X, Y, **kw)
    rg = _cuda.mlp_fit(dev, cp.asarray(X), cp.asarray(Y), **kw)
    cp.cuda.get_current_stream().synchronize()
    assert rg["steps"] == rc["steps"] and rg["nonfinite"] is None
    np.testing.assert_allclose(rg["losses"], rc["losses"], rtol=1e-4)
    compare(host, dev, 2e-4)


def test_cuda_mlp_fit_weights_schedules_frozen():
    rng = np.random.default_rng(1)
    n = 97
    X = rng.standard_normal((n, 7)).astype(np.float32)
    Y = rng.integers(0, 3, n).astype(np.int64)
    host = layers([7, 9, 3], ["silu", "identity"], rng, frozen=[(True, False), (False, True)])
    dev = to_device(host)
    sw = rng.random(n).astype(np.float32) + 0.5
    cw = np.array([1.0, 2.0, 0.5], np.float32)
    lrs = np.linspace(0.01, 0.001, 8).astype(np.float32)
    ms = np.linspace(0.9, 0.8, 8).astype(np.float32)
    kw = dict(loss={"kind": LOSS_KINDS["cross_entropy"], "label_smoothing": 0.1},
              optim={"kind": OPTIM_KINDS["adam"], "lr": 0.01}, epochs=2, batch_size=25,
              shuffle=True, seed=3, lr_schedule=lrs, momentum_schedule=ms)
    rc = _C.mlp_fit(host, X, Y, sample_weight=sw, class_weight=cw, **kw)
    rg = _cuda.mlp_fit(dev, cp.asarray(X), cp.asarray(Y), sample_weight=cp.asarray(sw),
                       class_weight=cp.asarray(cw), **kw)
    np.testing.assert_allclose(rg["losses"], rc["losses"], rtol=1e-4)
    compare(host, dev, 2e-4)


def test_cuda_mlp_fit_bad_input():
    rng = np.random.default_rng(2)
    host = layers([4, 3], ["identity"], rng)
    dev = to_device(host)
    X = cp.asarray(rng.standard_normal((10, 4)).astype(np.float32))
    lo = {"kind": LOSS_KINDS["cross_entropy"]}
    o = {"kind": OPTIM_KINDS["sgd"], "lr": 0.1}
    with pytest.raises(ValueError, match="out of bounds"):
        _cuda.mlp_fit(dev, X, cp.full(10, 7, cp.int64), loss=lo, optim=o)
    with pytest.raises(TypeError, match="int64"):
        _cuda.mlp_fit(dev, X, cp.zeros(10, cp.float32), loss=lo, optim=o)
    with pytest.raises(TypeError):
        _cuda.mlp_fit(host, X, cp.zeros(10, cp.int64), loss=lo, optim=o)  # host parameters


def fit_cpu_and_gpu(layers, seed):
    """The same model (fastmlp.manual_seed(0), `layers()` its modules) fitted on the CPU and on
    the GPU from the same data: (cpu model, gpu model, X) after checking the epoch losses agree."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, 8)).astype(np.float32)
    y = rng.integers(0, 4, 256).astype(np.int64)
    models = []
    for device in ("cpu", "cuda"):
        fastmlp.manual_seed(0)
        m = nn.Sequential(*layers())
        models.append(m.to(device) if device != "cpu" else m)
    kw = dict(epochs=3, batch_size=32, loss="cross_entropy", optimizer="adamw", lr=0.01, seed=4,
              progress=False)
    hc, hg = fit(models[0], X, y, **kw), fit(models[1], X, y, **kw)
    np.testing.assert_allclose(hg["loss"], hc["loss"], rtol=1e-4)
    return models[0], models[1], X


def test_fit_gpu_model_general_matches_cpu():
    cpu, gpu, X = fit_cpu_and_gpu(
        lambda: [nn.Linear(8, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 4)], 3)
    np.testing.assert_allclose(predict(gpu, X), predict(cpu, X), rtol=1e-3, atol=1e-4)


def norm_dict(kind, width, rng, before_act=True, affine=True, needs=(True, True, False),
              running=True, batch_stats=True, momentum=0.1, cumulative=False, count=0):
    """A layer's "norm" spec (csrc/bindings/mlp_spec.h) on the host: LayerNorm (kind 1) or
    BatchNorm1d (kind 2) over `width` features."""
    d = {"kind": kind, "before_act": before_act, "eps": 1e-5, "weight": None, "bias": None,
         "wstate": None, "bstate": None}
    if affine:
        d["weight"] = (1.0 + 0.2 * rng.standard_normal(width)).astype(np.float32)
        d["bias"] = (0.1 * rng.standard_normal(width)).astype(np.float32)
        d["wstate"] = [np.zeros(width, np.float32) if k else None for k in needs]
        d["bstate"] = [np.zeros(width, np.float32) if k else None for k in needs]
    if kind == 2:
        d.update(batch_stats=batch_stats, momentum=momentum, cumulative=cumulative, count=count,
                 running_mean=(0.1 * rng.standard_normal(width)).astype(np.float32) if running else None,
                 running_var=(0.5 + rng.random(width)).astype(np.float32) if running else None)
    return d


def norm_to_device(host):
    dev = to_device(host)
    for h, d in zip(host, dev):
        if h.get("norm") is None:
            continue
        nd = dict(h["norm"])
        for k in ("weight", "bias", "running_mean", "running_var"):
            if nd.get(k) is not None:
                nd[k] = cp.asarray(nd[k])
        for k in ("wstate", "bstate"):
            if nd.get(k) is not None:
                nd[k] = [None if a is None else cp.asarray(a) for a in nd[k]]
        d["norm"] = nd
    return dev


def compare_norms(host, dev, tol):
    for h, d in zip(host, dev):
        if h.get("norm") is None:
            continue
        for k in ("weight", "bias", "running_mean", "running_var"):
            if h["norm"].get(k) is not None:
                np.testing.assert_allclose(cp.asnumpy(d["norm"][k]), h["norm"][k], rtol=tol, atol=tol,
                                           err_msg=k)


NORM_CASES = {
    "layernorm-before-tanh": [dict(kind=1), None],
    "layernorm-after-gelu-no-affine": [dict(kind=1, before_act=False, affine=False), dict(kind=1)],
    "batchnorm-train-running": [dict(kind=2), None],
    "batchnorm-after-act-momentum-0.3": [dict(kind=2, before_act=False, momentum=0.3), None],
    "batchnorm-momentum-none": [dict(kind=2, cumulative=True, count=2), None],
    "batchnorm-eval": [dict(kind=2, batch_stats=False), None],
    "batchnorm-no-running-stats": [dict(kind=2, running=False), dict(kind=1, before_act=False)],
}


@pytest.mark.parametrize("name", list(NORM_CASES))
def test_cuda_mlp_fit_norm_layers_match_cpu(name):
    """LayerNorm / BatchNorm1d in the GPU trainer: parameters, running statistics, losses and the
    eval-mode forward equal the CPU trainer's (the Linear before a BatchNorm1d on batch
    statistics has no bias: its gradient is rounding noise, which Adam would amplify)."""
    rng = np.random.default_rng(4)
    n, widths = 203, [10, 24, 12, 3]
    X = rng.standard_normal((n, widths[0])).astype(np.float32)
    Y = rng.standard_normal((n, 3)).astype(np.float32)
    host = layers(widths, ["tanh", "gelu", "identity"], rng, needs=(True, True, False))
    for i, spec in enumerate(NORM_CASES[name]):
        if spec is not None:
            host[i]["norm"] = norm_dict(width=widths[i + 1], rng=rng, **spec)
            if spec["kind"] == 2 and spec.get("batch_stats", True) and spec.get("before_act", True):
                host[i]["bias"], host[i]["bstate"] = None, None
    dev = norm_to_device(host)
    perm = np.stack([rng.permutation(n) for _ in range(2)]).astype(np.int64)
    kw = dict(loss={"kind": LOSS_KINDS["mse"]}, optim={"kind": OPTIM_KINDS["adam"], "lr": 0.01},
              epochs=2, batch_size=32, perm=perm)
    rc = _C.mlp_fit(host, X, Y, path="gemm", **kw)
    rg = _cuda.mlp_fit(dev, cp.asarray(X), cp.asarray(Y), **kw)
    assert rg["steps"] == rc["steps"] and rg["nonfinite"] is None
    np.testing.assert_allclose(rg["losses"], rc["losses"], rtol=1e-4)
    compare(host, dev, 2e-4)
    compare_norms(host, dev, 2e-4)
    out = cp.empty((n, 3), cp.float32)
    _cuda.mlp_fit_forward(dev, cp.asarray(X), out)
    np.testing.assert_allclose(cp.asnumpy(out), _C.mlp_fit_forward(host, X), rtol=1e-3, atol=1e-4)


def test_cuda_mlp_fit_batchnorm_refuses_a_batch_of_one():
    rng = np.random.default_rng(5)
    host = layers([4, 6, 1], ["relu", "identity"], rng)
    host[0]["norm"] = norm_dict(2, 6, rng)
    dev = norm_to_device(host)
    X = cp.asarray(rng.standard_normal((9, 4)).astype(np.float32))
    Y = cp.zeros((9, 1), cp.float32)
    with pytest.raises(ValueError, match="batch of 1 sample"):
        _cuda.mlp_fit(dev, X, Y, loss={"kind": LOSS_KINDS["mse"]},
                      optim={"kind": OPTIM_KINDS["sgd"], "lr": 0.1}, batch_size=4)


def test_fit_gpu_model_with_norm_layers_matches_cpu():
    cpu, gpu, X = fit_cpu_and_gpu(
        lambda: [nn.Linear(8, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16),
                 nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4)], 6)
    for bg, bc in zip(gpu.buffers(), cpu.buffers()):
        np.testing.assert_allclose(cp.asnumpy(cp.asarray(bg._data)), bc._data, rtol=2e-4, atol=2e-4)
    cpu.eval(), gpu.eval()
    np.testing.assert_allclose(predict(gpu, X), predict(cpu, X), rtol=1e-3, atol=1e-4)
