"""``optim.Adagrad``: torch.optim's update (lr_decay, weight decay, initial_accumulator_value,
eps, maximize), every float32 CPU parameter of a group in ONE kernel call
(``fastmlp.ops.adagrad_step_many``; the rule lives in csrc/include/fastmlp/optimizer.h)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import _wrap
from .. import hyperparams as hp
from .optimizer import Optimizer, grad_arrays


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        lr = hp.lr(lr)
        lr_decay = hp.nonnegative(lr_decay, "lr_decay")
        weight_decay = hp.nonnegative(weight_decay, "weight_decay")
        initial_accumulator_value = hp.nonnegative(initial_accumulator_value,
                                                   "initial_accumulator_value")
        eps = hp.eps(eps)
        hp.no_differentiable(differentiable, "Adagrad")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # As torch: the state exists from the start (step 0, sum = initial_accumulator_value).
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": 0.0, "sum": _full_like(p._data, group["initial_accumulator_value"])}

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        state = self.state
        for group in self.param_groups:
            params, grads, fast = grad_arrays(group)
            if not params:
                continue
            sums, steps = [], []
            for p in params:
                st = state.get(p)
                if not st:
                    st = state[p] = {"step": 0.0,
                                     "sum": _full_like(p._data, group["initial_accumulator_value"])}
                st["step"] = t = float(st["step"]) + 1.0
                steps.append(int(t))
                sums.append(st["sum"]._data)
            opts = dict(lr=float(group["lr"]), lr_decay=float(group["lr_decay"]),
                        eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                        maximize=group["maximize"])
            arrays = [p._data for p in params]
            if fast:
                ops.adagrad_step_many(arrays, grads, sums, steps, **opts)
            else:
                for i, a in enumerate(arrays):
                    _adagrad_arrays(a, grads[i], sums[i], steps[i], **opts)
        return loss


def _full_like(a, value):
    out = np.empty_like(a)
    out[...] = value
    return _wrap(out)


def _adagrad_arrays(p, g, s, step, *, lr, lr_decay, eps, weight_decay, maximize):
    """The same update with array operations in the parameter's dtype (torch's order)."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1 + (step - 1) * lr_decay)
    s += g * g
    p += -clr * g / (np.sqrt(s) + eps)
