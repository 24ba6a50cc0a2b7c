"""Hyperparameter rules, checked once, here (the one home of every float32 hyperparameter check).

The kernels compute in float32: a value Python (or PyTorch) accepts but float32 cannot hold is
refused naming the argument (``lr=1e39`` is finite in Python but inf in float32, and would train
to inf weights without an error; ``1e-50`` would silently be 0). Two families of callers:

- the whole-job faces (``fit``, the CLI, ``sklearn.MLPRegressor``): :func:`check_f32` and
  :func:`f32_problem`, messages ``"<where>: invalid <name>: ..."``;
- the optimizers (every ``__init__``, and ``step`` for values a user may change in
  ``param_groups`` between steps) and the training spec: :func:`lr`, :func:`eps`, :func:`betas`,
  ... with PyTorch's messages (``Invalid learning rate: -1``).

The kernels assume valid options.
"""
from __future__ import annotations

import math

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).smallest_subnormal)


def f32_problem(v):
    """Why the finite float ``v`` cannot be used as a float32 hyperparameter, or None."""
    if not math.isfinite(v):
        return "must be finite"
    if abs(v) > F32_MAX:
        return (f"overflows float32, the precision the kernels use (largest finite value "
                f"{F32_MAX:.6g})")
    if v != 0.0 and abs(v) < F32_TINY:
        return "underflows to 0 in float32, the precision the kernels use"
    return None


def check_f32(v, name, lo=0.0, where="fit"):
    """``v`` as a Python float that is a number >= lo and representable in float32, else
    TypeError/ValueError naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}: {name} must be a number, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:
        raise ValueError(f"{where}: invalid {name}: {v} overflows float32, the precision the "
                         f"kernels use") from None
    if not (f >= lo):
        raise ValueError(f"{where}: invalid {name}: {f} (must be finite and >= {lo})")
    why = f32_problem(f)
    if why:
        raise ValueError(f"{where}: invalid {name}: {f!r} {why}")
    return f


# ---- the optimizers' rules (PyTorch's messages) -------------------------------------------
def scalar(value, name):
    """``value`` as a Python float (0-dim tensors and numpy scalars accepted), or a TypeError."""
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or a one-element tensor, got "
                            f"{type(value).__name__}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        tn = type(value).__name__  # the comparison PyTorch's own check fails with, named
        raise TypeError(f"{name} must be a number, got {tn}: '<' not supported between "
                        f"instances of '{tn}' and 'float'")
    return float(value)


def _finite32(v, label):
    if not (abs(v) <= F32_MAX):
        raise ValueError(f"Invalid {label}: {v} (not a finite float32 value; the optimizer "
                         f"kernels compute in float32)")


def _nonnegative(value, name, label):
    """``value`` as a float >= 0 that float32 holds: ``Invalid <label>: <value>`` otherwise."""
    v = scalar(value, name)
    if not 0.0 <= v:
        raise ValueError(f"Invalid {label}: {value}")
    _finite32(v, label)
    return v


def lr(value):
    return _nonnegative(value, "lr", "learning rate")


def eps(value):
    return _nonnegative(value, "eps", "epsilon value")


def nonnegative(value, name):
    """weight_decay, momentum, lr_decay, ... : ``Invalid <name> value: <value>`` when < 0."""
    return _nonnegative(value, name, f"{name} value")


def betas(value):
    try:
        b = tuple(value)
    except TypeError:
        raise TypeError(f"betas must be a pair of floats, got {type(value).__name__}") from None
    if len(b) != 2:
        raise ValueError(f"betas must be a pair of floats (beta1, beta2), got {len(b)} values")
    out = []
    for i, x in enumerate(b):
        v = scalar(x, f"betas[{i}]")
        if not 0.0 <= v < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {x}")
        out.append(v)
    return tuple(out)


def alpha(value):
    return _nonnegative(value, "alpha", "alpha value")


def dampening(value):
    v = scalar(value, "dampening")
    if not math.isfinite(v):
        raise ValueError(f"Invalid dampening value: {value}")
    _finite32(v, "dampening value")
    return v


def nesterov(nesterov_, momentum, dampening_):
    if nesterov_ and (momentum <= 0 or dampening_ != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")


def sgd(lr_, momentum, dampening_, weight_decay, nesterov_):
    """The rules of torch.optim.SGD; returns (lr, momentum, dampening, weight_decay) as floats."""
    out = (lr(lr_), nonnegative(momentum, "momentum"), dampening(dampening_),
           nonnegative(weight_decay, "weight_decay"))
    nesterov(nesterov_, out[1], out[2])
    return out


def no_differentiable(differentiable, name):
    if differentiable:
        raise ValueError(f"{name}: differentiable=True (autograd through the optimizer step) is "
                         f"not supported by fastmlp; use differentiable=False")
