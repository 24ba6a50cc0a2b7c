"""``clip_grad_norm_`` and ``clip_grad_value_`` with torch.nn.utils' semantics.

The norm of each gradient is taken in float64 (numpy), the total norm is the norm of those norms
(as PyTorch stacks them), and the gradients are scaled in place by
``min(1, max_norm / (total_norm + 1e-6))`` in their own dtype."""
from __future__ import annotations

import math

import numpy as np

from ...tensor import Tensor, _wrap


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _xp(a):
    if type(a) is np.ndarray:
        return np
    import cupy  # a GPU array: CuPy owns it

    return cupy


def _norm(a, p):
    xp = _xp(a)
    a = a.astype(xp.float64, copy=False)
    if a.size == 0:
        return 0.0
    if p == math.inf:
        return float(xp.abs(a).max())
    if p == -math.inf:
        return float(xp.abs(a).min())
    if p == 0:
        return float(xp.count_nonzero(a))
    if p == 2:
        return float(xp.sqrt(xp.sum(a * a)))
    if p == 1:
        return float(xp.sum(xp.abs(a)))
    return float(xp.sum(xp.abs(a) ** p) ** (1.0 / p))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type`` norm is at
    most ``max_norm``; returns the total norm (before clipping) as a 0-dim tensor."""
    grads = _grads(parameters)
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if len(grads) == 0:
        return _wrap(np.array(0.0, dtype=np.float32))
    dtype = grads[0]._data.dtype
    norms = np.array([_norm(g._data, norm_type) for g in grads], dtype=np.float64)
    total = _norm(norms, norm_type)
    total_t = np.array(total, dtype=dtype)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                           f"non-finite, so it cannot be clipped. To disable this error and scale "
                           f"the gradients by the non-finite norm anyway, set "
                           f"`error_if_nonfinite=False`")
    # as torch: the coefficient is computed from the total norm in the gradients' dtype
    coef = np.array(max_norm, dtype=dtype) / (total_t + np.array(1e-6, dtype=dtype))
    coef = min(float(coef), 1.0) if not math.isnan(float(coef)) else float(coef)
    for g in grads:
        a = g._data
        a *= a.dtype.type(coef)
    return _wrap(total_t)


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Deprecated spelling of :func:`clip_grad_norm_` (as in PyTorch)."""
    import warnings

    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient of ``parameters`` to [-clip_value, clip_value] in place."""
    v = float(clip_value)
    for g in _grads(parameters):
        a = g._data
        _xp(a).clip(a, -v, v, out=a)
