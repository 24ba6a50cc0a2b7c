"""``optim.Adam`` and ``optim.AdamW``: torch.optim's update (betas, eps, weight decay coupled or
decoupled, amsgrad, maximize), every float32 CPU parameter of a group in ONE kernel call
(``fastmlp.ops.adam_step_many``; the rule lives in csrc/include/fastmlp/optimizer.h)."""
from __future__ import annotations

import numpy as np

from .. import ops
from .. import hyperparams as hp
from .optimizer import Optimizer, grad_arrays, new_state_array

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        lr = hp.lr(lr)
        eps = hp.eps(eps)
        betas = hp.betas(betas)
        weight_decay = hp.nonnegative(weight_decay, "weight_decay")
        hp.no_differentiable(differentiable, type(self).__name__)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for g in self.param_groups:
            g.setdefault("amsgrad", False)
            g.setdefault("maximize", False)
            g.setdefault("decoupled_weight_decay", False)

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        state = self.state
        for group in self.param_groups:
            amsgrad = group["amsgrad"]
            params, grads, fast = grad_arrays(group)
            if not params:
                continue
            m, v, vmax, steps = [], [], [] if amsgrad else None, []
            for p in params:
                st = state.get(p)
                if not st:
                    st = state[p] = {"step": 0.0, "exp_avg": new_state_array(p._data),
                                     "exp_avg_sq": new_state_array(p._data)}
                if amsgrad and "max_exp_avg_sq" not in st:
                    st["max_exp_avg_sq"] = new_state_array(p._data)
                st["step"] = t = float(st["step"]) + 1.0
                steps.append(int(t))
                m.append(st["exp_avg"]._data)
                v.append(st["exp_avg_sq"]._data)
                if amsgrad:
                    vmax.append(st["max_exp_avg_sq"]._data)
            beta1, beta2 = group["betas"]
            opts = dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                        eps=float(group["eps"]), weight_decay=float(group["weight_decay"]),
                        amsgrad=amsgrad, maximize=group["maximize"],
                        decoupled_weight_decay=group.get("decoupled_weight_decay", False))
            arrays = [p._data for p in params]
            if fast:
                ops.adam_step_many(arrays, grads, m, v, vmax, steps, **opts)
            else:
                for i, a in enumerate(arrays):
                    _adam_arrays(a, grads[i], m[i], v[i], vmax[i] if amsgrad else None,
                                 steps[i], **opts)
        return loss


class AdamW(Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for g in self.param_groups:
            g["decoupled_weight_decay"] = True


def _adam_arrays(p, g, m, v, vmax, step, *, lr, beta1, beta2, eps, weight_decay, amsgrad,
                 maximize, decoupled_weight_decay):
    """The same update with array operations, in the parameter's dtype (float64 parameters, and
    GPU arrays where the CUDA kernels are not built), in torch's single-tensor order."""
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled_weight_decay:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
    w = 1 - beta1
    if abs(w) < 0.5:
        m += w * (g - m)
    else:
        m[...] = g - (g - m) * (1 - w)
    v *= beta2
    v += (1 - beta2) * g * g
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    s = v
    if amsgrad:
        np.maximum(vmax, v, out=vmax)
        s = vmax
    denom = np.sqrt(s) / bc2 ** 0.5 + eps
    p += (-(lr / bc1)) * m / denom
