"""Hyperparameters checked in the precision the kernels compute in (float32): ``lr=1e39`` is finite
in Python but inf in float32, and would train to inf weights without an error; ``1e-50`` would
silently be 0. Used by ``fit``, ``optim.SGD`` and ``sklearn.MLPRegressor``."""
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
