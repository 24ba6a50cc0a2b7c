"""Python threads: ops and training loops called from four threads at once give exactly the
single-thread results, and the kernels release the GIL (shown functionally, without timing)."""
import sys
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp import ops


def train_ops(seed, steps=60):
    """A 2-layer MLP trained with the ops API; returns the final weights (deterministic)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 12)).astype(np.float32)
    t = rng.standard_normal((64, 3)).astype(np.float32)
    w1 = (rng.standard_normal((32, 12)) * 0.3).astype(np.float32)
    b1 = np.zeros(32, np.float32)
    w2 = (rng.standard_normal((3, 32)) * 0.3).astype(np.float32)
    b2 = np.zeros(3, np.float32)
    bufs = [np.zeros_like(p) for p in (w1, b1, w2, b2)]
    for step in range(steps):
        h = ops.linear(x, w1, b1, relu=True)
        y = ops.linear(h, w2, b2)
        dy = ops.mse_loss_backward(y, t)
        gw2 = ops.matmul(dy.T, h)
        gb2 = ops.bias_grad(dy)
        dh = ops.relu_backward(ops.matmul(dy, w2), h)
        gw1 = ops.matmul(dh.T, x)
        gb1 = ops.bias_grad(dh)
        for p, g, b in zip((w1, b1, w2, b2), (gw1, gb1, gw2, gb2), bufs):
            ops.sgd_step(p, g, b, lr=0.05, momentum=0.9, first_step=step == 0)
    return [w1, b1, w2, b2, np.float32(ops.mse_loss(y, t))]


def op_mix(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((257, 129)).astype(np.float32)
    b = rng.standard_normal((129, 193)).astype(np.float32)
    g = rng.standard_normal((3000, 40)).astype(np.float32)
    return [ops.matmul(a, b, relu=True), ops.matmul(b.T, a.T), ops.bias_grad(g), ops.relu(g),
            np.float64(ops.mse_loss(g, g * 0.25))]


def run_in_threads(fn, seeds):
    results, errors = {}, []
    barrier = threading.Barrier(len(seeds))

    def work(s):
        try:
            barrier.wait()
            results[s] = fn(s)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
    return results


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_four_threads_training_match_one_thread(threads, nthreads):
    threads(nthreads)
    seeds = [0, 1, 2, 3]
    want = {s: train_ops(s) for s in seeds}
    for _ in range(2):
        got = run_in_threads(train_ops, seeds)
        for s in seeds:
            assert_same(got[s], want[s])


def test_four_threads_same_inputs_match(threads):
    threads(2)
    want = op_mix(7)
    got = run_in_threads(lambda s: op_mix(7), [0, 1, 2, 3])
    for s in got:
        assert_same(got[s], want)


def test_thread_count_changes_while_other_threads_compute(threads):
    # Thread-count changes from one thread while others compute: results never change (they do
    # not depend on the thread count, bitwise).
    threads(2)
    want = op_mix(3)
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set():
            fastmlp.set_num_threads(1 + i % 2)
            i += 1

    th = threading.Thread(target=churn)
    th.start()
    try:
        got = run_in_threads(lambda s: op_mix(3), [0, 1, 2])
    finally:
        stop.set()
        th.join()
    for s in got:
        assert_same(got[s], want)


def test_gil_is_released_inside_kernels(threads):
    """While a worker thread is inside a kernel, the main thread runs Python code.

    The switch interval is raised to 60 s, so CPython never takes the GIL from a running thread:
    the main thread can only run when the worker gives the GIL up by itself. The worker sets
    `in_kernel` right before each kernel call and clears it right after; if the main thread ever
    sees the flag set, the worker released the GIL inside the call. A control run with a pure
    Python loop (which holds the GIL) must never be observed that way, which shows the method works.
    """
    threads(1)
    a = np.random.default_rng(0).standard_normal((500, 500)).astype(np.float32)
    out = np.empty_like(a)

    def observe(body, calls):
        state = {"in_kernel": False, "seen": 0, "done": False}

        def worker():
            for _ in range(calls):
                state["in_kernel"] = True
                body()
                state["in_kernel"] = False
            state["done"] = True

        old = sys.getswitchinterval()
        sys.setswitchinterval(60.0)
        try:
            th = threading.Thread(target=worker)
            th.start()
            while not state["done"]:
                if state["in_kernel"]:
                    state["seen"] += 1
                threading.Event().wait(0.0005)  # gives the GIL up; the worker may take it
            th.join()
        finally:
            sys.setswitchinterval(old)
        return state["seen"]

    def python_loop():
        s = 0
        for i in range(200000):
            s += i

    assert observe(python_loop, 5) == 0, "control failed: the method cannot detect a held GIL"
    assert observe(lambda: ops.matmul(a, a, out=out), 30) > 0, "matmul holds the GIL"
    big = np.random.default_rng(1).standard_normal(4_000_000).astype(np.float32)
    o = np.empty_like(big)
    assert observe(lambda: ops.relu(big, out=o), 30) > 0, "relu holds the GIL"
    assert observe(lambda: ops.mse_loss(big, o), 30) > 0, "mse_loss holds the GIL"


def test_set_num_threads_is_process_wide(threads):
    # omp_set_num_threads only changes the calling thread's setting; fastmlp's must hold for
    # kernels called from every Python thread (as torch.set_num_threads does).
    for n in (1, 2, 3):
        threads(n)
        seen = []
        th = threading.Thread(target=lambda: seen.append(fastmlp.get_num_threads()))
        th.start()
        th.join()
        assert seen == [n] and fastmlp.get_num_threads() == n


# ---- the eager API (fastmlp.nn / optim) from several threads ------------------------------------

def train_eager(seed, steps=40):
    import fastmlp.nn as nn
    import fastmlp.optim as optim

    rng = np.random.default_rng(seed)
    x = fastmlp.from_numpy(rng.standard_normal((32, 6)).astype(np.float32))
    y = fastmlp.from_numpy(rng.standard_normal((32, 2)).astype(np.float32))
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    with fastmlp.no_grad():
        for i, p in enumerate(model.parameters()):  # deterministic init without the global RNG
            p.copy_(fastmlp.from_numpy((rng.standard_normal(tuple(p.shape)) * 0.3).astype(np.float32)))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()] + [np.float32(loss.item())]


def test_four_threads_eager_training_match_one_thread(threads):
    threads(2)
    seeds = [0, 1, 2, 3]
    want = {s: train_eager(s) for s in seeds}
    got = run_in_threads(train_eager, seeds)
    for s in seeds:
        assert_same(got[s], want[s])


def test_no_grad_in_one_thread_does_not_affect_training_in_another():
    # PyTorch's grad mode is per thread: an inference thread inside `no_grad()` must not switch
    # off recording for a thread that is training at the same time.
    import fastmlp.nn as nn

    want = train_eager(5, steps=60)
    stop = threading.Event()
    infer = nn.Linear(6, 2)

    def inference_loop():
        x = fastmlp.randn(8, 6)
        while not stop.is_set():
            with fastmlp.no_grad():
                infer(x)

    th = threading.Thread(target=inference_loop)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, inside the training step
    th.start()
    try:
        got = train_eager(5, steps=60)
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    assert_same(got, want)


def fit_model(seed):
    import fastmlp.nn as nn

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((512, 8)).astype(np.float32)
    y = (X[:, :2].sum(1, keepdims=True) ** 2).astype(np.float32)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    with fastmlp.no_grad():
        for p in model.parameters():
            p.copy_(fastmlp.from_numpy((rng.standard_normal(tuple(p.shape)) * 0.2).astype(np.float32)))
    h = fastmlp.fit(model, X, y, epochs=3, batch_size=32, lr=0.01, momentum=0.9, seed=seed,
                    progress=False)
    return [p.detach().numpy().copy() for p in model.parameters()] + [np.asarray(h["loss"])]


def test_four_threads_fit_match_one_thread(threads):
    threads(2)
    seeds = [0, 1, 2, 3]
    want = {s: fit_model(s) for s in seeds}
    got = run_in_threads(fit_model, seeds)
    for s in seeds:
        assert_same(got[s], want[s])
