"""tanh's kernels (every CPU path) over a dense sweep of the whole float32 range against float64
numpy and against torch.tanh: the ulp error, odd symmetry bit for bit, the signed zeros, +-inf,
NaN and |y| <= 1. (Not monotone: the SIMD kernel's ulp-level errors make neighbours
swap in places.) The fused small trainer and the eager kernels read the same
kernel (act_forward), so what holds here holds for both."""
import numpy as np
import pytest

import fastmlp
from fastmlp import ops

torch = pytest.importorskip("torch")

# Measured maxima (every 61st / 97th positive float): SIMD (AVX2; AVX-512 is the same formula)
# 3.19 ulp at |x| ~ 0.03 (e / (e + 2) rounds e + 2 near 2), 2.25 on [0.25, 1), 1.5 from 1 on;
# generic (glibc tanhf) 2.13 below 1, 0.9 from 1 on.
ULP_BOUND = 3.5
STRIDE = 97


def _sweep():
    """Every STRIDE-th positive finite float32 (bit patterns 0 .. 0x7f7fffff), with the edges."""
    bits = np.arange(0, 0x7F800000, STRIDE, dtype=np.uint32)
    x = bits.view(np.float32)
    extra = np.array([0.0, 1e-45, 2.0 ** -126, 0.03125, 0.25, 0.5, 1.0, 9.0, 9.01, 9.1, 9.2, 20.0,
                      3.4028235e38], np.float32)
    return np.concatenate([x, extra])


def _ulp_err(y, r):
    """|y - r| in units of the float32 spacing at r (below 1 for results that round to 1)."""
    rf = np.abs(r).astype(np.float32)
    sp = np.spacing(rf).astype(np.float64)
    sp = np.where(rf == 1.0, 2.0 ** -24, sp)
    sp = np.maximum(sp, 2.0 ** -149)
    return np.abs(y.astype(np.float64) - r) / sp


def test_dense_sweep_within_bound_of_float64(cpu_path):
    x = _sweep()
    y = ops.act_forward(x, "tanh")
    r = np.tanh(x.astype(np.float64))
    err = _ulp_err(y, r)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP_BOUND, (cpu_path, float(x[worst]), float(y[worst]), r[worst], err[worst])
    # |x| >= 1: no rounding near 2 of e + 2 there
    big = x >= 1
    assert err[big].max() <= 2.0, (cpu_path, err[big].max())
    assert np.all(np.abs(y) <= 1.0)


def test_odd_symmetry_and_special_values(cpu_path):
    x = _sweep()
    y = ops.act_forward(x, "tanh")
    yn = ops.act_forward(-x, "tanh")
    np.testing.assert_array_equal(yn.view(np.uint32), (-y).view(np.uint32))  # bit for bit
    s = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45] * 4, np.float32)
    ys = ops.act_forward(s, "tanh")
    assert ys[0] == 0.0 and not np.signbit(ys[0])
    assert ys[1] == 0.0 and np.signbit(ys[1])  # tanh(-0) = -0
    assert ys[2] == 1.0 and ys[3] == -1.0
    assert np.isnan(ys[4]) and np.isnan(ys[5])
    assert ys[6] == np.float32(1e-45) and ys[7] == -np.float32(1e-45)  # tanh(x) = x below ulp


def test_parity_with_torch_tanh(cpu_path):
    x = _sweep()[::7]
    x = np.concatenate([x, -x])
    y = ops.act_forward(x, "tanh")
    t = torch.tanh(torch.from_numpy(x)).numpy()
    r = np.tanh(x.astype(np.float64))
    # both within their own bound of float64, hence of each other
    assert _ulp_err(t, r).max() <= 2.0
    err = np.abs(y.astype(np.float64) - t.astype(np.float64))
    sp = np.maximum(np.spacing(np.abs(t)).astype(np.float64), 2.0 ** -149)
    sp = np.where(np.abs(t) == 1.0, 2.0 ** -24, sp)
    assert (err / sp).max() <= ULP_BOUND + 2.0


def test_backward_from_output_as_rule(cpu_path):
    # dz = dy (1 - y^2) from the rounded output, as activation.h's rule (and PyTorch) reads it
    rng = np.random.default_rng(5)
    z = (rng.standard_normal(4099) * 3).astype(np.float32)
    g = rng.standard_normal(z.size).astype(np.float32)
    y = ops.act_forward(z, "tanh")
    d = ops.act_backward(g, None, y, "tanh")
    np.testing.assert_array_equal(d, g * (np.float32(1) - y * y))
