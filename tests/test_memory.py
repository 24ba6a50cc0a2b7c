"""No leaks: 10,000 training steps and 10,000 op calls (including failing ones) keep resident
memory flat, and no call leaves a reference behind on its inputs or outputs."""
import gc
import os
import sys

import numpy as np
import pytest

from fastmlp import ops

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
LIMIT_MB = 4.0


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")


def growth_mb(fn, n, warmup=500):
    for _ in range(warmup):
        fn()
    gc.collect()
    before = rss_mb()
    for _ in range(n):
        fn()
    gc.collect()
    return rss_mb() - before


def make_mlp(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 16)).astype(np.float32)
    t = rng.standard_normal((32, 4)).astype(np.float32)
    params = [(rng.standard_normal((64, 16)) * 0.2).astype(np.float32), np.zeros(64, np.float32),
              (rng.standard_normal((4, 64)) * 0.2).astype(np.float32), np.zeros(4, np.float32)]
    bufs = [np.zeros_like(p) for p in params]
    return x, t, params, bufs


def ops_train_step(x, t, params, bufs):
    w1, b1, w2, b2 = params
    h = ops.linear(x, w1, b1, relu=True)
    y = ops.linear(h, w2, b2)
    loss = ops.mse_loss(y, t)
    dy = ops.mse_loss_backward(y, t)
    grads = [None, ops.bias_grad(dy), ops.matmul(dy.T, h), None]
    dh = ops.relu_backward(ops.matmul(dy, w2), h)
    grads[0] = ops.matmul(dh.T, x)
    grads[1], grads[3] = ops.bias_grad(dh), grads[1]
    for p, g, b in zip(params, grads, bufs):
        ops.sgd_step(p, g, b, lr=0.01, momentum=0.9)
    return loss


def test_ops_training_10000_steps_flat_memory():
    x, t, params, bufs = make_mlp()
    first = ops_train_step(x, t, params, bufs)
    grew = growth_mb(lambda: ops_train_step(x, t, params, bufs), 10_000)
    assert grew < LIMIT_MB, f"resident memory grew {grew:.1f} MB over 10,000 steps"
    assert ops_train_step(x, t, params, bufs) < first  # it trained


def test_10000_op_calls_flat_memory():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 48)).astype(np.float32)
    b = rng.standard_normal((48, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    out = np.empty((64, 32), np.float32)
    s = a[::2, ::-1]  # a strided input: copied by the binding every call

    def calls():
        ops.matmul(a, b, bias=bias, relu=True)
        ops.matmul(a, b, out=out)
        ops.matmul(s, b)
        ops.relu(a)
        ops.bias_grad(a)
        ops.mse_loss(a, a)

    grew = growth_mb(calls, 10_000 // 6 + 1)
    assert grew < LIMIT_MB, f"resident memory grew {grew:.1f} MB"


def test_10000_failing_calls_flat_memory():
    a = np.ones((8, 4), np.float32)
    a64 = np.ones((8, 4))
    ro = np.ones((8, 8), np.float32)
    ro.flags.writeable = False

    def failing():
        for fn in (lambda: ops.matmul(a, a), lambda: ops.matmul(a64, a.T), lambda: ops.relu([1.0]),
                   lambda: ops.matmul(a[::2, ::-1], a.T[:, :4], out=ro[:4, :4]),
                   lambda: ops.mse_loss(a, a.T), lambda: ops.sgd_step(a, a, lr=0.1)):
            try:
                fn()
            except (TypeError, ValueError):
                pass
            else:
                raise AssertionError("expected an error")

    grew = growth_mb(failing, 10_000 // 6 + 1)
    assert grew < LIMIT_MB, f"resident memory grew {grew:.1f} MB"


def refcounts(*objs):
    return [sys.getrefcount(o) for o in objs]


def test_no_reference_leaks_on_inputs_and_outputs():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal((8, 12)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    out = np.empty((16, 12), np.float32)
    g = rng.standard_normal((16, 12)).astype(np.float32)
    buf = np.zeros_like(out)
    st = a[::2]
    objs = (a, b, bias, out, g, buf, st)
    before = refcounts(*objs)
    for _ in range(100):
        ops.matmul(a, b, bias=bias, relu=True)
        r = ops.matmul(a, b, out=out, beta=0.5)
        assert r is out
        del r
        ops.matmul(st, b)
        ops.matmul(b.T, a.T)
        ops.linear(a, b.T, bias)
        ops.relu(g, out=g)
        ops.relu_backward(g, out)
        ops.bias_add(g, bias)
        ops.bias_grad(g)
        ops.mse_loss(g, out)
        ops.mse_loss_backward(g, out)
        ops.sgd_step(out, g, buf, lr=0.01, momentum=0.9)
        for bad in (lambda: ops.matmul(a, a), lambda: ops.matmul(a, b, out=g[:, :4]),
                    lambda: ops.relu(a, out=b), lambda: ops.sgd_step(g, g, lr=0.1)):
            with pytest.raises((TypeError, ValueError)):
                bad()
    gc.collect()
    assert refcounts(*objs) == before
    # a fresh result is owned by the caller alone
    r = ops.matmul(a, b)
    assert sys.getrefcount(r) == 2
    assert r.base is None or sys.getrefcount(r.base) == 2


def test_eager_training_10000_steps_flat_memory():
    import fastmlp
    import fastmlp.nn as nn
    import fastmlp.optim as optim

    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.MSELoss()
    x, y = fastmlp.randn(32, 16), fastmlp.randn(32, 4)
    xa = x.numpy()
    before_refs = sys.getrefcount(xa)
    losses = []

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        del losses[:-2]

    step()
    first = losses[-1]
    grew = growth_mb(step, 10_000)
    assert grew < LIMIT_MB, f"resident memory grew {grew:.1f} MB over 10,000 eager steps"
    assert losses[-1] < first
    gc.collect()
    assert sys.getrefcount(xa) == before_refs
    # the graph is freed after backward: no tensor from the last step keeps the tape alive
    assert all(p.grad is None or p.grad.grad_fn is None for p in model.parameters())


# ---- the fused trainers' scratch (csrc/cpu/scratch_cache.h): kept for the next call, capped --

def _minflt():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _train_call(w, b, nb, path, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [20, w, w, 1]
    ws = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
          for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(o, np.float32) for o in sizes[1:]]
    n = b * nb - b // 3  # a partial last batch
    X = rng.standard_normal((n, 20)).astype(np.float32)
    Y = rng.standard_normal((n, 1)).astype(np.float32)
    perm = rng.permutation(n).astype(np.int64)

    def run():
        w2 = [a.copy() for a in ws]
        b2 = [a.copy() for a in bs]
        r = ops.cpu.mlp_train(w2, b2, [True, True, False], X, Y, epochs=2, batch_size=b,
                              perm=perm, lr=1e-3, path=path)
        return w2 + b2, r
    return run


@pytest.mark.parametrize("path", ["small", "gemm"])
def test_a_second_fit_call_reuses_the_scratch_pages_and_gives_the_same_bits(path):
    # a shape no other test uses: its first call faults the scratch in, the second finds it kept
    run = _train_call(232, 520, 3, path)
    f0 = _minflt()
    first, r1 = run()
    f1 = _minflt()
    second, r2 = run()
    f2 = _minflt()
    assert ops.cpu.scratch_cached_bytes() > 0
    assert f2 - f1 <= max(64, (f1 - f0) // 4), (f1 - f0, f2 - f1)
    # the reused blocks held the first call's values: nothing of them shows in the result
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert r1["losses"] == r2["losses"]


def test_scratch_kept_between_calls_is_capped():
    # the gemm path at a 131072-row batch: activation buffers of 32 MiB each, more than the cap
    run = _train_call(64, 131072, 1, "gemm")
    run()
    assert 0 < ops.cpu.scratch_cached_bytes() <= 64 << 20


@pytest.mark.parametrize("path", ["small", "gemm"])
def test_general_trainer_reuses_its_scratch_with_the_same_bits(path, monkeypatch):
    import copy

    import fastmlp
    from fastmlp import costmodel, nn
    monkeypatch.setattr(costmodel, "choose_path", lambda *a, **k: path)
    fastmlp.manual_seed(3)
    base = nn.Sequential(nn.Linear(20, 136), nn.Tanh(), nn.Dropout(0.1), nn.Linear(136, 136),
                         nn.GELU(), nn.Linear(136, 3))
    rng = np.random.default_rng(4)
    X = rng.standard_normal((1000, 20)).astype(np.float32)
    Y = rng.standard_normal((1000, 3)).astype(np.float32)
    outs = []
    for _ in range(2):
        m = copy.deepcopy(base)
        fastmlp.fit(m, X, Y, epochs=2, batch_size=300, lr=1e-3, optimizer="adam", seed=5,
                    progress=False)
        outs.append([p.detach().numpy().copy() for p in m.parameters()])
    assert ops.cpu.scratch_cached_bytes() > 0
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
