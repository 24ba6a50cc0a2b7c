"""fork(): a child forked after fastmlp used its OpenMP thread pool can still use fastmlp.

GNU libgomp's worker threads do not survive fork(); without care the child's next parallel
region waits forever for them. fastmlp's pthread_atfork handler (csrc/cpu/cpu_features.cpp) puts
such a child on one thread. Every check runs in a fresh interpreter with a timeout, so a hang
fails the test instead of stalling the run.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastmlp

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

PRELUDE = """
import multiprocessing as mp, os, sys
import numpy as np
import fastmlp
from fastmlp import ops

def work(q):
    # a parallel-sized gemm and elementwise ops, checked against numpy
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    b = rng.standard_normal((200, 250)).astype(np.float32)
    c = ops.matmul(a, b)
    ok = np.allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    g = rng.standard_normal((20000, 64)).astype(np.float32)
    ok = ok and np.allclose(ops.bias_grad(g), g.astype(np.float64).sum(0), rtol=1e-4, atol=1e-3)
    # the fused trainer and the eager API too
    import fastmlp.nn as nn
    m = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    X = rng.standard_normal((2048, 8)).astype(np.float32)
    h = fastmlp.fit(m, X, X.sum(1), epochs=1, batch_size=256, lr=0.01, seed=0, progress=False)
    ok = ok and bool(np.isfinite(h["loss"]).all())
    loss = nn.MSELoss()(m(fastmlp.from_numpy(X)), fastmlp.from_numpy(X[:, :1]))
    loss.backward()
    ok = ok and m[0].weight.grad is not None
    q.put((bool(ok), fastmlp.get_num_threads(), fastmlp._C.in_forked_child()))

def parent_uses_pool():
    fastmlp.set_num_threads(2)
    a = np.ones((300, 300), np.float32)
    assert (ops.matmul(a, a) == 300).all()
    assert (ops.bias_grad(np.ones((20000, 64), np.float32)) == 20000).all()

def run_child(ctx_name):
    ctx = mp.get_context(ctx_name)
    q = ctx.Queue()
    p = ctx.Process(target=work, args=(q,))
    p.start()
    res = q.get(timeout=60)
    p.join(30)
    assert p.exitcode == 0, p.exitcode
    return res
"""


def run(tmp_path, body, timeout=120):
    """Runs PRELUDE + body (as the script's main block) in a fresh interpreter; returns stdout."""
    env = dict(os.environ)
    pkg_parent = str(Path(fastmlp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    script = tmp_path / "fork_script.py"
    script.write_text(PRELUDE + "\nif __name__ == '__main__':\n" + textwrap.indent(textwrap.dedent(body), "    "))
    try:
        p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("fork child hung (libgomp thread pool after fork)")
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_fork_child_after_parent_used_thread_pool(tmp_path):
    out = run(tmp_path, """
        parent_uses_pool()
        ok, nthreads, forked = run_child("fork")
        print(ok, nthreads, forked)
        # the parent keeps its threads and still works afterwards
        assert fastmlp.get_num_threads() == 2 and not fastmlp._C.in_forked_child()
        parent_uses_pool()
    """)
    assert out.split() == ["True", "1", "True"]


def test_fork_child_setting_threads_stays_safe(tmp_path):
    # set_num_threads in such a child must not re-enable the dead pool
    out = run(tmp_path, """
        parent_uses_pool()
        def child(q):
            fastmlp.set_num_threads(2)
            work(q)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        print(*q.get(timeout=60))
        p.join(30)
        assert p.exitcode == 0
    """)
    assert out.split() == ["True", "1", "True"]


def test_fork_before_pool_use_keeps_threads(tmp_path):
    # a child forked before any parallel region has nothing to lose: it keeps its thread count
    out = run(tmp_path, """
        fastmlp.set_num_threads(2)
        ok, nthreads, forked = run_child("fork")
        print(ok, nthreads, forked)
    """)
    assert out.split() == ["True", "2", "False"]


def test_grandchild_and_spawn(tmp_path):
    out = run(tmp_path, """
        parent_uses_pool()
        def middle(q):
            work(q)            # the child uses fastmlp on one thread...
            ctx = mp.get_context("fork")
            q2 = ctx.Queue()
            p = ctx.Process(target=work, args=(q2,))   # ...and forks again
            p.start(); q.put(q2.get(timeout=60)); p.join(30)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=middle, args=(q,))
        p.start()
        first, second = q.get(timeout=60), q.get(timeout=60)
        p.join(30)
        assert p.exitcode == 0
        print(first[0], second[0])
        print(*run_child("spawn"))   # spawn starts clean: full thread count
    """, timeout=180)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["True", "True"]
    assert lines[1].split()[0] == "True" and lines[1].split()[2] == "False"
