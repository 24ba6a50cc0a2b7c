"""``optim.RMSprop``: torch.optim's update (alpha, eps, weight decay, momentum, centered,
maximize), every float32 CPU parameter of a group in ONE kernel call
(``fastmlp.ops.rmsprop_step_many``; the rule lives in csrc/include/fastmlp/optimizer.h)."""
from __future__ import annotations

import numpy as np

from .. import ops
from .. import hyperparams as hp
from .optimizer import Optimizer, grad_arrays, new_state_array


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        lr = hp.lr(lr)
        eps = hp.eps(eps)
        momentum = hp.nonnegative(momentum, "momentum")
        weight_decay = hp.nonnegative(weight_decay, "weight_decay")
        alpha = hp.alpha(alpha)
        hp.no_differentiable(differentiable, "RMSprop")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        state = self.state
        for group in self.param_groups:
            params, grads, fast = grad_arrays(group)
            if not params:
                continue
            momentum = float(group["momentum"])
            centered = group["centered"]
            sq, bufs, gavg, steps = [], [] if momentum > 0 else None, [] if centered else None, []
            for p in params:
                st = state.get(p)
                if not st:
                    st = state[p] = {"step": 0.0, "square_avg": new_state_array(p._data)}
                if momentum > 0 and "momentum_buffer" not in st:
                    st["momentum_buffer"] = new_state_array(p._data)
                if centered and "grad_avg" not in st:
                    st["grad_avg"] = new_state_array(p._data)
                st["step"] = t = float(st["step"]) + 1.0
                steps.append(int(t))
                sq.append(st["square_avg"]._data)
                if momentum > 0:
                    bufs.append(st["momentum_buffer"]._data)
                if centered:
                    gavg.append(st["grad_avg"]._data)
            opts = dict(lr=float(group["lr"]), alpha=float(group["alpha"]),
                        eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                        momentum=momentum, centered=centered, maximize=group["maximize"])
            arrays = [p._data for p in params]
            if fast:
                ops.rmsprop_step_many(arrays, grads, sq, bufs, gavg, steps, **opts)
            else:
                for i, a in enumerate(arrays):
                    _rmsprop_arrays(a, grads[i], sq[i], bufs[i] if bufs is not None else None,
                                    gavg[i] if centered else None, **opts)
        return loss


def _rmsprop_arrays(p, g, sq, buf, gavg, *, lr, alpha, eps, weight_decay, momentum, centered,
                    maximize):
    """The same update with array operations in the parameter's dtype (torch's order)."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    sq *= alpha
    sq += (1 - alpha) * g * g
    if centered:
        w = 1 - alpha
        if abs(w) < 0.5:
            gavg += w * (g - gavg)
        else:
            gavg[...] = g - (g - gavg) * (1 - w)
        avg = np.sqrt(sq + -1 * gavg * gavg)
    else:
        avg = np.sqrt(sq)
    avg = avg + eps
    if momentum > 0:
        buf *= momentum
        buf += g / avg
        p += -lr * buf
    else:
        p += -lr * g / avg
