"""Child side of tests/test_bad_input.py: runs bad-input cases in a separate interpreter.

Reads ``[[case_id, code], ...]`` as JSON on stdin, executes each snippet in a fresh namespace and
prints one ``RESULT {json}`` line per case (flushed), preceded by ``START case_id``, so the parent
can tell which case was running when the interpreter crashed or hung. The address space is
limited (``FASTMLP_TEST_AS_LIMIT_GB``, default 8) so a binding that would materialise a huge
broadcast view fails with MemoryError instead of eating the machine's memory.
"""
import faulthandler
import json
import os
import resource
import sys
import traceback

faulthandler.enable()
_gb = float(os.environ.get("FASTMLP_TEST_AS_LIMIT_GB", "8"))
if _gb > 0:
    _lim = int(_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (_lim, _lim))

import numpy as np  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import ops  # noqa: E402

_rng = np.random.default_rng(0)


def f32(*shape):
    return _rng.standard_normal(shape).astype(np.float32)


def huge(*shape):
    """A read-only view of one float32 with a huge logical shape (no memory behind it)."""
    return np.broadcast_to(np.float32(1.5), shape)


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


NAMESPACE = {k: v for k, v in globals().items() if not k.startswith("__")}


def main():
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
