"""``optim.SGD``: ``torch.optim.SGD``'s update (momentum, dampening, weight decay, Nesterov,
maximize), one compiled kernel per parameter — on the CPU all parameters of a group in one call
(``fastmlp.ops.sgd_step_many_cpu``, the same per-parameter kernel ``fastmlp.ops.sgd_step``
runs)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import _wrap
from .. import hyperparams as hp
from .optimizer import Optimizer

_check_nesterov = hp.nesterov
_F32_MAX = hp.F32_MAX

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_sgd_many = ops.sgd_step_many_cpu


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None):
        lr, momentum, dampening, weight_decay = hp.sgd(lr, momentum, dampening, weight_decay,
                                                       nesterov)
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
            if nesterov:  # a group edited after __init__: the same rule, checked here
                _check_nesterov(nesterov, momentum, dampening)
            if not (-_F32_MAX <= lr <= _F32_MAX and -_F32_MAX <= momentum <= _F32_MAX
                    and -_F32_MAX <= dampening <= _F32_MAX and -_F32_MAX <= wd <= _F32_MAX):
                hp.sgd(lr, momentum, dampening, wd, nesterov)  # an entry changed after __init__
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
