"""What the general fused trainer runs: the loss, the optimizer and its state, as plain data.

:func:`resolve_loss` reads ``fit(loss=...)`` (a name or a loss module such as
``nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)``); :func:`resolve_optimizer` reads
``fit(optimizer=...)`` (a name with keyword hyper-parameters, or an ``optim.*`` instance whose
hyper-parameters and state fit uses and leaves updated, as the eager loop would). Both produce the
dicts csrc/bindings/mlp_spec.h parses. Hyper-parameters are checked by the optimizers' rules
(hyperparams.py: PyTorch's messages, float32 range).
"""
from __future__ import annotations

import numpy as np

from . import hyperparams as _hp

__all__ = ["LOSS_KINDS", "OPTIM_KINDS", "LossSpec", "OptimSpec", "resolve_loss", "resolve_optimizer"]

# csrc/include/fastmlp/loss.h (enum Loss) and optimizer.h (enum Optim).
LOSS_KINDS = {"mse": 0, "cross_entropy": 1, "bce_with_logits": 2, "l1": 3, "huber": 4, "smooth_l1": 5}
OPTIM_KINDS = {"sgd": 0, "adam": 1, "adamw": 2, "rmsprop": 3, "adagrad": 4}

_LOSS_ALIASES = {"mse": "mse", "mse_loss": "mse", "cross_entropy": "cross_entropy", "ce": "cross_entropy",
                 "crossentropy": "cross_entropy", "bce_with_logits": "bce_with_logits",
                 "l1": "l1", "mae": "l1", "huber": "huber", "smooth_l1": "smooth_l1"}
_LOSS_MODULES = {"MSELoss": "mse", "CrossEntropyLoss": "cross_entropy",
                 "BCEWithLogitsLoss": "bce_with_logits", "L1Loss": "l1", "HuberLoss": "huber",
                 "SmoothL1Loss": "smooth_l1"}


def _arr(v, name):
    if v is None:
        return None
    if hasattr(v, "_data"):
        v = v._data
    elif hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"fit: {name} must hold numbers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


class LossSpec:
    """A loss as the native trainer takes it."""

    def __init__(self, name, p0=1.0, class_weight=None, pos_weight=None, ignore_index=-100,
                 label_smoothing=0.0):
        self.name = name
        self.p0 = float(p0)
        self.class_weight = class_weight
        self.pos_weight = pos_weight
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    @property
    def classification(self):
        return self.name == "cross_entropy"

    def as_dict(self):
        return {"kind": LOSS_KINDS[self.name], "p0": self.p0, "ignore_index": self.ignore_index,
                "label_smoothing": self.label_smoothing}

    def value(self, pred, y, sample_weight=None):
        """The loss of predictions ``pred`` (n, out) on targets ``y`` in float64 (validation)."""
        p = pred.astype(np.float64)
        w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        if self.name == "cross_entropy":
            yi = np.asarray(y).astype(np.int64).reshape(-1)
            keep = yi != self.ignore_index
            m = p.max(axis=1, keepdims=True)
            logp = p - m - np.log(np.exp(p - m).sum(axis=1, keepdims=True))
            C = p.shape[1]
            cw = np.ones(C) if self.class_weight is None else self.class_weight.astype(np.float64)
            s = self.label_smoothing
            yk = np.where(keep, yi, 0)
            nll = -cw[yk] * logp[np.arange(len(yk)), yk]
            smooth = -(logp * cw).sum(axis=1)
            row = (1 - s) * nll + (s / C) * smooth
            wr = cw[yk]
            if w is not None:
                row, wr = row * w, wr * w
            row, wr = np.where(keep, row, 0.0), np.where(keep, wr, 0.0)
            return float(row.sum() / wr.sum()) if wr.sum() else float("nan")
        t = np.asarray(y, np.float64).reshape(p.shape)
        d = p - t
        if self.name == "mse":
            el = d * d
        elif self.name == "l1":
            el = np.abs(d)
        elif self.name == "huber":
            a = np.abs(d)
            el = np.where(a <= self.p0, 0.5 * d * d, self.p0 * (a - 0.5 * self.p0))
        elif self.name == "smooth_l1":
            a = np.abs(d)
            el = a if self.p0 == 0 else np.where(a < self.p0, 0.5 * d * d / self.p0, a - 0.5 * self.p0)
        else:  # bce_with_logits
            pw = 1.0 if self.pos_weight is None else self.pos_weight.astype(np.float64)
            lw = 1 + (pw - 1) * t
            el = (1 - t) * p + lw * (np.log1p(np.exp(-np.abs(p))) + np.maximum(-p, 0))
        if w is None:
            return float(el.mean())
        return float((el.sum(axis=1) * w).sum() / (w.sum() * el.shape[1]))


def resolve_loss(loss, out_features):
    """``fit(loss=...)`` as a :class:`LossSpec`: a name ('mse', 'cross_entropy',
    'bce_with_logits', 'l1', 'huber', 'smooth_l1') or a loss module instance."""
    if isinstance(loss, LossSpec):
        return loss
    if isinstance(loss, str):
        key = _LOSS_ALIASES.get(loss.lower())
        if key is None:
            raise ValueError(f"fit: unknown loss {loss!r}; expected one of "
                             f"{sorted(set(_LOSS_ALIASES.values()))} or a loss module "
                             f"(nn.MSELoss(), nn.CrossEntropyLoss(), ...)")
        return LossSpec(key)
    kind = type(loss).__name__
    key = _LOSS_MODULES.get(kind)
    if key is None:
        raise ValueError(f"fit: the fused trainer does not run the loss {kind}; it runs "
                         f"{', '.join(_LOSS_MODULES)} (or write the eager loop)")
    red = getattr(loss, "reduction", "mean")
    if red != "mean":
        raise ValueError(f"fit: {kind}(reduction={red!r}) is not supported by the fused trainer; "
                         f"it trains on the mean loss (reduction='mean')")
    spec = LossSpec(key)
    if key == "huber":
        spec.p0 = float(getattr(loss, "delta", 1.0))
    elif key == "smooth_l1":
        spec.p0 = float(getattr(loss, "beta", 1.0))
    elif key == "cross_entropy":
        w = getattr(loss, "weight", None)
        spec.class_weight = _arr(w, "CrossEntropyLoss.weight")
        if spec.class_weight is not None and spec.class_weight.shape != (out_features,):
            raise ValueError(f"fit: CrossEntropyLoss.weight has {spec.class_weight.size} entries but "
                             f"the model has {out_features} classes")
        spec.ignore_index = int(getattr(loss, "ignore_index", -100))
        spec.label_smoothing = float(getattr(loss, "label_smoothing", 0.0))
    elif key == "bce_with_logits":
        if getattr(loss, "weight", None) is not None:
            raise ValueError("fit: BCEWithLogitsLoss(weight=...) is not supported by the fused "
                             "trainer; pass per-sample weights as fit(sample_weight=...)")
        pw = getattr(loss, "pos_weight", None)
        spec.pos_weight = _arr(pw, "BCEWithLogitsLoss.pos_weight")
        if spec.pos_weight is not None:
            if spec.pos_weight.size == 1:
                spec.pos_weight = np.full(out_features, spec.pos_weight[0], np.float32)
            if spec.pos_weight.shape != (out_features,):
                raise ValueError(f"fit: BCEWithLogitsLoss.pos_weight has {spec.pos_weight.size} "
                                 f"entries but the model has {out_features} outputs")
    return spec


# Optimizer state names, per kind, in the order of the kernel's s0, s1, s2 (torch's names).
_STATE_NAMES = {"sgd": ("momentum_buffer", None, None),
                "adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                "adamw": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                "rmsprop": ("square_avg", "momentum_buffer", "grad_avg"),
                "adagrad": ("sum", None, None)}
_CLASS_KINDS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop",
                "Adagrad": "adagrad"}
_DEFAULTS = {
    "sgd": dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    "adam": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    "adamw": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    "rmsprop": dict(alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                    maximize=False),
    "adagrad": dict(lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                    maximize=False),
}


class OptimSpec:
    """An optimizer as the native trainer takes it, with its state arrays per parameter."""

    def __init__(self, name, lr, hyper, instance=None):
        self.name = name
        self.lr = lr
        self.hyper = hyper
        self.instance = instance
        self.state = {}  # id(param) -> [s0, s1, s2] arrays (or None)
        self.step = 0

    def as_dict(self, lr=None):
        h = self.hyper
        d = {"kind": OPTIM_KINDS[self.name], "lr": self.lr if lr is None else lr,
             "weight_decay": h.get("weight_decay", 0.0), "maximize": bool(h.get("maximize", False)),
             "eps": h.get("eps", 1e-8)}
        if self.name == "sgd":
            d.update(momentum=h["momentum"], dampening=h["dampening"], nesterov=bool(h["nesterov"]))
        elif self.name in ("adam", "adamw"):
            d.update(beta1=h["betas"][0], beta2=h["betas"][1], amsgrad=bool(h["amsgrad"]))
        elif self.name == "rmsprop":
            d.update(alpha=h["alpha"], momentum=h["momentum"], centered=bool(h["centered"]))
        else:
            d.update(lr_decay=h["lr_decay"])
        return d

    def needs(self):
        """Which of s0, s1, s2 this configuration uses."""
        h = self.hyper
        if self.name == "sgd":
            return (h["momentum"] != 0, False, False)
        if self.name in ("adam", "adamw"):
            return (True, True, bool(h["amsgrad"]))
        if self.name == "rmsprop":
            return (True, h["momentum"] > 0, bool(h["centered"]))
        return (True, False, False)

    def state_for(self, param, arr):
        """[s0, s1, s2] float32 arrays shaped like ``arr`` (created as the optimizer would)."""
        key = id(param)
        st = self.state.get(key)
        if st is None:
            need = self.needs()
            init = self.hyper.get("initial_accumulator_value", 0.0) if self.name == "adagrad" else 0.0
            st = [np.full(arr.shape, init, np.float32) if (k == 0 and need[0]) else
                  (np.zeros(arr.shape, np.float32) if need[k] else None) for k in range(3)]
            self.state[key] = st
        return st


def _check_hyper(name, h):
    if name in ("adam", "adamw"):
        b = h["betas"]
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ValueError(f"fit: betas must be a pair (beta1, beta2), got {b!r}")
        for i, v in enumerate(b):
            v = _hp.scalar(v, f"betas[{i}]")
            if not 0.0 <= v < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {v}")
        h["betas"] = (float(b[0]), float(b[1]))
    if "eps" in h:
        h["eps"] = _hp.eps(h["eps"])
    for k in ("weight_decay", "momentum", "dampening", "lr_decay", "initial_accumulator_value"):
        if k in h:
            h[k] = _hp.nonnegative(h[k], k)
    if name == "rmsprop":
        a = _hp.scalar(h["alpha"], "alpha")
        if not 0.0 <= a:
            raise ValueError(f"Invalid alpha value: {a}")
    if name == "sgd" and h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    return h


def resolve_optimizer(optimizer, lr, kwargs, chain_params):
    """``fit(optimizer=..., lr=..., **hyper)`` as an :class:`OptimSpec`.

    ``optimizer`` is a name ('sgd', 'adam', 'adamw', 'rmsprop', 'adagrad') with ``lr`` and the
    keyword hyper-parameters (PyTorch's names and defaults), or an ``optim`` instance built on
    the model's parameters: its single param group's hyper-parameters, its state (created if
    empty, as its first step would) and its step count are used, and left updated."""
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name not in OPTIM_KINDS:
            raise ValueError(f"fit: unknown optimizer {optimizer!r}; expected one of "
                             f"{sorted(OPTIM_KINDS)} or an optim instance")
        if lr is None:
            raise TypeError("fit: lr is required with a named optimizer")
        h = dict(_DEFAULTS[name])
        for k, v in kwargs.items():
            if k not in h:
                raise TypeError(f"fit: {k!r} is not a hyper-parameter of {name} (it takes "
                                f"{', '.join(sorted(h))})")
            h[k] = v
        return OptimSpec(name, _hp.lr(lr), _check_hyper(name, h))
    cls = type(optimizer).__name__
    name = _CLASS_KINDS.get(cls)
    if name is None or not hasattr(optimizer, "param_groups"):
        raise ValueError(f"fit: the fused trainer does not run the optimizer {cls}; it runs "
                         f"{', '.join(_CLASS_KINDS)} (or write the eager loop)")
    if kwargs or lr is not None:
        raise TypeError("fit: pass hyper-parameters either in the optimizer instance or as fit "
                        f"arguments, not both (got {sorted(kwargs) + (['lr'] if lr is not None else [])})")
    groups = optimizer.param_groups
    if len(groups) != 1:
        raise ValueError(f"fit: the optimizer has {len(groups)} param groups; the fused trainer "
                         f"runs one (use the eager loop for per-group settings)")
    g = groups[0]
    ids = {id(p) for p in g["params"]}
    missing = [i for i, p in enumerate(chain_params) if id(p) not in ids]
    if missing:
        raise ValueError("fit: the optimizer does not hold all of the model's parameters (it must "
                         "be built on model.parameters())")
    h = {k: g[k] for k in _DEFAULTS[name] if k in g}
    for k, v in _DEFAULTS[name].items():
        h.setdefault(k, v)
    spec = OptimSpec(name, _hp.lr(g["lr"]), _check_hyper(name, h), instance=optimizer)
    names = _STATE_NAMES[name]
    steps = set()
    for p in chain_params:
        st = optimizer.state.get(p) if hasattr(optimizer.state, "get") else None
        if not st:
            steps.add(0)
            continue
        arrs = []
        for n in names:
            v = st.get(n) if n else None
            if v is None:
                arrs.append(None)
                continue
            a = v._data if hasattr(v, "_data") else v
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
                raise ValueError(f"fit: the optimizer's state {n!r} is not a float32 CPU array")
            arrs.append(a)
        s = st.get("step", 0)
        steps.add(int(s.item() if hasattr(s, "item") else s))
        spec.state[id(p)] = arrs
    if name == "sgd" and spec.hyper["momentum"] != 0:
        # SGD has no step count: a parameter with a momentum buffer has taken a step.
        has = {spec.state.get(id(p), [None])[0] is not None for p in chain_params}
        if len(has) > 1:
            raise ValueError("fit: some parameters have SGD momentum buffers and some do not")
        spec.step = 1 if has == {True} else 0
    else:
        if len(steps) > 1:
            raise ValueError(f"fit: the optimizer's parameters are at different step counts "
                             f"{sorted(steps)}; the fused trainer steps them together")
        spec.step = steps.pop() if steps else 0
    # State a parameter already has must be complete for the configuration.
    need = spec.needs()
    for p in chain_params:
        st = spec.state.get(id(p))
        if st is not None and any(need[k] and st[k] is None for k in range(3)):
            if spec.step > 0:
                raise ValueError("fit: the optimizer's state is incomplete for its settings")
            spec.state.pop(id(p))
    return spec


def write_back_state(spec, chain_params):
    """Leave an optim instance's state as its own steps would have: the arrays the trainer
    updated under torch's names, and the step count."""
    opt = spec.instance
    if opt is None:
        return
    from .tensor import _wrap

    names = _STATE_NAMES[spec.name]
    for p in chain_params:
        arrs = spec.state.get(id(p))
        if arrs is None:
            continue
        st = opt.state[p] if p in opt.state else {}
        for n, a in zip(names, arrs):
            if n is None:
                continue
            if a is None:  # a state this configuration does not use
                continue
            cur = st.get(n)
            if cur is None or (getattr(cur, "_data", cur) is not a):
                st[n] = _wrap(a)
        if spec.name != "sgd":
            old = st.get("step")
            st["step"] = _wrap(np.array(float(spec.step), np.float32)) if old is None or hasattr(old, "_data") \
                else type(old)(spec.step)
        opt.state[p] = st
