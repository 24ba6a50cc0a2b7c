"""Reading a fastmlp model for the fused trainer by tracing one forward through the tape.

The fused trainer (:mod:`fastmlp.trainer`) runs a chain ``Linear -> activation -> Linear -> ...``
in native code. What that chain is, is read from what ``model(x)`` actually computes: one forward
on a small probe batch with recording on, then a walk of the recorded graph from the output back
to the probe input. Each node on the way must be

* a Linear (``x @ W.T + b``, possibly with an activation fused into it), whose weight and bias
  are leaf parameters, or
* an element-wise activation of the previous node's output (its kind read from the node), or
* a shape no-op (a reshape that keeps (n, features)), or
* a Dropout, or a LayerNorm / BatchNorm1d over the features (one per Linear, before or after
  its activation; the probe forward leaves the model's buffers as they were).

Anything else (an add of two branches, a concatenation, a multiplication by a tensor, a custom
op) is refused with the op's name, pointing to the eager loop. Because the trace follows the data,
a module instance used at two places, a block applied twice and layers called in another order
than they were registered are read exactly as the forward runs them; a parameter used twice (tied
weights, a Linear applied twice) is refused, since the native loop updates each layer's weight
on its own.

The chain is cached on the model and reused while no module under it changed: every Module
attribute write bumps :data:`fastmlp.nn.modules.STRUCTURE_VERSION`, and the cached chain also
checks that each parameter still holds the same array.
"""
from __future__ import annotations

import numpy as np

from . import autograd as _ag
from .ops import ACT_KINDS as _OPS_ACT_NAMES
from .tensor import Tensor, _wrap

__all__ = ["TraceError", "trace_layers", "cached", "cached_hit", "ACTIVATION_OF_NODE", "ACT_KINDS"]


class TraceError(ValueError):
    """The model's forward is not a chain the fused trainer can run (message names the op)."""


# Node class name -> (activation kind name, p0, p1) reader. An activation node class may instead
# define ``fused_act()`` returning (kind, p0, p1); a Linear node reports a fused activation
# through the same method (None when it has none).
def _relu_params(node):
    return ("relu", 0.0, 0.0)


ACTIVATION_OF_NODE = {
    "_ReluNode": _relu_params,
    "_Tanh": lambda node: ("tanh", 0.0, 0.0),
    "_Sigmoid": lambda node: ("sigmoid", 0.0, 0.0),
}

# The activation kinds of csrc/include/fastmlp/activation.h (enum Act), by name.
ACT_KINDS = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "gelu": 4, "gelu_tanh": 5,
             "silu": 6, "leaky_relu": 7, "elu": 8, "softplus": 9, "hardtanh": 10}
# Activations that commute with dropout's non-negative scaling (dropout before them is the same
# as after them).
_POSITIVELY_HOMOGENEOUS = ("relu", "leaky_relu", "identity")


def _kind_name(k):
    return _OPS_ACT_NAMES[int(k)]


def _act_node_params(node):
    """nn.functional's unfused activation node: saved = (z or y, kind, p0, p1)."""
    _, kind, p0, p1 = node.saved
    return (_kind_name(kind), float(p0), float(p1))


ACTIVATION_OF_NODE["_ActNode"] = _act_node_params


def _node_activation(node):
    """(kind, p0, p1) if ``node`` is an element-wise activation node, else None."""
    f = getattr(node, "fused_act", None)
    if f is not None and type(node).__name__ != "_LinearNode":
        return f()
    reader = ACTIVATION_OF_NODE.get(type(node).__name__)
    return reader(node) if reader is not None else None


def _node_dropout(node):
    """The probability p if ``node`` is a dropout node, else None."""
    if type(node).__name__ != "_DropoutNode":
        return None
    saved = node.saved
    if isinstance(saved, tuple) and len(saved) > 1:
        return float(saved[1])
    mask = saved[0]
    top = float(mask.max()) if mask.size else 0.0
    return 1.0 if top == 0.0 else float(1.0 - 1.0 / top)


def _linear_activation(node):
    """The activation fused into a Linear node (nn.functional's _LinearNode: ``act`` a kind index
    with ``act_p`` its parameters, or a ReLU when only ``y`` is set), or None."""
    k = getattr(node, "act", 0)
    if k:
        p = node.act_p or (0.0, 0.0)
        return (_kind_name(k), float(p[0]), float(p[1]))
    return ("relu", 0.0, 0.0) if getattr(node, "y", None) is not None else None


def _op_name(node):
    try:
        return node.name()
    except Exception:  # noqa: BLE001
        return type(node).__name__


def _param_owner(model):
    """id(parameter) -> 'name' for every parameter of ``model`` (names as named_parameters)."""
    out = {}
    for name, p in model.named_parameters():
        out.setdefault(id(p), name)
    return out


def _probe_candidates(model):
    """[(in_features, dtype)] of the Linear layers in registration order (distinct widths): the
    model's input width is one of them (the first Linear the forward applies)."""
    out, seen = [], set()
    for m in model.modules():
        if type(m).__name__ == "Linear" and getattr(m, "weight", None) is not None:
            f = int(m.weight.shape[1])
            if f not in seen:
                seen.add(f)
                out.append((f, m.weight._data.dtype))
    return out


def _host_stand_ins(model):
    """Swap every GPU parameter/buffer array of ``model`` for host zeros; returns what to restore."""
    swapped = []
    tensors = list(model.parameters())
    if hasattr(model, "buffers"):
        tensors += [b for b in model.buffers() if b is not None]
    for t in tensors:
        a = t._data
        if type(a) is not np.ndarray and hasattr(a, "__cuda_array_interface__"):
            swapped.append((t, a))
            t._data = np.zeros(a.shape, np.dtype(str(a.dtype)))
    return swapped


def _snapshot_buffers(model):
    """[(array, copy)] of every host buffer of ``model`` (restored in place after the probe)."""
    out = []
    if hasattr(model, "buffers"):
        for b in model.buffers():
            a = getattr(b, "_data", None)
            if type(a) is np.ndarray:
                out.append((a, a.copy()))
    return out


def _batchnorm_modules(model):
    """id(running_mean Tensor) -> the BatchNorm1d module owning it."""
    out = {}
    for m in model.modules():
        rm = getattr(m, "running_mean", None)
        if type(m).__name__ == "BatchNorm1d" and rm is not None:
            out[id(rm)] = m
    return out


def _node_norm(node, bns, owners):
    """A LayerNorm / BatchNorm1d node as a dict (``name``, ``kind`` 'layer'|'batch', ``weight``
    and ``bias`` Parameters or None, ``eps``; BatchNorm1d: ``batch_stats``, ``running_mean``,
    ``running_var`` Tensors or None, ``momentum``, ``cumulative``, ``num_batches_tracked``
    Tensor or None), or None for another node."""
    kind = type(node).__name__
    if kind not in ("_LayerNormNode", "_BatchNormNode"):
        return None
    saved = node.saved
    name = "LayerNorm" if kind == "_LayerNormNode" else "BatchNorm1d"
    xhat, axes = saved[0], saved[3]
    if xhat.ndim != 2 or tuple(axes) != ((1,) if kind == "_LayerNormNode" else (0,)):
        raise TraceError(f"fit: {name} is applied to a {xhat.ndim}-D value (or over other "
                         f"dimensions than the features); the fused trainer normalises "
                         f"(n, features) rows. " + HINT)
    has_w, has_b = (saved[4], saved[5]) if kind == "_LayerNormNode" else (saved[5], saved[6])
    ins = node.inputs
    w = ins[1] if has_w else None
    b = ins[1 + int(bool(has_w))] if has_b else None
    d = {"name": name, "kind": "layer" if kind == "_LayerNormNode" else "batch", "weight": w,
         "bias": b}
    if kind == "_LayerNormNode":
        d["eps"] = float(saved[6])
        return d
    eps, rm, rv, factor = saved[7], saved[8], saved[9], saved[10]
    d["eps"] = float(eps)
    d["batch_stats"] = bool(saved[4])
    mod = bns.get(id(rm)) if rm is not None else None
    if rm is not None and (mod is None or mod.running_var is not rv):
        raise TraceError("fit: a batch_norm's running statistics are not the buffers of a "
                         "BatchNorm1d of the model; the fused trainer updates a module's own "
                         "running_mean/running_var. " + HINT)
    if not d["batch_stats"]:
        rm, rv = mod.running_mean, mod.running_var  # eval mode: normalised with them
    d["running_mean"], d["running_var"] = rm, rv
    momentum = mod.momentum if mod is not None else factor
    d["cumulative"] = momentum is None
    d["momentum"] = 0.0 if momentum is None else float(momentum)
    d["num_batches_tracked"] = mod.num_batches_tracked if mod is not None else None
    return d


def _layer_ops_of(fwd, wname, fused):
    """The (activation, dropout p, norm) after the Linear with weight ``wname`` from the ops the
    forward applies after it, in order; the chain runs Linear -> [norm] -> act -> [norm] ->
    dropout (dropout may come before a positively homogeneous activation, which it commutes
    with; not before a norm)."""
    acts = [v for k, v in fwd if k == "act"]
    drops = [v for k, v in fwd if k == "drop"]
    norms = [v for k, v in fwd if k == "norm"]
    if len(acts) > 1:
        if fused:
            raise TraceError(f"fit: two activations follow the Linear layer with weight "
                             f"'{wname}' ({acts[0][0]} then {acts[1][0]}). " + HINT)
        raise TraceError(f"fit: two activations in a row ({acts[0][0]} then {acts[1][0]}) after "
                         f"the Linear layer with weight '{wname}'. " + HINT)
    if len(drops) > 1:
        raise TraceError(f"fit: two dropouts in a row after the Linear layer with weight "
                         f"'{wname}'. " + HINT)
    if len(norms) > 1:
        raise TraceError(f"fit: two normalisation layers ({norms[0]['name']} then "
                         f"{norms[1]['name']}) follow the Linear layer with weight '{wname}'; the "
                         f"fused trainer runs one per Linear layer. " + HINT)
    kinds = [k for k, _ in fwd]
    act = acts[0] if acts else None
    norm = dict(norms[0]) if norms else None
    if drops:
        i_d = kinds.index("drop")
        if act is not None and i_d < kinds.index("act") and act[0] not in _POSITIVELY_HOMOGENEOUS:
            raise TraceError(f"fit: dropout is applied before {act[0]} after the Linear layer "
                             f"with weight '{wname}'; the fused trainer applies dropout after "
                             f"the activation. " + HINT)
        if norm is not None and i_d < kinds.index("norm"):
            raise TraceError(f"fit: dropout is applied before {norm['name']} after the Linear "
                             f"layer with weight '{wname}'; the fused trainer applies dropout "
                             f"after the normalisation and the activation. " + HINT)
    if norm is not None:
        norm["before_act"] = act is None or kinds.index("norm") < kinds.index("act")
    return act, (drops[0] if drops else None), norm


HINT = ("fastmlp.fit runs chains of Linear layers with element-wise activations, Dropout, "
        "LayerNorm and BatchNorm1d between them; "
        "for any other model write the eager loop (fastmlp.nn / fastmlp.optim, as in PyTorch)")


def trace_layers(model, in_features=None):
    """Trace ``model`` and return its layers in forward order: a list of dicts
    ``{"weight": Parameter, "bias": Parameter|None, "act": (kind, p0, p1)|None,
    "dropout": p, "norm": dict|None (see _node_norm, plus "before_act"), "weight_name": str}``. ``in_features``: the input width (by default each Linear's input
    width is tried, in registration order, until a probe forward runs)."""
    cands = _probe_candidates(model)
    if not cands:
        raise TraceError(f"fit: {type(model).__name__} has no Linear layer. " + HINT)
    if in_features is not None:
        cands = [(int(in_features), cands[0][1])]
    for i, (f, dtype) in enumerate(cands):
        try:
            return _trace(model, f, dtype)
        except TraceError as e:
            if not getattr(e, "probe_failed", False) or i == len(cands) - 1:
                raise
    raise AssertionError("unreachable")


def _trace(model, in_features, dtype):
    rng = np.random.default_rng(20261201)
    probe = _wrap(rng.standard_normal((2, in_features)).astype(dtype), None, True)
    prev = _ag.GradMode.enabled
    _ag.GradMode.enabled = True
    # A model on the GPU is traced on the host: its GPU arrays are swapped for host stand-ins of
    # the same shape for the probe forward (the trace records which parameters are used, not
    # their values) and put back at once.
    swapped = _host_stand_ins(model)
    kept = _snapshot_buffers(model)  # a training-mode BatchNorm1d updates its buffers
    try:
        out = model(probe)
    except Exception as e:  # noqa: BLE001 - any failure: not a chain we can run
        err = TraceError(f"fit: running {type(model).__name__} on a probe batch of shape "
                         f"(2, {in_features}) failed ({type(e).__name__}: {e}). " + HINT)
        err.probe_failed = True  # trace_layers tries the next candidate width
        raise err from e
    finally:
        _ag.GradMode.enabled = prev
        for a, v in kept:
            a[...] = v
        for t, a in swapped:
            t._data = a
    if not isinstance(out, Tensor):
        raise TraceError(f"fit: {type(model).__name__}'s forward returned a "
                         f"{type(out).__name__}, not a Tensor. " + HINT)
    owners = _param_owner(model)
    bns = _batchnorm_modules(model)
    layers = []
    ops = []  # what follows the next Linear (met walking backwards): ("act"|"drop"|"norm", value)
    seen = {}

    def take_param(p, role):
        if p._node is not None or id(p) not in owners:
            raise TraceError(f"fit: a {role} is computed in the forward (not a parameter of the "
                             f"model). " + HINT)
        if id(p) in seen:
            raise TraceError(
                f"fit: parameter '{owners[id(p)]}' is used at two places in the forward "
                f"(a Linear applied twice or tied weights); the fused trainer updates "
                f"each layer separately. " + HINT)
        seen[id(p)] = True

    t = out
    while t is not probe:
        node = t._node
        if node is None:
            what = "a parameter or constant" if t.requires_grad is False or id(t) in owners \
                else "a tensor that does not come from the input"
            raise TraceError(f"fit: {type(model).__name__}'s output depends on {what} where the "
                             f"chain expects the input. " + HINT)
        kind = type(node).__name__
        if kind == "_LinearNode":
            ins = node.inputs
            w, b = ins[1], (ins[2] if len(ins) > 2 else None)
            for p, role in ((w, "weight"), (b, "bias")):
                if p is None:
                    continue
                if p._node is not None or id(p) not in owners:
                    raise TraceError(f"fit: a Linear layer's {role} is computed in the forward "
                                     f"(not a parameter of the model). " + HINT)
                take_param(p, role)
            fused = _linear_activation(node)
            fwd = ([("act", fused)] if fused is not None else []) + ops[::-1]
            act, drop, norm = _layer_ops_of(fwd, owners[id(w)], fused is not None)
            layers.append({"weight": w, "bias": b, "act": act, "dropout": drop or 0.0,
                           "norm": norm, "weight_name": owners[id(w)]})
            ops = []
            t = ins[0]
            continue
        p = _node_dropout(node)
        if p is not None:
            ops.append(("drop", p))
            t = node.inputs[0]
            continue
        norm = _node_norm(node, bns, owners)
        if norm is not None:
            for role in ("weight", "bias"):
                if norm[role] is not None:
                    take_param(norm[role], f"{norm['name']}'s {role}")
            ops.append(("norm", norm))
            t = node.inputs[0]
            continue
        act = _node_activation(node)
        if act is not None and len(node.inputs) >= 1:
            ops.append(("act", act))
            t = node.inputs[0]
            continue
        if kind in ("_Reshape", "_IdentityBackward") and len(node.inputs) == 1:
            src = node.inputs[0]
            if tuple(src.shape) == tuple(t.shape):
                t = src
                continue
        raise TraceError(f"fit: {type(model).__name__}'s forward applies {_op_name(node)}, which "
                         f"is not part of a Linear/activation chain. " + HINT)
    if ops:
        what, v = ops[-1]  # the first one the forward applies
        name = v[0] if what == "act" else ("dropout" if what == "drop" else v["name"])
        raise TraceError(f"fit: {type(model).__name__} applies {name} to its input "
                         f"before the first Linear layer. " + HINT)
    if not layers:
        raise TraceError(f"fit: {type(model).__name__}'s forward applies no Linear layer. " + HINT)
    layers.reverse()
    for i in range(1, len(layers)):
        if layers[i]["weight"].shape[1] != layers[i - 1]["weight"].shape[0]:
            raise TraceError("fit: the traced Linear layers do not form a chain. " + HINT)
    return layers


def cached_hit(model):
    """The chain :func:`cached` holds for ``model`` while it is still valid, else None."""
    hit = model.__dict__.get("_fastmlp_chain")
    if hit is not None and hit[0] == _STRUCTURE_VERSION[0]:
        for p, a in hit[2]:
            if p._data is not a:
                return None
        return hit[1]
    return None


def cached(model, build):
    """``build(model)`` cached on the model until its structure (or a parameter's array) changes.

    ``build`` returns ``(chain, params)``; the cache holds while no Module attribute was written
    anywhere (STRUCTURE_VERSION) and every parameter in ``params`` still holds the same array."""
    chain = cached_hit(model)
    if chain is not None:
        return chain
    chain, params = build(model)
    model.__dict__["_fastmlp_chain"] = (_STRUCTURE_VERSION[0], chain, [(p, p._data) for p in params])
    return chain


from .nn.modules import STRUCTURE_VERSION as _STRUCTURE_VERSION  # noqa: E402
