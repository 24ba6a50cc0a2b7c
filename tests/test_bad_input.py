"""Bad input at every public entry point: a clear Python exception, never a crash, hang or a
silently wrong answer.

Each case is a snippet run in a child interpreter (tests/crash_isolation.py) so that a segfault or
abort fails that case instead of killing the test run; all cases share a few child processes, and
after a crash the remaining cases continue in a fresh one. A case either expects an exception
(type and a message fragment) or expects to succeed, with its own assertions against numpy.

Huge shapes (more than 2**32 elements) are read-only broadcast views of a single float: the
bindings must reject them by shape before copying anything (the child runs under an 8 GiB address
space limit, so a binding that materialised one would show up as MemoryError, not a clean
ValueError).
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import fastmlp
from crash_isolation import child_env as _child_env, run_cases

HERE = Path(__file__).resolve().parent
BIG = 2**32 + 3  # an element count that does not fit 32 bits


@dataclass
class Case:
    code: str
    exc: str | None = None  # expected exception type name; None: must succeed
    match: str = ""  # regex searched in the message


CASES: dict[str, Case] = {}


def raises(cid, code, exc, match):
    assert cid not in CASES, cid
    CASES[cid] = Case(code, exc, match)


def ok(cid, code):
    assert cid not in CASES, cid
    CASES[cid] = Case(code, None, "")


# ---- fastmlp.ops: wrong dtypes and non-arrays, for every array argument ----------------------

ARRAY_ARGS = {
    "matmul": ["a", "b"],
    "linear": ["x", "weight", "bias"],
    "relu": ["x"],
    "relu_backward": ["grad", "y"],
    "bias_add": ["x", "bias"],
    "bias_grad": ["grad"],
    "mse_loss": ["input", "target"],
    "mse_loss_backward": ["input", "target"],
    "sgd_step": ["param", "grad"],
}
DTYPES = {
    "float64": "float64",
    "float16": "float16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "bool": "bool",
    "object": "object",
    "str": "<U3",
    "complex64": "complex64",
    "bigendian_f4": ">f4",
}
for op, names in ARRAY_ARGS.items():
    for arg in names:
        for dname, dt in DTYPES.items():
            shown = {"<U3": "<U3", ">f4": ">f4"}.get(dt, dt)
            raises(f"ops.{op}-{arg}-dtype-{dname}",
                   f"g = good({op!r}); call({op!r}, {arg}=g[{arg!r}].astype({dt!r}))",
                   "TypeError", rf"'{arg}'.*{re.escape(shown)}.*float32")
        for kind, expr in {"list": "g[{a!r}].tolist()", "tuple": "tuple(g[{a!r}].tolist())",
                           "str": "'abc'", "dict": "{{}}", "float": "1.5",
                           "memoryview": "memoryview(g[{a!r}])"}.items():
            raises(f"ops.{op}-{arg}-nonarray-{kind}",
                   f"g = good({op!r}); call({op!r}, {arg}=" + expr.format(a=arg) + ")",
                   "TypeError", rf"'{arg}' must be a numpy\.ndarray")
        raises(f"ops.{op}-{arg}-gpu-array", f"call({op!r}, {arg}=FakeCupyArray())", "TypeError",
               r"'weight' must be a numpy\.ndarray.*FakeCupyArray" if (op, arg) == ("linear", "weight")
               else rf"'{arg}' is a GPU array")

# Required arguments given as None.
for op, arg in [("matmul", "a"), ("matmul", "b"), ("relu", "x"), ("bias_add", "bias"),
                ("mse_loss", "target"), ("sgd_step", "grad"), ("bias_grad", "grad")]:
    raises(f"ops.{op}-{arg}-None", f"call({op!r}, {arg}=None)", "TypeError",
           rf"'{arg}' must be a numpy\.ndarray.*NoneType")

# ---- wrong ndim and mismatched shapes -------------------------------------------------------

raises("ops.matmul-a-1d", "call('matmul', a=f32(3))", "ValueError", r"'a' must be 2-D, got shape \(3,\)")
raises("ops.matmul-b-3d", "call('matmul', b=f32(3, 5, 1))", "ValueError", r"'b' must be 2-D")
raises("ops.relu-numpy-scalar", "ops.relu(np.float32(2))", "TypeError", r"'x' must be a numpy\.ndarray of float32, got a numpy scalar \(float32\)")
raises("ops.matmul-a-0d", "call('matmul', a=np.ones((), np.float32))", "ValueError", r"'a' must be 2-D, got shape \(\)")
raises("ops.matmul-not-aligned", "call('matmul', a=f32(4, 3), b=f32(4, 3))", "ValueError", r"\(4, 3\) and \(4, 3\) are not aligned")
raises("ops.matmul-out-shape", "call('matmul', out=np.zeros((5, 4), np.float32))", "ValueError", r"'out' has shape \(5, 4\), expected \(4, 5\)")
raises("ops.matmul-out-1d", "call('matmul', out=np.zeros(20, np.float32))", "ValueError", r"'out' must be 2-D")
raises("ops.matmul-bias-shape", "call('matmul', bias=f32(4))", "ValueError", r"'bias' must have shape \(5,\), got \(4,\)")
raises("ops.matmul-bias-2d", "call('matmul', bias=f32(1, 5))", "ValueError", r"'bias' must have shape \(5,\)")
raises("ops.matmul-bias-dtype", "call('matmul', bias=np.zeros(5))", "TypeError", r"'bias'.*float64")
raises("ops.matmul-beta-without-out", "call('matmul', beta=0.5)", "ValueError", r"beta != 0 needs an 'out'")
raises("ops.matmul-alpha-str", "call('matmul', alpha='2')", "TypeError", r"incompatible function arguments")
raises("ops.linear-weight-1d", "call('linear', weight=f32(3))", "ValueError", r"'weight' must be 2-D")
raises("ops.linear-features", "call('linear', weight=f32(5, 4))", "ValueError", r"expected input with 4 features")
raises("ops.linear-x-1d", "call('linear', x=f32(3))", "ValueError", r"'x' must be 2-D")
raises("ops.linear-x-3d", "call('linear', x=f32(2, 4, 3))", "ValueError", r"'x' must be 2-D")
raises("ops.linear-bias-shape", "call('linear', bias=f32(3))", "ValueError", r"'bias' must have shape \(5,\)")
raises("ops.relu-out-shape", "call('relu', out=np.zeros((3, 4), np.float32))", "ValueError", r"'out' and 'x' must have the same shape")
raises("ops.relu-out-dtype", "call('relu', out=np.zeros((4, 3)))", "TypeError", r"'out'.*float64")
raises("ops.relu_backward-shapes", "call('relu_backward', y=f32(3, 4))", "ValueError", r"'grad' and 'y' must have the same shape, got \(4, 3\) and \(3, 4\)")
raises("ops.relu_backward-out-shape", "call('relu_backward', out=np.zeros(12, np.float32))", "ValueError", r"same shape")
raises("ops.bias_add-x-1d", "call('bias_add', x=f32(3))", "ValueError", r"'x' must be 2-D")
raises("ops.bias_add-bias-2d", "call('bias_add', bias=f32(1, 3))", "ValueError", r"'bias' must have shape \(3,\)")
raises("ops.bias_add-bias-len", "call('bias_add', bias=f32(4))", "ValueError", r"'bias' must have shape \(3,\).*got \(4,\)")
raises("ops.bias_add-out-shape", "call('bias_add', out=np.zeros((4, 4), np.float32))", "ValueError", r"same shape")
raises("ops.bias_grad-1d", "call('bias_grad', grad=f32(3))", "ValueError", r"'grad' must be 2-D")
raises("ops.bias_grad-out-shape", "call('bias_grad', out=np.zeros(4, np.float32))", "ValueError", r"'out' must have shape \(3,\)")
raises("ops.bias_grad-accumulate-no-out", "call('bias_grad', accumulate=True)", "ValueError", r"accumulate=True needs an 'out'")
raises("ops.mse_loss-shapes", "call('mse_loss', target=f32(3, 4))", "ValueError", r"'input' and 'target' must have the same shape")
raises("ops.mse_loss-broadcastable-shapes", "call('mse_loss', target=f32(1, 3))", "ValueError", r"same shape")
raises("ops.mse_loss_backward-shapes", "call('mse_loss_backward', target=f32(12))", "ValueError", r"same shape")
raises("ops.mse_loss_backward-reduction", "call('mse_loss_backward', reduction='none')", "ValueError", r"reduction must be 'mean' or 'sum'")
raises("ops.sgd_step-shapes", "call('sgd_step', grad=f32(3, 4))", "ValueError", r"'param' and 'grad' must have the same shape")
raises("ops.sgd_step-momentum-no-buffer", "call('sgd_step', momentum=0.9)", "ValueError", r"needs a 'momentum_buffer'")
raises("ops.sgd_step-buffer-shape", "call('sgd_step', momentum=0.9, momentum_buffer=f32(3))", "ValueError", r"'param' and 'momentum_buffer' must have the same shape")
raises("ops.sgd_step-buffer-dtype", "call('sgd_step', momentum=0.9, momentum_buffer=np.zeros((4, 3)))", "TypeError", r"'momentum_buffer'.*float64")
raises("ops.sgd_step-negative-lr", "call('sgd_step', lr=-0.1)", "ValueError", r"Invalid learning rate")
raises("ops.sgd_step-negative-momentum", "call('sgd_step', momentum=-0.5, momentum_buffer=f32(4, 3))", "ValueError", r"invalid momentum")
raises("ops.sgd_step-nan-momentum", "call('sgd_step', momentum=float('nan'), momentum_buffer=f32(4, 3))", "ValueError", r"invalid momentum")
raises("ops.sgd_step-negative-weight-decay", "call('sgd_step', weight_decay=-1.0)", "ValueError", r"invalid weight_decay")
raises("ops.sgd_step-nesterov-no-momentum", "call('sgd_step', nesterov=True)", "ValueError", r"nesterov")
raises("ops.sgd_step-nesterov-dampening", "call('sgd_step', nesterov=True, momentum=0.9, dampening=0.1, momentum_buffer=f32(4, 3))", "ValueError", r"nesterov")

# ---- outputs: read-only, non-contiguous, aliased ---------------------------------------------

for op, outexpr in [("matmul", "np.zeros((4, 5), np.float32)"), ("relu", "np.zeros((4, 3), np.float32)"),
                    ("bias_add", "np.zeros((4, 3), np.float32)"), ("bias_grad", "np.zeros(3, np.float32)"),
                    ("relu_backward", "np.zeros((4, 3), np.float32)"),
                    ("mse_loss_backward", "np.zeros((4, 3), np.float32)"),
                    ("linear", "np.zeros((4, 5), np.float32)")]:
    raises(f"ops.{op}-out-readonly", f"call({op!r}, out=readonly({outexpr}))", "ValueError", r"'out' is read-only")
    raises(f"ops.{op}-out-broadcast", f"call({op!r}, out=np.broadcast_to(np.float32(0), {outexpr}.shape))",
           "ValueError", r"'out' is read-only")
raises("ops.sgd_step-param-readonly", "call('sgd_step', param=readonly(f32(4, 3)))", "ValueError", r"'param' is read-only")
raises("ops.sgd_step-buffer-readonly", "call('sgd_step', momentum=0.9, momentum_buffer=readonly(f32(4, 3)))", "ValueError", r"'momentum_buffer' is read-only")
raises("ops.matmul-out-transposed", "call('matmul', out=np.zeros((5, 4), np.float32).T)", "ValueError", r"'out' must be a C-contiguous")
raises("ops.matmul-out-negative-stride", "call('matmul', out=np.zeros((4, 5), np.float32)[::-1])", "ValueError", r"'out' must be a C-contiguous")
raises("ops.matmul-out-col-stride", "call('matmul', out=np.zeros((4, 10), np.float32)[:, ::2])", "ValueError", r"'out' must be a C-contiguous")
raises("ops.matmul-out-misaligned", "buf = np.zeros(4 * 5 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(4, 5); call('matmul', out=buf)",
       "ValueError", r"'out' must be a C-contiguous")
raises("ops.relu-out-strided", "call('relu', out=np.zeros((4, 6), np.float32)[:, ::2])", "ValueError", r"'out' must be a C-contiguous")
raises("ops.relu-out-negative-stride", "call('relu', out=np.zeros((4, 3), np.float32)[::-1])", "ValueError", r"'out' must be a C-contiguous")
raises("ops.bias_grad-out-strided", "call('bias_grad', out=np.zeros(6, np.float32)[::2])", "ValueError", r"'out' must be a C-contiguous")
raises("ops.sgd_step-param-transposed", "call('sgd_step', param=f32(3, 4).T)", "ValueError", r"'param' must be a C-contiguous")
raises("ops.sgd_step-param-negative-stride", "call('sgd_step', param=f32(4, 3)[::-1])", "ValueError", r"'param' must be a C-contiguous")
raises("ops.matmul-out-is-a", "a = f32(4, 4); call('matmul', a=a, b=f32(4, 4), out=a)", "ValueError", r"'out' overlaps argument 'a'")
raises("ops.matmul-out-is-b-transposed", "b = f32(4, 4); call('matmul', a=f32(4, 4), b=b.T, out=b)", "ValueError", r"'out' overlaps argument 'b'")
raises("ops.matmul-out-overlaps-bias", "o = np.zeros((4, 5), np.float32); call('matmul', out=o, bias=o[1])", "ValueError", r"'out' overlaps argument 'bias'")
raises("ops.linear-out-is-weight", "w = f32(3, 3); ops.linear(f32(3, 3), w, out=w)", "ValueError", r"'out' overlaps argument 'weight'")
raises("ops.relu-out-shifted-alias", "f = f32(10); ops.relu(f[:8], out=f[2:])", "ValueError", r"overlaps")
raises("ops.relu_backward-out-overlaps-y", "y = f32(10); ops.relu_backward(f32(8), y[:8], out=y[2:])", "ValueError", r"'out' overlaps argument 'y'")
raises("ops.bias_add-out-overlaps-bias", "x = f32(4, 6); ops.bias_add(x, x[0], out=x)", "ValueError", r"'out' overlaps argument 'bias'")
raises("ops.bias_grad-out-in-grad", "g = f32(4, 3); ops.bias_grad(g, out=g[0])", "ValueError", r"'out' overlaps argument 'grad'")
raises("ops.mse_loss_backward-out-overlaps-target", "t = f32(10); ops.mse_loss_backward(f32(8), t[:8], out=t[2:])", "ValueError", r"overlaps")
raises("ops.sgd_step-grad-is-param", "p = f32(4, 3); ops.sgd_step(p, p, lr=0.1)", "ValueError", r"'param' overlaps argument 'grad'")
raises("ops.sgd_step-buffer-is-param", "p = f32(4, 3); ops.sgd_step(p, f32(4, 3), p, lr=0.1, momentum=0.9)", "ValueError", r"'momentum_buffer' overlaps argument 'param'")
raises("ops.sgd_step-buffer-is-grad", "g = f32(4, 3); ops.sgd_step(f32(4, 3), g, g, lr=0.1, momentum=0.9)", "ValueError", r"'momentum_buffer' overlaps argument 'grad'")

# ---- layouts that must give the right answer (read in place or copied, never wrong) ----------

ok("ops.matmul-transposed-inputs", "a = f32(5, 4).T; b = f32(6, 5).T; close(ops.matmul(a, b), ref64(a) @ ref64(b))")
ok("ops.matmul-negative-strides", "a = f32(4, 5)[::-1, ::-1]; b = f32(5, 6)[::-1]; close(ops.matmul(a, b), ref64(a) @ ref64(b))")
ok("ops.matmul-strided", "a = f32(8, 10)[::2, ::3]; b = f32(8, 7)[::2, 1::2]; close(ops.matmul(a, b), ref64(a) @ ref64(b))")
ok("ops.matmul-broadcast-input", "a = np.broadcast_to(f32(1, 4), (6, 4)); b = np.broadcast_to(f32(4, 1), (4, 3)); close(ops.matmul(a, b), ref64(a) @ ref64(b))")
ok("ops.matmul-readonly-inputs", "a, b = readonly(f32(3, 4)), readonly(f32(4, 2)); close(ops.matmul(a, b), ref64(a) @ ref64(b))")
ok("ops.matmul-misaligned-input", "buf = np.zeros(12 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(3, 4); buf[:] = f32(3, 4); b = f32(4, 2); close(ops.matmul(buf, b), ref64(buf) @ ref64(b))")
ok("ops.matmul-same-input-twice", "a = f32(4, 4); close(ops.matmul(a, a), ref64(a) @ ref64(a)); close(ops.matmul(a, a.T), ref64(a) @ ref64(a).T)")
ok("ops.matmul-padded-out", "big = np.zeros((4, 9), np.float32); a, b = f32(4, 3), f32(3, 5); ops.matmul(a, b, out=big[:, 2:7]); close(big[:, 2:7], ref64(a) @ ref64(b)); assert (big[:, :2] == 0).all() and (big[:, 7:] == 0).all()")
ok("ops.matmul-matrix-subclass", "a = np.asmatrix(f32(3, 4)); b = f32(4, 2); close(ops.matmul(a, b), ref64(a) @ ref64(b))")
ok("ops.linear-transposed-weight-view", "w = f32(3, 5).T; x = f32(4, 3); b = f32(5); close(ops.linear(x, w, b), ref64(x) @ ref64(w).T + b)")
ok("ops.relu-strided", "x = f32(6, 8)[::2, ::-3]; close(ops.relu(x), np.maximum(ref64(x), 0))")
ok("ops.relu-in-place", "x = f32(5, 7); want = np.maximum(ref64(x), 0); r = ops.relu(x, out=x); assert r is x; close(x, want)")
ok("ops.relu-0d", "x = np.array(-2.0, np.float32); assert ops.relu(x) == 0 and ops.relu(x).shape == ()")
ok("ops.relu-3d", "x = f32(2, 3, 4); close(ops.relu(x), np.maximum(ref64(x), 0))")
ok("ops.relu_backward-strided", "g, y = f32(4, 6)[:, ::2], f32(3, 4).T; close(ops.relu_backward(g, y), ref64(g) * (ref64(y) > 0))")
ok("ops.relu_backward-in-place", "g, y = f32(4, 3), f32(4, 3); want = ref64(g) * (y > 0); ops.relu_backward(g, y, out=g); close(g, want)")
ok("ops.bias_add-strided", "x, b = f32(3, 8)[:, ::2], f32(8)[::-2]; close(ops.bias_add(x, b), ref64(x) + b)")
ok("ops.bias_add-in-place", "x, b = f32(3, 4), f32(4); want = ref64(x) + b; ops.bias_add(x, b, out=x); close(x, want)")
ok("ops.bias_grad-transposed", "g = f32(5, 4).T; close(ops.bias_grad(g), ref64(g).sum(0))")
ok("ops.bias_grad-accumulate", "g, o = f32(5, 4), f32(4); want = ref64(o) + ref64(g).sum(0); ops.bias_grad(g, out=o, accumulate=True); close(o, want)")
ok("ops.mse_loss-strided", "p, t = f32(4, 6)[:, ::2], f32(3, 4).T; close(ops.mse_loss(p, t), np.mean((ref64(p) - t) ** 2))")
ok("ops.mse_loss_backward-strided", "p, t = f32(4, 6)[:, ::-2], f32(4, 3); close(ops.mse_loss_backward(p, t), 2 * (ref64(p) - t) / 12)")
ok("ops.sgd_step-strided-grad", "p, g = f32(4, 3), f32(3, 4).T; want = ref64(p) - 0.1 * ref64(g); ops.sgd_step(p, g, lr=0.1); close(p, want)")

# ---- empty arrays and zero-size batches ------------------------------------------------------

ok("ops.matmul-empty-m", "r = ops.matmul(f32(0, 3), f32(3, 5)); assert r.shape == (0, 5)")
ok("ops.matmul-empty-n", "r = ops.matmul(f32(4, 3), f32(3, 0)); assert r.shape == (4, 0)")
ok("ops.matmul-empty-k", "r = ops.matmul(np.full((4, 0), np.nan, np.float32), f32(0, 5)); assert r.shape == (4, 5) and (r == 0).all()")
ok("ops.matmul-empty-k-bias-relu", "b = f32(5); r = ops.matmul(f32(4, 0), f32(0, 5), bias=b, relu=True); close(r, np.broadcast_to(np.maximum(b, 0), (4, 5)))")
ok("ops.matmul-empty-k-beta", "o = f32(2, 3); want = 0.5 * ref64(o); ops.matmul(f32(2, 0), f32(0, 3), out=o, beta=0.5); close(o, want)")
ok("ops.linear-zero-batch", "r = ops.linear(f32(0, 3), f32(5, 3), f32(5), relu=True); assert r.shape == (0, 5)")
ok("ops.relu-empty", "assert ops.relu(f32(0, 3)).shape == (0, 3) and ops.relu(f32(0)).shape == (0,)")
ok("ops.relu_backward-empty", "assert ops.relu_backward(f32(0, 3), f32(0, 3)).shape == (0, 3)")
ok("ops.bias_add-zero-batch", "assert ops.bias_add(f32(0, 3), f32(3)).shape == (0, 3)")
ok("ops.bias_add-zero-features", "assert ops.bias_add(f32(4, 0), f32(0)).shape == (4, 0)")
ok("ops.bias_grad-zero-batch", "r = ops.bias_grad(f32(0, 3)); assert r.shape == (3,) and (r == 0).all()")
ok("ops.bias_grad-zero-features", "assert ops.bias_grad(f32(4, 0)).shape == (0,)")
ok("ops.mse_loss-empty-is-nan", "assert np.isnan(ops.mse_loss(f32(0, 3), f32(0, 3)))")
ok("ops.mse_loss_backward-empty", "assert ops.mse_loss_backward(f32(0, 3), f32(0, 3)).shape == (0, 3)")
ok("ops.sgd_step-empty", "p = f32(0, 3); ops.sgd_step(p, f32(0, 3), f32(0, 3), lr=0.1, momentum=0.9); assert p.shape == (0, 3)")

# ---- NaN and inf: propagate like numpy / PyTorch, never crash --------------------------------

ok("ops.matmul-nan-inf", "a = f32(3, 4); a[0, 0] = np.nan; a[1, 1] = np.inf; b = np.abs(f32(4, 2)) + 0.1; r = ops.matmul(a, b); assert np.isnan(r[0]).all() and np.isposinf(r[1]).all() and np.isfinite(r[2]).all()")
ok("ops.matmul-inf-times-zero", "a = np.array([[np.inf, 1]], np.float32); b = np.array([[0], [1]], np.float32); assert np.isnan(ops.matmul(a, b)).all()")
ok("ops.matmul-beta0-nan-out", "o = np.full((4, 5), np.nan, np.float32); g = good('matmul'); ops.matmul(g['a'], g['b'], out=o); close(o, ref64(g['a']) @ ref64(g['b']))")
ok("ops.matmul-overflow-to-inf", "a = np.full((2, 2), 3e38, np.float32); r = ops.matmul(a, a); assert np.isposinf(r).all()")
ok("ops.relu-nan-inf", "x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0], np.float32); r = ops.relu(x); assert np.isnan(r[0]) and r[1] == 0 and r[2] == np.inf and (r[3:5] == 0).all() and r[5] == 1")
ok("ops.relu_backward-nan-grad", "g = np.array([np.nan, np.nan, 1], np.float32); y = np.array([1, 0, np.nan], np.float32); r = ops.relu_backward(g, y); assert np.isnan(r[0]) and r[1] == 0 and r[2] == 0")
ok("ops.mse_loss-inf", "p = f32(3); t = p.copy(); p[1] = np.inf; assert ops.mse_loss(p, t) == np.inf")
ok("ops.mse_loss-nan", "p = f32(3); p[2] = np.nan; assert np.isnan(ops.mse_loss(p, f32(3)))")
ok("ops.mse_loss-large-no-overflow", "p = np.full(4, 3e38, np.float32); t = -p; assert np.isfinite(ops.mse_loss(p, t))")
ok("ops.bias_grad-nan", "g = f32(5, 3); g[2, 1] = np.nan; r = ops.bias_grad(g); assert np.isnan(r[1]) and np.isfinite(r[[0, 2]]).all()")
ok("ops.sgd_step-nan-grad", "p = f32(4, 3); g = f32(4, 3); g[0, 0] = np.nan; ops.sgd_step(p, g, lr=0.1); assert np.isnan(p[0, 0]) and np.isfinite(p.ravel()[1:]).all()")
ok("ops.sgd_step-nan-lr-propagates", "p = f32(4, 3); ops.sgd_step(p, f32(4, 3), lr=float('nan')); assert np.isnan(p).all()")

# ---- element counts beyond 32 bits: rejected by shape before any copy or kernel -------------

raises("huge.matmul-not-aligned", f"ops.matmul(huge({BIG}, 2), f32(3, 4))", "ValueError", rf"\({BIG}, 2\) and \(3, 4\) are not aligned")
raises("huge.matmul-k-not-aligned", f"ops.matmul(huge(1, {BIG}), huge({BIG} + 1, 1))", "ValueError", r"not aligned")
raises("huge.matmul-out-shape", f"ops.matmul(huge({BIG}, 1), f32(1, 2), out=np.zeros((3, 2), np.float32))", "ValueError", rf"'out' has shape \(3, 2\), expected \({BIG}, 2\)")
raises("huge.matmul-bias-shape", f"ops.matmul(huge(2, {BIG}), huge({BIG}, 3), out=np.zeros((2, 3), np.float32), bias=f32(4))", "ValueError", r"'bias' must have shape \(3,\)")
raises("huge.matmul-out-readonly", f"ops.matmul(f32(2, 3), f32(3, 2), out=huge(2, 2))", "ValueError", r"read-only")
raises("huge.linear-features", f"ops.linear(huge({BIG}, 3), f32(5, 4))", "ValueError", r"expected input with 4 features")
raises("huge.relu-out-shape", f"ops.relu(huge({BIG}), out=np.zeros(3, np.float32))", "ValueError", rf"same shape, got \(3,\) and \({BIG},\)")
raises("huge.relu_backward-shapes", f"ops.relu_backward(huge({BIG}), f32(3))", "ValueError", r"same shape")
raises("huge.relu_backward-y-shapes", f"ops.relu_backward(f32(3), huge({BIG}))", "ValueError", r"same shape")
raises("huge.bias_add-bias", f"ops.bias_add(huge({BIG}, 2), f32(3))", "ValueError", r"'bias' must have shape \(2,\)")
raises("huge.bias_add-out", f"ops.bias_add(huge({BIG}, 2), f32(2), out=np.zeros((3, 2), np.float32))", "ValueError", r"same shape")
raises("huge.bias_grad-out", f"ops.bias_grad(huge({BIG}, 2), out=np.zeros(3, np.float32))", "ValueError", r"'out' must have shape \(2,\)")
raises("huge.mse_loss-shapes", f"ops.mse_loss(huge({BIG}), f32(3))", "ValueError", r"same shape")
raises("huge.mse_loss-target-shapes", f"ops.mse_loss(f32(2, 3), huge(2, {BIG}))", "ValueError", r"same shape")
raises("huge.mse_loss_backward-shapes", f"ops.mse_loss_backward(huge(2, {BIG}), f32(2, 3))", "ValueError", r"same shape")
raises("huge.sgd_step-grad", f"ops.sgd_step(f32(3), huge({BIG}), lr=0.1)", "ValueError", r"same shape")
raises("huge.sgd_step-param-readonly", f"ops.sgd_step(huge({BIG}), huge({BIG}), lr=0.1)", "ValueError", r"read-only")
# A valid request this large cannot be served in the child's 8 GiB: a clean MemoryError.
raises("huge.matmul-valid-too-big", f"ops.matmul(huge(1, {BIG}), huge({BIG}, 1))", "MemoryError", r"")
raises("huge.relu-valid-too-big", f"ops.relu(huge({BIG}))", "MemoryError", r"")

# ---- configuration ---------------------------------------------------------------------------

raises("config.set_num_threads-zero", "fastmlp.set_num_threads(0)", "ValueError", r"between 1 and")
raises("config.set_num_threads-negative", "fastmlp.set_num_threads(-3)", "ValueError", r"between 1 and")
raises("config.set_num_threads-huge", "fastmlp.set_num_threads(100000)", "ValueError", r"between 1 and \d+ \(4 per CPU\), got 100000")
raises("config.set_num_threads-2**40", "fastmlp.set_num_threads(2**40)", "ValueError", r"between 1 and")
raises("config.set_num_threads-float", "fastmlp.set_num_threads(2.0)", "TypeError", r"must be an int, got float")
raises("config.set_num_threads-bool", "fastmlp.set_num_threads(True)", "TypeError", r"must be an int, got bool")
raises("config.set_num_threads-str", "fastmlp.set_num_threads('2')", "TypeError", r"must be an int, got str")
ok("config.set_num_threads-max-works",
   "n0 = fastmlp.get_num_threads(); fastmlp.set_num_threads(fastmlp._C.max_threads())\n"
   "try:\n    a = f32(300, 200); close(ops.matmul(a, a.T), ref64(a) @ ref64(a).T, 1e-4)\n"
   "    g = f32(5000, 64); close(ops.bias_grad(g), ref64(g).sum(0), 1e-4)\n"
   "finally:\n    fastmlp.set_num_threads(n0)")
raises("config.set_cpu_path-unknown", "fastmlp.set_cpu_path('sse9')", "ValueError", r"unknown CPU kernel path 'sse9'")
raises("config.set_cpu_path-none", "fastmlp.set_cpu_path(None)", "TypeError", r"must be a str, got NoneType")
raises("config.set_cpu_path-unsupported",
       "missing = [p for p in ('avx2', 'avx512') if p not in fastmlp.supported_cpu_paths()]\n"
       "if not missing: raise RuntimeError('not supported by this CPU (skip: all paths supported)')\n"
       "fastmlp.set_cpu_path(missing[0])", "RuntimeError", r"not supported by this CPU")


# ---- running the cases ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def results():
    todo = [(cid, c.code) for cid, c in CASES.items()]
    return run_cases(todo)


def check_result(cid, case, r):
    detail = r.get("tb") or r.get("stderr") or ""
    assert r["outcome"] not in ("crashed", "hung"), f"{cid}: interpreter {r['outcome']} (rc={r.get('rc')}):\n{detail}"
    if case.exc is None:
        assert r["outcome"] == "ok", f"{cid}: expected success, got {r.get('type')}: {r.get('msg')}\n{detail}"
    else:
        if r["outcome"] == "raised" and "(skip:" in r.get("msg", ""):
            pytest.skip(r["msg"])
        assert r["outcome"] == "raised", f"{cid}: expected {case.exc}, but the call succeeded"
        assert r["type"] == case.exc, f"{cid}: expected {case.exc}, got {r['type']}: {r['msg']}\n{detail}"
        assert re.search(case.match, r["msg"], re.S), \
            f"{cid}: {case.exc} message {r['msg']!r} does not match {case.match!r}"


@pytest.mark.parametrize("cid", list(CASES))
def test_bad_input(cid, results):
    case = CASES[cid]
    check_result(cid, case, results[cid])


# ---- the harness itself: a crash or a hang in a case is reported, and the rest still run -------

def test_harness_reports_crash_and_hang_and_continues():
    cases = [("a", "pass"), ("segv", "import ctypes; ctypes.string_at(0)"), ("b", "raise ValueError('x')"),
             ("abort", "import os; os.abort()"), ("c", "pass")]
    r = run_cases(cases)
    assert [r[c]["outcome"] for c in ("a", "segv", "b", "abort", "c")] == \
        ["ok", "crashed", "raised", "crashed", "ok"]
    r = run_cases([("hang", "import time; time.sleep(60)")], timeout=3)
    assert r["hang"]["outcome"] == "hung"


# ---- the command line ------------------------------------------------------------------------

def run_cli(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True,
                          timeout=timeout, env=_child_env(), **kw)


@pytest.mark.parametrize("args,fragment", [
    ((), "required"),
    (("bogus",), "invalid choice"),
    (("info", "--bogus"), "unrecognized arguments"),
])
def test_cli_bad_arguments(args, fragment):
    p = run_cli(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert fragment in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_environment_is_a_clear_import_error():
    env = _child_env()
    env["FASTMLP_CPU"] = "sse9"
    p = subprocess.run([sys.executable, "-c", "import fastmlp"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1 and "ValueError" in p.stderr and "unknown CPU kernel path 'sse9'" in p.stderr


def test_huge_omp_num_threads_is_clamped_not_a_crash():
    # libgomp segfaults when it cannot create the threads OMP_NUM_THREADS asks for; the kernels clamp.
    env = _child_env()
    env["OMP_NUM_THREADS"] = "100000"
    code = ("import numpy as np, fastmlp; from fastmlp import ops; a = np.ones((400, 300), np.float32); "
            "assert (ops.matmul(a, a.T) == 300).all(); assert (ops.bias_grad(np.ones((5000, 64), np.float32)) == 5000).all(); print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr[-3000:]
