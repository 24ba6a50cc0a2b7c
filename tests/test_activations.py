"""Activations (tanh, sigmoid, gelu, silu, leaky_relu, elu, softplus, hardtanh, relu6) and
softmax / log_softmax: the kernels against float64 (every CPU path, the whole float range with
+-inf and NaN), the autograd functions, modules and fused Linear+activation against PyTorch
(values and gradients, float32 and float64), and bad input."""
import math
import pickle
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import _C, ops
import fastmlp.nn as nn
import fastmlp.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

KINDS = list(ops.ACT_KINDS)
FLT_MIN = float(np.finfo(np.float32).tiny)
SUB = 2.0 ** -149


def _erfc64(x):
    try:
        from scipy.special import erfc
        return erfc(x)
    except ImportError:  # pragma: no cover
        return np.vectorize(math.erfc)(x)


def _sig64(x):
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def ref_forward(kind, z, p0=0.0, p1=0.0):
    """float64 values of the rules (same branches as activation.h)."""
    z = z.astype(np.float64)
    with np.errstate(all="ignore"):
        if kind == "tanh":
            return np.tanh(z)
        if kind == "sigmoid":
            return _sig64(z)
        if kind == "gelu":
            return z * 0.5 * _erfc64(-z / np.sqrt(2))
        if kind == "gelu_tanh":
            return z * _sig64(2 * np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3))
        if kind == "silu":
            return z * _sig64(z)
        if kind == "elu":
            return np.where(z > 0, z, p0 * np.expm1(np.minimum(z, 0)))
        if kind == "softplus":
            return np.where(p0 * z > p1, z, np.logaddexp(0, p0 * z) / p0)
        if kind == "leaky_relu":
            return np.where(z > 0, z, p0 * z)
        if kind == "hardtanh":
            return np.clip(z, p0, p1)
    raise AssertionError(kind)


def ref_backward(kind, g, z, p0=0.0, p1=0.0):
    z = z.astype(np.float64)
    g = g.astype(np.float64)
    with np.errstate(all="ignore"):
        if kind == "tanh":
            return g * (1 - np.tanh(z) ** 2)
        if kind == "sigmoid":
            s = _sig64(z)
            return g * s * (1 - s)
        if kind == "gelu":
            return g * (0.5 * _erfc64(-z / np.sqrt(2)) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi))
        if kind == "gelu_tanh":
            k = np.sqrt(2 / np.pi)
            s = _sig64(2 * k * (z + 0.044715 * z ** 3))
            return g * (s + 2 * z * s * (1 - s) * k * (1 + 3 * 0.044715 * z * z))
        if kind == "silu":
            s = _sig64(z)
            return g * s * (1 + z * (1 - s))
        if kind == "elu":
            return np.where(z > 0, g, g * p0 * np.exp(z))
        if kind == "softplus":
            return np.where(p0 * z > p1, g, g * _sig64(p0 * z))
        if kind == "leaky_relu":
            return np.where(z > 0, g, g * p0)
        if kind == "hardtanh":
            return np.where((z > p0) & (z < p1), g, 0.0)
    raise AssertionError(kind)


PARAMS = {"elu": (1.3, 0.0), "softplus": (1.5, 20.0), "leaky_relu": (0.02, 0.0),
          "hardtanh": (-0.5, 2.0)}
SMOOTH = ["tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "elu", "softplus"]


def wide_inputs():
    rng = np.random.default_rng(7)
    parts = [rng.standard_normal(4001) * 3, rng.uniform(-30, 30, 3001), rng.uniform(-120, 120, 1001),
             np.linspace(-12, 12, 4801), np.logspace(-40, 38, 300), -np.logspace(-40, 38, 300),
             [0.0, -0.0, 1e-45, -1e-45, 88.7, 89.0, -87.5, -103.9, -104.5, 9.0, 9.2, 20.0, 20.5]]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(np.float32)


@pytest.mark.parametrize("kind", SMOOTH + ["leaky_relu", "hardtanh"])
def test_forward_within_few_ulp_of_float64(kind, cpu_path):
    z = wide_inputs()
    p0, p1 = PARAMS.get(kind, (0.0, 0.0))
    y = ops.act_forward(z, kind, p0, p1).astype(np.float64)
    r = ref_forward(kind, z, p0, p1)
    fin = np.isfinite(r)
    assert np.array_equal(np.isfinite(y), fin) and np.array_equal(y[~fin], r[~fin])
    err = np.abs(y - r)[fin]
    spacing = np.spacing(np.abs(r[fin]).astype(np.float32)).astype(np.float64)
    ulps = 6.0 if kind == "gelu" else 4.0  # gelu measured: <= 4.2 ulp (the Phi tail polynomial)
    if kind == "gelu_tanh":  # the formula's own conditioning: 2u carries a few roundings
        zz = z[fin].astype(np.float64)
        ulps = 4.0 + 3.0 * np.abs(2 * 0.7978845608 * (zz + 0.044715 * zz ** 3))
    if kind == "softplus":  # beta * z is rounded (as in PyTorch): exp carries |beta z| ulp
        ulps = 4.0 + np.abs(p0 * z[fin].astype(np.float64))
    tol = ulps * spacing + (np.abs(z[fin]) + 2) * 2 * SUB  # subnormal results: absolute floor
    bad = err > tol
    assert not bad.any(), (z[fin][bad][:5], y[fin][bad][:5], r[fin][bad][:5])


@pytest.mark.parametrize("kind", SMOOTH + ["leaky_relu", "hardtanh"])
def test_backward_matches_float64(kind, cpu_path):
    z = wide_inputs()
    z = z[np.abs(z) < 1e6]  # gelu_tanh's z^3 overflows beyond (as in PyTorch): NaN both ways
    g = np.random.default_rng(1).standard_normal(z.size).astype(np.float32)
    p0, p1 = PARAMS.get(kind, (0.0, 0.0))
    y = ops.act_forward(z, kind, p0, p1)
    d = ops.act_backward(g, z, y, kind, p0, p1).astype(np.float64)
    r = ref_backward(kind, g, z, p0, p1)
    fin = np.isfinite(r)
    np.testing.assert_array_equal(np.isfinite(d), fin)
    scale = np.abs(g[fin]).astype(np.float64)
    if kind == "gelu_tanh":
        zz = z[fin].astype(np.float64)
        scale = scale * (1 + np.abs(zz) ** 3 * 0.1)
    err = np.abs(d[fin] - r[fin])
    tol = 4e-7 * np.abs(r[fin]) + 1e-7 * scale + 1e-37
    if kind in ("tanh", "sigmoid"):  # read from the rounded output y (PyTorch's rule): |g| y ulp(y)
        tol = tol + 4 * scale * np.abs(y[fin]) * np.spacing(np.abs(y[fin]))
    bad = err > tol
    assert not bad.any(), (kind, z[fin][bad][:5], d[fin][bad][:5], r[fin][bad][:5])



def _gelu64(z):
    """x * Phi(x) in float64 (GELU(+inf) = inf, GELU(-inf) = NaN as in PyTorch), cast to z's dtype."""
    x = z.astype(np.float64)
    with np.errstate(invalid="ignore"):
        y = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x.ravel()]).reshape(x.shape)
    y[np.isneginf(x)] = np.nan
    return y.astype(z.dtype)


def _gelu_limit(want, z):
    """PyTorch's exact GELU with GELU(+inf) = inf * Phi(inf) = inf, the limit: PyTorch's scalar
    and AVX2 kernels give inf there, its AVX-512 kernel NaN (torch 2.13 on an AMD Zen 4);
    fastmlp gives inf on every CPU path."""
    want = want.copy()
    at = z == np.inf
    assert (np.isnan(want[at]) | (want[at] == np.inf)).all()
    want[at] = np.inf
    return want


@pytest.mark.parametrize("kind", KINDS)
def test_nan_and_inf_as_torch(kind, cpu_path):
    p0, p1 = PARAMS.get(kind, (0.0, 0.0))
    # 64 elements: PyTorch's vectorised kernels (its scalar tail treats NaN differently)
    z = np.tile(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5], np.float32), 8)
    y = ops.act_forward(z, kind, p0, p1)
    zt = torch.tensor(z, requires_grad=True)
    tf = {"identity": lambda t: t * 1, "relu": torch.relu, "tanh": torch.tanh,
          "sigmoid": torch.sigmoid, "gelu": TF.gelu, "gelu_tanh": lambda t: TF.gelu(t, approximate="tanh"),
          "silu": TF.silu, "leaky_relu": lambda t: TF.leaky_relu(t, p0), "elu": lambda t: TF.elu(t, p0),
          "softplus": lambda t: TF.softplus(t, p0, p1), "hardtanh": lambda t: TF.hardtanh(t, p0, p1)}[kind]
    yt = tf(zt)
    want = _gelu_limit(yt.detach().numpy(), z) if kind == "gelu" else yt.detach().numpy()
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7, equal_nan=True)
    if kind == "relu":
        return  # fastmlp's ReLU gradient at NaN is 0 (the fused trainers' mask rule)
    yt.backward(torch.ones_like(yt))
    d = ops.act_backward(np.ones_like(z), z, y, kind, p0, p1)
    np.testing.assert_allclose(d, zt.grad.numpy(), rtol=1e-6, atol=1e-7, equal_nan=True)


def test_thread_count_independent(threads):
    rng = np.random.default_rng(3)
    z = (rng.standard_normal(100_001) * 4).astype(np.float32)
    g = rng.standard_normal(z.size).astype(np.float32)
    x = rng.standard_normal((257, 301)).astype(np.float32)
    w = rng.standard_normal((130, 301)).astype(np.float32) * 0.05
    b = rng.standard_normal(130).astype(np.float32)
    gy = rng.standard_normal((257, 130)).astype(np.float32)
    res = []
    for n in (1, 2):
        threads(n)
        y, zz = ops.linear_act(x, w, b, "gelu", want_input=True)
        res.append((ops.act_forward(z, "gelu"), ops.act_backward(g, z, None, "silu"),
                    ops.softmax(x), ops.softmax(x, log=True), y, zz,
                    *ops.linear_act_backward(gy, x, w, "gelu", act_input=zz)))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 33, 1000])
def test_odd_sizes_and_in_place(n, cpu_path):
    z = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    r = ref_forward("gelu", z)
    y = ops.act_forward(z, "gelu")
    np.testing.assert_allclose(y, r, rtol=1e-6, atol=1e-7)
    zc = z.copy()
    out = ops.act_forward(zc, "tanh", out=zc)
    assert out is zc
    np.testing.assert_allclose(zc, np.tanh(z), rtol=1e-6, atol=1e-7)


def test_references_agree():
    z = wide_inputs()[:2000]
    for kind in KINDS:
        p0, p1 = PARAMS.get(kind, (0.0, 0.0))
        fastmlp.set_cpu_path("generic")
        try:
            a = ops.act_forward(z, kind, p0, p1)
        finally:
            fastmlp.set_cpu_path(fastmlp.supported_cpu_paths()[-1])
        b = ops.act_forward(z, kind, p0, p1)
        np.testing.assert_allclose(a, b, rtol=3e-6, atol=1e-30, equal_nan=True)


# ---- softmax kernels ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 16), (4, 33), (2, 1000), (0, 5), (3, 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_kernel_vs_float64(shape, log, cpu_path):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    y = ops.softmax(x, log=log)
    x64 = x.astype(np.float64)
    if x.size:
        m = x64.max(-1, keepdims=True)
        lse = m + np.log(np.exp(x64 - m).sum(-1, keepdims=True))
        r = x64 - lse if log else np.exp(x64 - lse)
        np.testing.assert_allclose(y, r, rtol=2e-6, atol=1e-6 if log else 1e-12)
        y64 = r
        d = ops.softmax_backward(g, y, log=log)
        rd = (g - np.exp(y64) * g.sum(-1, keepdims=True)) if log else \
            y64 * (g - (g * y64).sum(-1, keepdims=True))
        np.testing.assert_allclose(d, rd, rtol=1e-5, atol=1e-6)
    else:
        assert y.shape == shape


def test_softmax_kernel_nan_inf_rows():
    x = np.array([[np.nan, 1, 2], [np.inf, 1, 2], [-np.inf, 0, 1], [-np.inf, -np.inf, -np.inf],
                  [1e30, -1e30, 0]], np.float32)
    for log in (False, True):
        f = TF.log_softmax if log else TF.softmax
        np.testing.assert_allclose(ops.softmax(x, log=log), f(torch.tensor(x), 1).numpy(),
                                   rtol=1e-6, equal_nan=True)


# ---- autograd functions against torch ------------------------------------------------------------
def _pairs():
    return [
        ("tanh", lambda m, t: m.tanh(t), {}),
        ("sigmoid", lambda m, t: m.sigmoid(t), {}),
        ("tanh_method", lambda m, t: t.tanh(), {}),
        ("sigmoid_method", lambda m, t: t.sigmoid(), {}),
        ("gelu", lambda m, t: m.nn.functional.gelu(t), {}),
        ("gelu_tanh", lambda m, t: m.nn.functional.gelu(t, approximate="tanh"), {}),
        ("silu", lambda m, t: m.nn.functional.silu(t), {}),
        ("leaky_relu", lambda m, t: m.nn.functional.leaky_relu(t, 0.2), {}),
        ("elu", lambda m, t: m.nn.functional.elu(t, alpha=0.7), {}),
        ("softplus", lambda m, t: m.nn.functional.softplus(t, beta=2.0, threshold=3.0), {}),
        ("hardtanh", lambda m, t: m.nn.functional.hardtanh(t, -0.3, 0.8), {}),
        ("relu6", lambda m, t: m.nn.functional.relu6(t * 4), {}),
        ("GELU", lambda m, t: m.nn.GELU()(t), {}),
        ("GELUt", lambda m, t: m.nn.GELU(approximate="tanh")(t), {}),
        ("SiLU", lambda m, t: m.nn.SiLU()(t), {}),
        ("Tanh", lambda m, t: m.nn.Tanh()(t), {}),
        ("Sigmoid", lambda m, t: m.nn.Sigmoid()(t), {}),
        ("LeakyReLU", lambda m, t: m.nn.LeakyReLU(0.1)(t), {}),
        ("ELU", lambda m, t: m.nn.ELU(2.0)(t), {}),
        ("Softplus", lambda m, t: m.nn.Softplus(0.5, 1.0)(t), {}),
        ("Hardtanh", lambda m, t: m.nn.Hardtanh(-2.0, 0.5)(t), {}),
        ("ReLU6", lambda m, t: m.nn.ReLU6()(t * 5), {}),
    ]


@pytest.mark.parametrize("name,fn,kw", _pairs(), ids=[p[0] for p in _pairs()])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_functions_match_torch(name, fn, kw, dtype):
    rng = np.random.default_rng(11)
    a = (rng.standard_normal((5, 13)) * 3).astype(dtype)
    a[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    g = rng.standard_normal(a.shape).astype(dtype)
    x = fastmlp.tensor(a, requires_grad=True)
    y = fn(fastmlp, x)
    y.backward(fastmlp.tensor(g))
    xt = torch.tensor(a, requires_grad=True)
    yt = fn(torch, xt)
    yt.backward(torch.tensor(g))
    rtol = 2e-6 if dtype == "float32" else 1e-12
    assert y.dtype == x.dtype
    want = yt.detach().numpy()
    if name.lower() == "gelu":
        # PyTorch's AVX-512 GELU is also 0.1-0.5% off in the far negative tail (x ~ -4: -2.2442e-4
        # where x * Phi(x) is -2.2415e-4): the exact values in float64 are the reference there,
        # PyTorch's within 1%
        np.testing.assert_allclose(y.detach().numpy(), _gelu_limit(want, a), rtol=1e-2, atol=1e-6,
                                   equal_nan=True)
        want = _gelu64(a)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=rtol, atol=rtol * 0.1, equal_nan=True)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=rtol * 3, atol=rtol,
                               equal_nan=True)


def test_inplace_variants():
    a = np.linspace(-3, 3, 12, dtype=np.float32)
    for f, tf in [(lambda t: F.leaky_relu(t, 0.1, inplace=True), lambda t: TF.leaky_relu(t, 0.1)),
                  (lambda t: F.elu(t, inplace=True), TF.elu),
                  (lambda t: F.hardtanh(t, inplace=True), TF.hardtanh),
                  (lambda t: F.relu6(t, inplace=True), TF.relu6),
                  (lambda t: F.silu(t, inplace=True), TF.silu),
                  (lambda t: nn.ELU(inplace=True)(t), TF.elu)]:
        x = fastmlp.tensor(a.copy())
        y = f(x)
        assert y is x
        np.testing.assert_allclose(x.numpy(), tf(torch.tensor(a)).numpy(), rtol=1e-6, atol=1e-7)
    # with a gradient to compute, in-place runs out of place (the gradient needs z)
    x = fastmlp.tensor(a.copy(), requires_grad=True)
    F.elu(x, inplace=True).sum().backward()
    xt = torch.tensor(a, requires_grad=True)
    TF.elu(xt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-6)


# ---- fused Linear + activation ---------------------------------------------------------------------
ACT_MODULES = [("Tanh", {}), ("Sigmoid", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"}),
               ("SiLU", {}), ("LeakyReLU", {"negative_slope": 0.05}), ("ELU", {"alpha": 0.5}),
               ("Softplus", {"beta": 2.0, "threshold": 5.0}), ("Hardtanh", {"min_val": -0.5}),
               ("ReLU6", {}), ("ReLU", {})]


def _mlp(lib, act, kw, sizes, seed):
    g = torch.Generator().manual_seed(seed)
    layers_t, layers_f = [], []
    for i in range(len(sizes) - 1):
        w = torch.randn(sizes[i + 1], sizes[i], generator=g) / math.sqrt(sizes[i])
        b = torch.randn(sizes[i + 1], generator=g) * 0.5
        lt = torch.nn.Linear(sizes[i], sizes[i + 1])
        lf = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lt.weight.copy_(w)
            lt.bias.copy_(b)
        lf.weight.data[...] = w.numpy()
        lf.bias.data[...] = b.numpy()
        layers_t += [lt, getattr(torch.nn, act)(**kw)]
        layers_f += [lf, getattr(nn, act)(**kw)]
    return torch.nn.Sequential(*layers_t), nn.Sequential(*layers_f)


@pytest.mark.parametrize("act,kw", ACT_MODULES, ids=[a + str(k) for a, k in ACT_MODULES])
def test_sequential_fused_linear_act_matches_torch(act, kw, cpu_path):
    # batches for the dot (<= 16 rows), small and packed GEMM paths
    for batch, sizes in [(3, [9, 40, 5]), (37, [13, 70, 33]), (100, [100, 100, 20])]:
        mt, mf = _mlp(None, act, kw, sizes, batch)
        x = np.random.default_rng(batch).standard_normal((batch, sizes[0])).astype(np.float32)
        xt = torch.tensor(x, requires_grad=True)
        xf = fastmlp.tensor(x, requires_grad=True)
        yt = mt(xt)
        yf = mf(xf)
        assert type(yf._node).__name__ == "_LinearNode"  # the activation is part of the Linear's node
        g = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
        yt.backward(torch.tensor(g))
        yf.backward(fastmlp.tensor(g))
        tol = 2e-5 * math.sqrt(sizes[1])
        np.testing.assert_allclose(yf.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)
        for pf, pt in zip(mf.parameters(), mt.parameters()):
            np.testing.assert_allclose(pf.grad.numpy(), pt.grad.numpy(), rtol=tol, atol=tol * 4)


@pytest.mark.parametrize("fname,kw", [("gelu", {}), ("tanh", {}), ("silu", {}), ("elu", {"alpha": 2.0}),
                                      ("softplus", {"beta": 3.0}), ("sigmoid", {})])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_functional_fuses_into_fresh_linear(fname, kw, dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 11)).astype(dtype)
    b = rng.standard_normal(20).astype(dtype)
    x = rng.standard_normal((6, 11)).astype(dtype)
    fl = nn.Linear(11, 20).to(getattr(fastmlp, dtype))
    fl.weight.data[...] = w
    fl.bias.data[...] = b
    xf = fastmlp.tensor(x, requires_grad=True)
    fmod = fastmlp.tanh if fname == "tanh" else fastmlp.sigmoid if fname == "sigmoid" else getattr(F, fname)
    # the Linear output is a fresh temporary: fused (spelled out: f(*a, **kw) holds an extra
    # reference in its argument tuple, and then fusion is rightly declined)
    if fname == "elu":
        y = F.elu(fl(xf), alpha=2.0)
    elif fname == "softplus":
        y = F.softplus(fl(xf), beta=3.0)
    else:
        y = fmod(fl(xf))
    if dtype == "float32":
        assert type(y._node).__name__ == "_LinearNode"
    h = fl(xf)
    y2 = fmod(h, **kw)  # h is held: a separate node
    assert type(y2._node).__name__ != "_LinearNode"
    (y.sum() + (y2 * 2).sum()).backward()
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.Linear(11, 20).to(getattr(torch, dtype))
    with torch.no_grad():
        lt.weight.copy_(torch.tensor(w))
        lt.bias.copy_(torch.tensor(b))
    tmod = getattr(torch, fname) if fname in ("tanh", "sigmoid") else getattr(TF, fname)
    yt = tmod(lt(xt), **kw)
    (yt.sum() + (tmod(lt(xt), **kw) * 2).sum()).backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(fl.weight.grad.numpy(), lt.weight.grad.numpy(), rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(fl.bias.grad.numpy(), lt.bias.grad.numpy(), rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("identity", "relu")])
def test_linear_act_kernel_paths(kind, cpu_path):
    """The GEMM epilogue on every driver path (dot, small, packed; K = 0) vs float64."""
    p0, p1 = PARAMS.get(kind, (0.0, 0.0))
    rng = np.random.default_rng(2)
    for B, C, OC in [(1, 30, 70), (5, 3, 40), (40, 20, 7), (70, 90, 130), (130, 100, 90), (4, 0, 9)]:
        x = rng.standard_normal((B, C)).astype(np.float32)
        w = rng.standard_normal((OC, C)).astype(np.float32) / max(1, math.sqrt(C))
        b = rng.standard_normal(OC).astype(np.float32)
        y, z = ops.linear_act(x, w, b, kind, p0, p1, want_input=True)
        z64 = x.astype(np.float64) @ w.T.astype(np.float64) + b
        np.testing.assert_allclose(y, ref_forward(kind, z64.astype(np.float32), p0, p1), rtol=1e-4,
                                   atol=1e-4)
        if kind in ("tanh", "sigmoid"):
            assert z is None
        else:
            np.testing.assert_allclose(z, z64, rtol=1e-4, atol=1e-4)
        g = rng.standard_normal((B, OC)).astype(np.float32)
        dx, dw, db = ops.linear_act_backward(g, x, w, kind, p0, p1, act_input=z, act_output=y)
        gz = ref_backward(kind, g, z64.astype(np.float32), p0, p1)
        np.testing.assert_allclose(db, gz.sum(0), rtol=1e-4, atol=1e-4 * max(B, 1))
        np.testing.assert_allclose(dw, gz.T @ x, rtol=1e-4, atol=1e-4 * max(B, 1))
        np.testing.assert_allclose(dx, gz @ w, rtol=1e-4, atol=1e-4 * max(OC, 1))


# ---- softmax / log_softmax functions ---------------------------------------------------------------
@pytest.mark.parametrize("shape,dim", [((7,), 0), ((4, 9), 1), ((4, 9), 0), ((4, 9), -1),
                                       ((2, 3, 17), 1), ((2, 3, 17), -1), ((2, 3, 5), 0), ((), 0)])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_matches_torch(shape, dim, log, dtype):
    rng = np.random.default_rng(len(shape) + dim)
    a = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    x = fastmlp.tensor(a, requires_grad=True)
    xt = torch.tensor(a, requires_grad=True)
    for spell in range(3):
        x.grad = None
        xt.grad = None
        if spell == 0:
            y, yt = (F.log_softmax if log else F.softmax)(x, dim), (TF.log_softmax if log else TF.softmax)(xt, dim)
        elif spell == 1:
            y, yt = (x.log_softmax(dim), xt.log_softmax(dim)) if log else (x.softmax(dim), xt.softmax(dim))
        else:
            y = (nn.LogSoftmax(dim) if log else nn.Softmax(dim))(x)
            yt = (torch.nn.LogSoftmax(dim) if log else torch.nn.Softmax(dim))(xt)
        y.backward(fastmlp.tensor(g))
        yt.backward(torch.tensor(g))
        tol = 1e-6 if dtype == "float32" else 1e-12
        assert y.shape == yt.shape and y.dtype == x.dtype
        np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=tol * 4, atol=tol)
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=tol * 10, atol=tol * 4)


def test_torch_namespace_spellings():
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    x = fastmlp.tensor(a)
    np.testing.assert_allclose(fastmlp.softmax(x, 1).numpy(), torch.softmax(torch.tensor(a), 1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(fastmlp.log_softmax(x, dim=0).numpy(),
                               torch.log_softmax(torch.tensor(a), dim=0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(fastmlp.softmax(x, 1, dtype=fastmlp.float64).numpy(),
                               torch.softmax(torch.tensor(a), 1, dtype=torch.float64).numpy(), rtol=1e-12)
    assert fastmlp.softmax(x, 1, dtype=fastmlp.float64).dtype == fastmlp.float64
    np.testing.assert_allclose(fastmlp.tanh(x).numpy(), np.tanh(a), rtol=1e-6)
    for name in ["Tanh", "Sigmoid", "GELU", "SiLU", "LeakyReLU", "ELU", "Softplus", "Hardtanh",
                 "ReLU6", "Softmax", "LogSoftmax"]:
        assert hasattr(nn, name) and name in nn.__all__
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"


def test_softmax_implicit_dim_warns():
    x = fastmlp.tensor(np.zeros((2, 3), np.float32))
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = F.softmax(x)
    np.testing.assert_allclose(y.numpy(), np.full((2, 3), 1 / 3), rtol=1e-6)


# ---- bad input --------------------------------------------------------------------------------------
def test_bad_input():
    x = fastmlp.tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="approximate"):
        F.gelu(x, approximate="tan")
    with pytest.raises(ValueError, match="'approximate' must be 'none' or 'tanh', got 'exact'"):
        nn.GELU(approximate="exact")
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        F.softmax(x, dim=2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.log_softmax(-3)
    with pytest.raises(TypeError, match="'dim' must be int"):
        F.softmax(x, dim="a")
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        F.hardtanh(x, 2.0, 1.0)
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        nn.Hardtanh(2.0, 1.0)
    with pytest.raises(TypeError, match="floating point"):
        F.gelu(fastmlp.tensor(np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ops.act_forward(np.zeros(3, np.float32), "swish")
    with pytest.raises(ValueError, match="'act' must be an activation kind"):
        _C.act_forward(np.zeros(3, np.float32), 99)
    with pytest.raises(TypeError, match="float64"):
        _C.act_forward(np.zeros(3), 2)
    with pytest.raises(ValueError, match="needs 'input'"):
        _C.act_backward(np.zeros(3, np.float32), None, np.zeros(3, np.float32), KINDS.index("gelu"))
    with pytest.raises(ValueError, match="shape"):
        _C.act_backward(np.zeros(3, np.float32), None, np.zeros(4, np.float32), KINDS.index("tanh"))
    with pytest.raises(ValueError, match="'out' must have shape"):
        _C.softmax_forward(np.zeros((2, 3), np.float32), False, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="act_input"):
        _C.linear_backward(np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32),
                           np.zeros((4, 3), np.float32), act=KINDS.index("gelu"))
    with pytest.raises(ValueError, match="either relu=True or an 'act'"):
        _C.linear_forward(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), None, True,
                          None, KINDS.index("gelu"))
    try:
        F.gelu(x, approximate="bad")
    except Exception as e:  # noqa: BLE001
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is type(e) and str(e2) == str(e)
