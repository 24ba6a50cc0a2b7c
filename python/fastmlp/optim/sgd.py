"""``optim.SGD``: ``torch.optim.SGD``'s update (momentum, dampening, weight decay, Nesterov,
maximize), one compiled kernel per parameter — on the CPU all parameters of a group in one call
(``_C.sgd_step_many``, the same per-parameter kernel ``fastmlp.ops.sgd_step`` runs)."""
from __future__ import annotations

import numpy as np

from .. import _C, ops
from ..hyperparams import F32_MAX as _F32_MAX
from ..hyperparams import f32_problem
from ..tensor import _wrap
from .optimizer import Optimizer

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_sgd_many = _C.sgd_step_many


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None):
        if hasattr(lr, "item"):
            lr = lr.item()
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        for what, v in (("learning rate", lr), ("momentum value", momentum),
                        ("dampening value", dampening), ("weight_decay value", weight_decay)):
            _check_f32(what, v)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import enable_grad

            with enable_grad():
                loss = closure()
        state = self.state
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            dampening = group["dampening"]
            wd = group["weight_decay"]
            nesterov = group["nesterov"]
            maximize = group["maximize"]
            if nesterov and (momentum <= 0 or dampening != 0):
                raise ValueError("Nesterov momentum requires a momentum and zero dampening")
            if not (-_F32_MAX <= lr <= _F32_MAX and -_F32_MAX <= momentum <= _F32_MAX
                    and -_F32_MAX <= dampening <= _F32_MAX and -_F32_MAX <= wd <= _F32_MAX):
                for what, v in (("learning rate", lr), ("momentum value", momentum),
                                ("dampening value", dampening), ("weight_decay value", wd)):
                    _check_f32(what, v)  # a param_groups entry changed after construction
            params = []
            grads = []
            bufs = [] if momentum != 0 else None
            first = []
            slow = False
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                a = p._data
                ga = g._data
                if type(a) is not _ndarray or a.dtype is not _F32 or ga.dtype is not _F32:
                    slow = True
                params.append(a)
                grads.append(ga)
                if momentum != 0:
                    st = state.get(p)
                    if st is None:
                        st = state[p] = {}
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = _wrap(_empty_like(a))
                        first.append(True)
                    else:
                        first.append(False)
                    bufs.append(buf._data)
                else:
                    first.append(False)
            if not params:
                continue
            if not slow:
                _sgd_many(params, grads, bufs, first, lr, momentum, dampening, wd, nesterov,
                          maximize)
            else:
                many = getattr(ops, "sgd_step_many", None)
                if (many is not None and hasattr(params[0], "__cuda_array_interface__")
                        and all(p.dtype == _F32 for p in params) and len(set(first)) == 1):
                    # CUDA: one launch for the group (fastmlp.ops dispatches to the GPU kernels)
                    many(params, grads, bufs, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=wd, nesterov=nesterov, maximize=maximize, first_step=first[0])
                    continue
                for i, a in enumerate(params):
                    _sgd_one(a, grads[i], None if bufs is None else bufs[i], lr, momentum,
                             dampening, wd, nesterov, maximize, first[i])
        return loss


def _check_f32(what, v):
    """ValueError when the hyperparameter ``v`` is not a finite float32 (the kernels' precision)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return  # not a number: left to the arithmetic, as before
    except OverflowError:
        raise ValueError(f"Invalid {what}: {v} (overflows float32, the precision of the "
                         f"kernels)") from None
    why = f32_problem(f)
    if why:
        raise ValueError(f"Invalid {what}: {v} ({why})")


def _empty_like(a):
    return np.empty_like(a) if type(a) is _ndarray else a.copy()


def _sgd_one(p, g, buf, lr, momentum, dampening, wd, nesterov, maximize, first):
    if p.dtype == _F32 and g.dtype == _F32:  # CPU float32 or CUDA (fastmlp.ops dispatches)
        ops.sgd_step(p, g, buf, lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd,
                     nesterov=nesterov, maximize=maximize, first_step=first)
        return
    # float64 (or mixed) parameters: the same update with array ops
    d = -g if maximize else g
    if wd != 0:
        d = d + wd * p
    if momentum != 0:
        if first:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d
