"""Runs test snippets in child interpreters, so a crash or hang fails a case, not the test run.

Parent side: :func:`run_cases`. Child side (``python crash_isolation.py``): reads
``[[case_id, code], ...]`` as JSON on stdin, executes each snippet in a fresh namespace and prints one ``RESULT {json}`` line per case (flushed), preceded by ``START case_id``, so the parent
can tell which case was running when the interpreter crashed or hung. The address space is
limited (``FASTMLP_TEST_AS_LIMIT_GB``, default 8) so a binding that would materialise a huge
broadcast view fails with MemoryError instead of eating the machine's memory.
"""
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child_env():
    """The environment for a child interpreter that imports the same fastmlp as this process."""
    import fastmlp

    env = dict(os.environ)
    pkg_parent = str(Path(fastmlp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent, str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


def run_cases(cases, timeout=240):
    """Run [(id, code)] in child interpreters; returns {id: result dict}.

    A result has ``outcome`` "ok", "raised" (with ``type``, ``msg``, ``tb``), "crashed" or "hung"
    (with ``rc`` and ``stderr``). After a crash or hang the remaining cases run in a new child.
    """
    results = {}
    pending = list(cases)
    while pending:
        try:
            p = subprocess.run([sys.executable, str(Path(__file__).resolve())], input=json.dumps(pending),
                               capture_output=True, text=True, timeout=timeout, env=child_env())
            out, err, rc, hung = p.stdout, p.stderr, p.returncode, False
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            rc, hung = None, True
        current = None
        for line in out.splitlines():
            if line.startswith("START "):
                current = line[6:]
            elif line.startswith("RESULT "):
                r = json.loads(line[7:])
                results[r["id"]] = r
                current = None
        if current is not None:  # died or hung inside this case
            results[current] = {"id": current, "outcome": "hung" if hung else "crashed", "rc": rc,
                                "stderr": err[-4000:]}
        elif not any(cid in results for cid, _ in pending):
            # died before the first case (e.g. an import error): report it on every case
            for cid, _ in pending:
                results[cid] = {"id": cid, "outcome": "hung" if hung else "crashed", "rc": rc,
                                "stderr": err[-4000:]}
        pending = [(cid, code) for cid, code in pending if cid not in results]
    return results


import numpy as np  # noqa: E402

import fastmlp  # noqa: E402
import fastmlp.nn as nn  # noqa: E402
import fastmlp.optim as optim  # noqa: E402
from fastmlp import ops  # noqa: E402
from fastmlp.utils.data import DataLoader, TensorDataset  # noqa: E402

_rng = np.random.default_rng(0)


def f32(*shape):
    return _rng.standard_normal(shape).astype(np.float32)


def huge(*shape):
    """A read-only view of one float32 with a huge logical shape (no memory behind it)."""
    return np.broadcast_to(np.float32(1.5), shape)


def skip(reason):
    """Raise from a snippet to skip its case (e.g. an optional package is missing)."""
    raise RuntimeError(f"(skip: {reason})")


def needs(module):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        skip(f"{module} is not installed")


def ref64(a):
    return np.asarray(a, dtype=np.float64)


def close(got, want, tol=1e-5):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol)


def readonly(a):
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


class FakeCupyArray:
    """Looks like a CuPy array to a duck-typing check (a GPU array on the wrong device)."""

    shape = (4, 3)
    dtype = np.dtype(np.float32)

    @property
    def __cuda_array_interface__(self):
        return {"shape": (4, 3), "typestr": "<f4", "data": (0, False), "version": 3}


# The good arguments of each op; a case overrides one of them.
GOOD = {
    "matmul": lambda: dict(a=f32(4, 3), b=f32(3, 5)),
    "linear": lambda: dict(x=f32(4, 3), weight=f32(5, 3), bias=f32(5)),
    "relu": lambda: dict(x=f32(4, 3)),
    "relu_backward": lambda: dict(grad=f32(4, 3), y=f32(4, 3)),
    "bias_add": lambda: dict(x=f32(4, 3), bias=f32(3)),
    "bias_grad": lambda: dict(grad=f32(4, 3)),
    "mse_loss": lambda: dict(input=f32(4, 3), target=f32(4, 3)),
    "mse_loss_backward": lambda: dict(input=f32(4, 3), target=f32(4, 3)),
    "sgd_step": lambda: dict(param=f32(4, 3), grad=f32(4, 3), lr=0.1),
}


def good(op):
    return GOOD[op]()


def call(op, **override):
    args = GOOD[op]()
    args.update(override)
    return getattr(ops, op)(**args)


NAMESPACE = {k: v for k, v in globals().items()
             if not k.startswith("__") and k not in ("run_cases", "child_env", "main")}


def main():
    import faulthandler
    import resource

    faulthandler.enable()
    gb = float(os.environ.get("FASTMLP_TEST_AS_LIMIT_GB", "8"))
    if gb > 0:
        lim = int(gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    cases = json.load(sys.stdin)
    for cid, code in cases:
        print("START " + cid, flush=True)
        ns = dict(NAMESPACE)
        try:
            exec(compile(code, cid, "exec"), ns)
            res = {"id": cid, "outcome": "ok"}
        except BaseException as e:  # noqa: BLE001 - every outcome is reported to the parent
            res = {"id": cid, "outcome": "raised", "type": type(e).__name__, "msg": str(e)[:3000],
                   "tb": traceback.format_exc()[-3000:]}
        print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
