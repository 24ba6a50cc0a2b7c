"""CUDA activations against the CPU kernels (GPU only): every kind forward/backward, softmax /
log_softmax, Linear + activation in the GEMM epilogue, and the autograd path on CUDA tensors.

Marked `cuda` (tests/cuda/conftest.py) and skipped where no GPU, CUDA module or CuPy is present.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import ops

pytestmark = pytest.mark.cuda
cp = pytest.importorskip("cupy")
_cuda = pytest.importorskip("fastmlp._cuda")

PARAMS = {"elu": (1.3, 0.0), "softplus": (1.5, 20.0), "leaky_relu": (0.02, 0.0),
          "hardtanh": (-0.5, 2.0)}


@pytest.mark.parametrize("kind", list(ops.ACT_KINDS))
@pytest.mark.parametrize("n", [1, 257, 100_003])
def test_act_kernels_match_cpu(kind, n):
    rng = np.random.default_rng(n)
    z = (rng.standard_normal(n) * 4).astype(np.float32)
    if n > 8:
        z[:4] = [np.nan, np.inf, -np.inf, 0.0]
    g = rng.standard_normal(n).astype(np.float32)
    p0, p1 = PARAMS.get(kind, (0.0, 0.0))
    y = ops.act_forward(z, kind, p0, p1)
    yg = ops.act_forward(cp.asarray(z), kind, p0, p1)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=2e-6, atol=1e-7, equal_nan=True)
    d = ops.act_backward(g, z, y, kind, p0, p1)
    dg = ops.act_backward(cp.asarray(g), cp.asarray(z), yg, kind, p0, p1)
    np.testing.assert_allclose(cp.asnumpy(dg), d, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 1000), (5, 4097)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_cpu(shape, log):
    rng = np.random.default_rng(shape[1])
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    y = ops.softmax(x, log=log)
    yg = ops.softmax(cp.asarray(x), log=log)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=1e-5, atol=1e-6)
    d = ops.softmax_backward(g, y, log=log)
    dg = ops.softmax_backward(cp.asarray(g), yg, log=log)
    np.testing.assert_allclose(cp.asnumpy(dg), d, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["gelu", "tanh", "silu", "softplus"])
@pytest.mark.parametrize("B,C,OC", [(1, 30, 70), (128, 256, 256), (64, 2048, 64)])
def test_linear_act_epilogue_matches_cpu(kind, B, C, OC):
    rng = np.random.default_rng(B)
    x = rng.standard_normal((B, C)).astype(np.float32)
    w = (rng.standard_normal((OC, C)) / np.sqrt(C)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    p0, p1 = PARAMS.get(kind, (0.0, 0.0))
    y, z = ops.linear_act(x, w, b, kind, p0, p1, want_input=True)
    yg, zg = ops.linear_act(cp.asarray(x), cp.asarray(w), cp.asarray(b), kind, p0, p1, want_input=True)
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=1e-4, atol=1e-4)
    if z is None:
        assert zg is None
    else:
        np.testing.assert_allclose(cp.asnumpy(zg), z, rtol=1e-4, atol=1e-4)


def test_autograd_on_cuda_tensors():
    import fastmlp.nn as nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 10)).astype(np.float32)
    net = nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.Linear(32, 5))
    xc = fastmlp.tensor(x)
    yc = net(xc).log_softmax(1)
    yc.sum().backward()
    cpu_grads = [p.grad.numpy().copy() for p in net.parameters()]
    net.zero_grad()
    net.to("cuda")
    yg = net(fastmlp.tensor(x).to("cuda")).log_softmax(1)
    yg.sum().backward()
    np.testing.assert_allclose(yg.cpu().detach().numpy(), yc.detach().numpy(), rtol=1e-4, atol=1e-5)
    for gp, gc in zip((p.grad.cpu().numpy() for p in net.parameters()), cpu_grads):
        np.testing.assert_allclose(gp, gc, rtol=1e-4, atol=1e-5)
