"""ONNX export and import of MLPs: :func:`export` writes a model as a standard ONNX graph,
:func:`load` reads an ONNX MLP back as an ``nn.Sequential``.

Needs the ``onnx`` package (``pip install fastmlp[onnx]``); ONNX Runtime is not needed here.

Export
------
``export(model, path, sample_input=None, dynamic_batch=True, opset=None)`` reads the model by
running one forward on ``sample_input`` (random rows when None) in eval mode and following what the
forward computed, from the output back to the input:

* every *leaf module* call is recorded (class name, input, output) while the forward runs; a module
  whose class name is a row of :data:`MODULE_ROWS` becomes that row's steps, read from its
  attributes (so layers defined elsewhere, or by PyTorch-compatible code with the same attribute
  names, export without an import from here);
* anything computed outside such modules (``fastmlp.relu(self.fc1(x))``, ``x.tanh()``,
  ``x.flatten(1)``, Sequential's fused Linear+ReLU) is read from the autograd tape: each ``Node``
  subclass by its name, in :data:`NODE_ROWS`.

While the forward runs, the model's module classes are wrapped to record calls (restored after;
so do not call the same classes from another thread during an export). The steps found are
evaluated in float64 numpy on the same sample and compared with what
``model(sample)`` returned; a mismatch (an op fused or computed in a way the trace did not show)
is an error, never a silently wrong file. Then each step is written with standard operators by its
row in :data:`STEP_KINDS`.

Adding a layer is one row: ``MODULE_ROWS["MyAct"] = lambda m, shape: [("leaky_relu",
{"negative_slope": m.slope})]`` when its math is an existing step kind, or a new
``STEP_KINDS["kind"] = (numpy_fn, emit_fn)`` plus the module row.

==============  ==============================  =====================================================
module          attributes read                 ONNX
==============  ==============================  =====================================================
Linear          weight, bias                    Gemm(transB=1) (2-D input) or MatMul + Add
ReLU            -                               Relu
Tanh, Sigmoid   -                               Tanh, Sigmoid
GELU            approximate ('none' / 'tanh')   Gelu (opset >= 20), else its erf / tanh formula
SiLU            -                               x * Sigmoid(x)
LeakyReLU       negative_slope                  LeakyRelu
ELU             alpha                           Elu
Softplus        beta (threshold: not written,   Softplus (with x*beta, /beta when beta != 1)
                its effect is < exp(-threshold))
Hardtanh        min_val, max_val                Clip
ReLU6           -                               Clip(0, 6)
Dropout         - (eval: identity)              nothing
Identity        -                               nothing
Flatten         start_dim, end_dim              Flatten (start_dim=1, to the end) or Reshape
LayerNorm       normalized_shape, weight, bias, LayerNormalization (opset >= 17)
                eps
BatchNorm1d     running_mean, running_var,      BatchNormalization (eval statistics)
                weight, bias, eps
Softmax         dim                             Softmax
LogSoftmax      dim                             LogSoftmax
==============  ==============================  =====================================================

Element-wise functions called outside modules are read from the tape when their node is in
:data:`NODE_ROWS` (relu, tanh, sigmoid, flatten/reshape of the trailing dimensions); a functional
call with parameters that only its module records (``F.gelu``, ``F.leaky_relu``, ...) is refused
with the node named: use the module form.

scikit-learn estimators (fastmlp's ``MLPRegressor`` / ``MLPClassifier`` and scikit-learn's own)
are exported from ``coefs_`` / ``intercepts_`` / ``activation`` / ``out_activation_``: a regressor
has one output ``predictions`` (n, n_outputs); a classifier has ``label`` (``predict``) and
``probabilities`` (``predict_proba``).

Every graph has one input ``input`` and names its outputs (``output`` for modules); the batch
dimension is symbolic (``batch``) unless ``dynamic_batch=False``; ``metadata_props`` records
``fastmlp_version`` (and ``producer_name`` is ``fastmlp``).

Import
------
``load(path)`` follows the graph from its input to its (float) output and maps each operator, or
small operator pattern, to a module: Gemm / MatMul(+Add) → Linear, Relu, Tanh, Sigmoid, LeakyRelu,
Elu, Softplus, Clip (→ ReLU6 / Hardtanh / ReLU), Gelu and its erf formula, x*Sigmoid(x) → SiLU,
Softmax, LogSoftmax, Flatten (and a Reshape to (batch, -1)), LayerNormalization,
BatchNormalization, Identity / Dropout / float Cast → nothing. It reads files written by this
module, by ``torch.onnx.export`` and by skl2onnx (MLPRegressor; MLPClassifier, whose
``probabilities`` output becomes the model's output). Any other operator is a ValueError naming
the operator type and its node.
"""
from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["export", "load", "MODULE_ROWS", "NODE_ROWS", "STEP_KINDS", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17  # LayerNormalization exists from 17; Gelu from 20 (its formula below)
MIN_OPSET = 13      # Softmax over one axis, Clip with tensor bounds


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError("fastmlp.onnx needs the onnx package: pip install fastmlp[onnx] "
                          "(or pip install onnx)") from e
    return onnx


def _arr(t):
    """A parameter / buffer / array as a float32 numpy array (a copy), or None."""
    if t is None:
        return None
    if hasattr(t, "detach") and hasattr(t, "cpu") and type(t).__module__.startswith("torch"):
        t = t.detach().cpu().numpy()
    data = getattr(t, "_data", t)
    if type(data) is not np.ndarray and hasattr(data, "get"):  # CuPy
        data = data.get()
    return np.array(data, dtype=np.float32, copy=True)


# ======================================================================================
# Module rows: class name -> steps. Each row gets (module, input shape) and returns a list
# of (step kind, params) in forward order.
# ======================================================================================

def _dim_default(dim, ndim):
    if dim is None:  # PyTorch's legacy implicit dim
        return 0 if ndim in (0, 1, 3) else 1
    return int(dim)


def _row_linear(m, shape):
    return [("linear", {"weight": _arr(m.weight), "bias": _arr(getattr(m, "bias", None))})]


def _row_layer_norm(m, shape):
    ns = getattr(m, "normalized_shape", None)
    ns = (shape[-1],) if ns is None else tuple(ns) if hasattr(ns, "__iter__") else (int(ns),)
    w, b = _arr(getattr(m, "weight", None)), _arr(getattr(m, "bias", None))
    if w is None:
        w = np.ones(ns, np.float32)
    if b is None:
        b = np.zeros(ns, np.float32)
    return [("layer_norm", {"weight": w.reshape(ns), "bias": b.reshape(ns),
                            "eps": float(getattr(m, "eps", 1e-5)), "ndims": len(ns)})]


def _row_batch_norm(m, shape):
    mean, var = _arr(getattr(m, "running_mean", None)), _arr(getattr(m, "running_var", None))
    if mean is None or var is None:
        raise ValueError(f"export: {type(m).__name__} without running statistics "
                         f"(track_running_stats=False) normalises with batch statistics even in "
                         f"eval mode, which an inference graph cannot do")
    c = mean.shape[0]
    w, b = _arr(getattr(m, "weight", None)), _arr(getattr(m, "bias", None))
    return [("batch_norm", {"mean": mean, "var": var,
                            "weight": np.ones(c, np.float32) if w is None else w,
                            "bias": np.zeros(c, np.float32) if b is None else b,
                            "eps": float(getattr(m, "eps", 1e-5))})]


MODULE_ROWS = {
    "Linear": _row_linear,
    "ReLU": lambda m, s: [("relu", {})],
    "Tanh": lambda m, s: [("tanh", {})],
    "Sigmoid": lambda m, s: [("sigmoid", {})],
    "GELU": lambda m, s: [("gelu", {"approximate": str(getattr(m, "approximate", "none"))})],
    "SiLU": lambda m, s: [("silu", {})],
    "LeakyReLU": lambda m, s: [("leaky_relu", {"negative_slope": float(getattr(m, "negative_slope", 0.01))})],
    "ELU": lambda m, s: [("elu", {"alpha": float(getattr(m, "alpha", 1.0))})],
    "Softplus": lambda m, s: [("softplus", {"beta": float(getattr(m, "beta", 1.0)),
                                            "threshold": float(getattr(m, "threshold", 20.0))})],
    "Hardtanh": lambda m, s: [("clip", {"min": float(getattr(m, "min_val", -1.0)),
                                        "max": float(getattr(m, "max_val", 1.0))})],
    "ReLU6": lambda m, s: [("clip", {"min": 0.0, "max": 6.0})],
    "Dropout": lambda m, s: [],  # the trace runs in eval mode: identity
    "Identity": lambda m, s: [],
    "Flatten": lambda m, s: [("flatten", {"start_dim": int(getattr(m, "start_dim", 1)),
                                          "end_dim": int(getattr(m, "end_dim", -1))})],
    "LayerNorm": _row_layer_norm,
    "BatchNorm1d": _row_batch_norm,
    "Softmax": lambda m, s: [("softmax", {"dim": _dim_default(getattr(m, "dim", None), len(s))})],
    "LogSoftmax": lambda m, s: [("log_softmax", {"dim": _dim_default(getattr(m, "dim", None), len(s))})],
}


# ======================================================================================
# Node rows: tape Node name -> steps (node, input shape, output shape).
# ======================================================================================

def _act_step(kind, p0, p1):
    """The export step of an activation of csrc/include/fastmlp/activation.h (kind by name)."""
    if kind == "gelu":
        return ("gelu", {"approximate": "none"})
    if kind == "gelu_tanh":
        return ("gelu", {"approximate": "tanh"})
    if kind == "leaky_relu":
        return ("leaky_relu", {"negative_slope": float(p0)})
    if kind == "elu":
        return ("elu", {"alpha": float(p0)})
    if kind == "softplus":
        return ("softplus", {"beta": float(p0), "threshold": float(p1)})
    if kind == "hardtanh":
        return ("clip", {"min": float(p0), "max": float(p1)})
    return (kind, {})  # relu, tanh, sigmoid, silu


def _node_linear(node, shape, out_shape):
    ins = node.inputs
    steps = [("linear", {"weight": _arr(ins[1]), "bias": _arr(ins[2]) if len(ins) == 3 else None})]
    k = getattr(node, "act", 0)
    if k:  # a fused Linear + activation (nn.functional records its kind and parameters)
        from .ops import ACT_KINDS

        p = node.act_p or (0.0, 0.0)
        steps.append(_act_step(ACT_KINDS[k], p[0], p[1]))
    elif getattr(node, "y", None) is not None:  # a fused Linear+ReLU
        steps.append(("relu", {}))
    return steps


def _node_act(node, shape, out_shape):
    """nn.functional's unfused activation node (saved = (z or y, kind, p0, p1))."""
    from .ops import ACT_KINDS

    _, kind, p0, p1 = node.saved
    return [_act_step(ACT_KINDS[kind], p0, p1)]


def _node_reshape(node, shape, out_shape):
    if tuple(shape) == tuple(out_shape):
        return []
    if len(shape) >= 2 and len(out_shape) >= 1 and out_shape[0] == shape[0]:
        # a flatten of dimensions after the batch: find start/end
        for s in range(1, len(shape)):
            for e in range(s, len(shape)):
                n = int(np.prod(shape[s:e + 1]))
                if tuple(shape[:s]) + (n,) + tuple(shape[e + 1:]) == tuple(out_shape):
                    return [("flatten", {"start_dim": s, "end_dim": e})]
    raise ValueError(f"export: a reshape from {tuple(shape)} to {tuple(out_shape)} is not a flatten "
                     f"of the dimensions after the batch dimension")


NODE_ROWS = {
    "_LinearNode": _node_linear,            # AddmmBackward0 / fused ReluBackward0
    "ReluBackward0": lambda n, s, o: [("relu", {})],
    "TanhBackward0": lambda n, s, o: _node_act(n, s, o) if type(n).__name__ == "_ActNode" else [("tanh", {})],
    "SigmoidBackward0": lambda n, s, o: _node_act(n, s, o) if type(n).__name__ == "_ActNode" else [("sigmoid", {})],
    "GeluBackward0": _node_act,
    "SiluBackward0": _node_act,
    "LeakyReluBackward0": _node_act,
    "EluBackward0": _node_act,
    "SoftplusBackward0": _node_act,
    "HardtanhBackward0": _node_act,
    "ViewBackward0": _node_reshape,
    "CloneBackward0": lambda n, s, o: [],
}


# ======================================================================================
# Step kinds: numpy (float64) evaluation and ONNX emission.
# ======================================================================================

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _np_softmax(x, dim):
    z = x - x.max(axis=dim, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=dim, keepdims=True)


def _np_flatten(x, p):
    s, e = p["start_dim"] % x.ndim, p["end_dim"] % x.ndim
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])


def _np_layer_norm(x, p):
    axes = tuple(range(x.ndim - p["ndims"], x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + p["eps"]) * p["weight"] + p["bias"]


def _np_batch_norm(x, p):
    shp = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - p["mean"].reshape(shp)) / np.sqrt(p["var"].reshape(shp) + p["eps"])
            * p["weight"].reshape(shp) + p["bias"].reshape(shp))


def _np_gelu(x, p):
    if p["approximate"] == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _np_softplus(x, p):
    b = p["beta"]
    with np.errstate(over="ignore"):
        return np.where(b * x > p["threshold"], x, np.logaddexp(0.0, b * x) / b)


def _sigm(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


class _Graph:
    """Nodes and initializers of the graph being written."""

    def __init__(self, opset):
        self.onnx = _onnx()
        self.opset = opset
        self.nodes = []
        self.inits = []
        self._n = {}

    def name(self, base):
        k = self._n.get(base, 0)
        self._n[base] = k + 1
        return f"{base}_{k}" if k else base

    def const(self, base, value, dtype=np.float32):
        from onnx import numpy_helper

        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type, inputs, base=None, outputs=None, **attrs):
        helper = self.onnx.helper
        base = base or op_type.lower()
        outs = outputs or [self.name(base)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type + "_" + base),
                                           **attrs))
        return outs[0]


def _emit_linear(g, x, p, rank):
    w, b = p["weight"], p["bias"]
    if rank == 2:
        ins = [x, g.const("weight", w)] + ([g.const("bias", b)] if b is not None else [])
        return g.op("Gemm", ins, base="linear", transB=1)
    wt = g.const("weight_t", np.ascontiguousarray(w.T))
    y = g.op("MatMul", [x, wt], base="matmul")
    return g.op("Add", [y, g.const("bias", b)], base="linear") if b is not None else y


def _emit_gelu(g, x, p, rank):
    if g.opset >= 20:
        return g.op("Gelu", [x], approximate=p["approximate"])
    half = g.const("half", 0.5)
    one = g.const("one", 1.0)
    if p["approximate"] == "tanh":
        c = g.const("gelu_c", math.sqrt(2 / math.pi))
        k = g.const("gelu_k", 0.044715)
        x3 = g.op("Mul", [g.op("Mul", [x, x]), x], base="cube")
        inner = g.op("Mul", [g.op("Add", [x, g.op("Mul", [x3, k])]), c])
        t = g.op("Add", [g.op("Tanh", [inner]), one])
    else:
        t = g.op("Add", [g.op("Erf", [g.op("Div", [x, g.const("sqrt2", math.sqrt(2))])]), one])
    return g.op("Mul", [g.op("Mul", [x, t]), half], base="gelu")


def _emit_softplus(g, x, p, rank):
    b = p["beta"]
    if b == 1.0:
        return g.op("Softplus", [x])
    bn = g.const("beta", b)
    return g.op("Div", [g.op("Softplus", [g.op("Mul", [x, bn])]), bn], base="softplus")


def _emit_flatten(g, x, p, rank, shape):
    s, e = p["start_dim"] % rank, p["end_dim"] % rank
    if s == 1 and e == rank - 1:
        return g.op("Flatten", [x], axis=1)
    dims = [0] * s + [-1] + [int(d) for d in shape[e + 1:]]
    return g.op("Reshape", [x, g.const("shape", dims, np.int64)], base="flatten")


def _emit_layer_norm(g, x, p, rank):
    if g.opset < 17:
        raise ValueError(f"export: LayerNorm needs opset >= 17 (LayerNormalization), got opset={g.opset}")
    return g.op("LayerNormalization", [x, g.const("ln_scale", p["weight"]), g.const("ln_bias", p["bias"])],
                base="layer_norm", axis=-p["ndims"], epsilon=p["eps"])


def _emit_batch_norm(g, x, p, rank):
    return g.op("BatchNormalization", [x, g.const("bn_scale", p["weight"]), g.const("bn_bias", p["bias"]),
                                       g.const("bn_mean", p["mean"]), g.const("bn_var", p["var"])],
                base="batch_norm", epsilon=p["eps"])


STEP_KINDS = {
    # kind: (numpy float64 forward(x, params), emit(graph, x name, params, rank[, shape]) -> name)
    "linear": (lambda x, p: x @ p["weight"].T.astype(np.float64)
               + (0 if p["bias"] is None else p["bias"]), _emit_linear),
    "relu": (lambda x, p: np.maximum(x, 0), lambda g, x, p, r: g.op("Relu", [x])),
    "tanh": (lambda x, p: np.tanh(x), lambda g, x, p, r: g.op("Tanh", [x])),
    "sigmoid": (lambda x, p: _sigm(x), lambda g, x, p, r: g.op("Sigmoid", [x])),
    "gelu": (_np_gelu, _emit_gelu),
    "silu": (lambda x, p: x * _sigm(x),
             lambda g, x, p, r: g.op("Mul", [x, g.op("Sigmoid", [x])], base="silu")),
    "leaky_relu": (lambda x, p: np.where(x > 0, x, x * p["negative_slope"]),
                   lambda g, x, p, r: g.op("LeakyRelu", [x], alpha=p["negative_slope"])),
    "elu": (lambda x, p: np.where(x > 0, x, p["alpha"] * np.expm1(np.minimum(x, 0))),
            lambda g, x, p, r: g.op("Elu", [x], alpha=p["alpha"])),
    "softplus": (_np_softplus, _emit_softplus),
    "clip": (lambda x, p: np.clip(x, p["min"], p["max"]),
             lambda g, x, p, r: g.op("Clip", [x, g.const("min", p["min"]), g.const("max", p["max"])])),
    "flatten": (_np_flatten, _emit_flatten),
    "layer_norm": (_np_layer_norm, _emit_layer_norm),
    "batch_norm": (_np_batch_norm, _emit_batch_norm),
    "softmax": (lambda x, p: _np_softmax(x, p["dim"]),
                lambda g, x, p, r: g.op("Softmax", [x], axis=p["dim"])),
    "log_softmax": (lambda x, p: np.log(_np_softmax(x, p["dim"])),
                    lambda g, x, p, r: g.op("LogSoftmax", [x], axis=p["dim"])),
}

_NEEDS_SHAPE = {"flatten"}


# ======================================================================================
# Reading a fastmlp model: trace one forward.
# ======================================================================================

class _Rec:
    __slots__ = ("module", "name", "inp", "out", "used")

    def __init__(self, module, name, inp, out):
        self.module, self.name, self.inp, self.out, self.used = module, name, inp, out, False


def _record_calls(model, run):
    """Run ``run()`` with every module class in ``model`` recording its calls; the records."""
    from .tensor import Tensor

    names = {}
    for n, m in model.named_modules():
        names.setdefault(id(m), n or type(m).__name__)
    classes = []
    for m in model.modules():
        if type(m) not in classes:
            classes.append(type(m))
    originals = [(c, c.__dict__.get("__call__"), c.__call__) for c in classes]
    recs = []

    def make(orig):
        def __call__(self, *args, **kwargs):
            out = orig(self, *args, **kwargs)
            if len(args) == 1 and not kwargs and isinstance(args[0], Tensor) and isinstance(out, Tensor):
                recs.append(_Rec(self, names.get(id(self), type(self).__name__), args[0], out))
            return out
        return __call__

    try:
        for c, _, resolved in originals:
            c.__call__ = make(resolved)
        out = run()
    finally:
        for c, own, _ in originals:
            if own is None:
                del c.__call__
            else:
                c.__call__ = own
    return out, recs


def _sample_for(model, sample_input):
    from .tensor import Tensor

    if sample_input is not None:
        a = sample_input
        if isinstance(a, Tensor):
            a = a._data
            a = a.get() if type(a) is not np.ndarray and hasattr(a, "get") else a
        elif hasattr(a, "detach") and hasattr(a, "cpu"):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(a), dtype=np.float32)
        if a.ndim < 1:
            raise ValueError(f"export: sample_input must have a batch dimension, got shape {a.shape}")
        return a
    first = next((m for m in model.modules() if type(m).__name__ == "Linear"), None)
    if first is None:
        raise ValueError("export: the model has no Linear layer to read the input width from; "
                         "pass sample_input")
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, int(first.weight.shape[1]))).astype(np.float32)


def _trace_steps(model, sample):
    """(steps, input shape, output array) of ``model`` on ``sample``: steps in forward order, each
    (kind, params, input shape)."""
    from . import autograd
    from .nn.functional import _LinearNode
    from .tensor import Tensor

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    from .tensor import tensor as _make

    x = _make(sample.copy())
    p0 = next(iter(model.parameters()), None)
    if p0 is not None and str(p0.device) != "cpu":  # trace where the model lives
        x = x.to(p0.device)
    x.requires_grad_(True)
    try:
        with autograd.enable_grad():
            out, recs = _record_calls(model, lambda: model(x))
    finally:
        for m, t in modes:
            m.__dict__["training"] = t
    if not isinstance(out, Tensor):
        raise TypeError(f"export: the model's forward returned a {type(out).__name__}; one Tensor "
                        f"output is supported")
    by_out = {}
    for r in recs:
        by_out.setdefault(id(r.out), []).append(r)
    steps_rev = []
    cur = out
    guard = 0
    while cur is not x:
        guard += 1
        if guard > 100000:
            raise RuntimeError("export: the traced graph has a cycle")
        node = cur._node
        here = [r for r in reversed(by_out.get(id(cur), [])) if not r.used]
        shape = tuple(cur._data.shape)
        # calls that returned their own input (eval Dropout, Identity, an in-place activation)
        for r in here:
            if r.inp is cur:
                r.used = True
                k = type(r.module).__name__
                if type(node) is _LinearNode and (node.y is not None or getattr(node, "act", 0)) \
                        and k in MODULE_ROWS and k != "Linear":
                    continue  # fused into the Linear's node: the node row adds the activation
                if k not in MODULE_ROWS:
                    continue  # a container or pass-through
                steps_rev.extend((s, p, shape) for s, p in reversed(MODULE_ROWS[k](r.module, shape)))
        rec = next((r for r in here if r.inp is not cur and not r.used
                    and type(r.module).__name__ in MODULE_ROWS), None)
        if rec is not None and not (type(node) is _LinearNode and type(rec.module).__name__ == "Linear"):
            for r in here:
                r.used = True
            in_shape = tuple(rec.inp._data.shape)
            k = type(rec.module).__name__
            steps_rev.extend((s, p, in_shape) for s, p in reversed(MODULE_ROWS[k](rec.module, in_shape)))
            cur = rec.inp
            continue
        if node is None:
            raise ValueError("export: the model's output does not come from its input through "
                             "recorded operations (is the forward detached, or under no_grad?)")
        key = "_LinearNode" if type(node) is _LinearNode else node.name()
        row = NODE_ROWS.get(key)
        if row is None:
            owner = next((r for r in by_out.get(id(cur), []) if type(r.module).__name__ not in
                          ("Sequential", "ModuleList")), None)
            where = (f" in module {owner.name!r} ({type(owner.module).__name__})" if owner is not None
                     else "")
            raise ValueError(f"export: unsupported operation {node.name()}{where}: fastmlp.onnx exports "
                             f"{', '.join(sorted(MODULE_ROWS))} modules and the functions "
                             f"relu/tanh/sigmoid/flatten (functional calls with parameters, such as "
                             f"F.gelu, export in their module form)")
        src = node.inputs[0]
        for r in here:
            r.used = True
        in_shape = tuple(src._data.shape)
        steps_rev.extend((s, p, in_shape) for s, p in reversed(row(node, in_shape, shape)))
        cur = src
    steps = list(reversed(steps_rev))
    o = out._data
    o = o.get() if type(o) is not np.ndarray and hasattr(o, "get") else o
    return steps, np.asarray(o)


def _run_steps(steps, x):
    a = np.asarray(x, dtype=np.float64)
    for kind, p, _ in steps:
        a = STEP_KINDS[kind][0](a, p)
    return a


def _check_reproduces(steps, sample, got):
    want = _run_steps(steps, sample)
    got = np.asarray(got, dtype=np.float64)
    if want.shape != got.shape or not np.allclose(got, want, rtol=1e-3,
                                                  atol=1e-4 * max(1.0, float(np.abs(want).max()))):
        kinds = " -> ".join(k for k, _, _ in steps) or "(nothing)"
        diff = (float(np.abs(got - want).max()) if want.shape == got.shape
                else f"shape {got.shape} vs {want.shape}")
        raise ValueError(f"export: the operations read from the model ({kinds}) do not reproduce its "
                         f"forward on the sample (difference {diff}); an operation is computed in a "
                         f"way the trace does not show")


# ======================================================================================
# Writing the graph.
# ======================================================================================

def _resolve_opset(opset):
    onnx = _onnx()
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"export: opset must be an int, got {type(opset).__name__}")
    hi = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= hi:
        raise ValueError(f"export: opset must be between {MIN_OPSET} and {hi} (the installed onnx), "
                         f"got {opset}")
    return int(opset)


def _emit_steps(g, x, steps):
    for kind, p, shape in steps:
        emit = STEP_KINDS[kind][1]
        x = emit(g, x, p, len(shape), shape) if kind in _NEEDS_SHAPE else emit(g, x, p, len(shape))
    return x


def _finish(g, in_shape, outputs, dynamic_batch, batch, doc, meta=None):
    """The ModelProto: one float input ``input``; ``outputs`` = [(tensor name, output name, elem
    type, shape)]."""
    from . import __version__

    onnx = g.onnx
    helper = onnx.helper
    bdim = "batch" if dynamic_batch else int(batch)
    inp = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [bdim] + list(in_shape))
    outs = []
    for tname, oname, et, shape in outputs:
        if tname != oname:
            # rename the producing node's output (or add an Identity when it is the input)
            prod = next((n for n in g.nodes if tname in n.output), None)
            if prod is None:
                g.op("Identity", [tname], outputs=[oname])
            else:
                prod.output[list(prod.output).index(tname)] = oname
                for n in g.nodes:
                    for i, v in enumerate(n.input):
                        if v == tname:
                            n.input[i] = oname
        outs.append(helper.make_tensor_value_info(oname, et, [bdim] + list(shape)))
    graph = helper.make_graph(g.nodes, "fastmlp", [inp], outs, initializer=g.inits, doc_string=doc)
    opsets = [helper.make_opsetid("", g.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastmlp",
                              producer_version=__version__)
    try:
        model.ir_version = helper.find_min_ir_version_for(opsets)
    except Exception:  # noqa: BLE001 - keep make_model's default
        pass
    props = {"fastmlp_version": __version__}
    props.update(meta or {})
    helper.set_model_props(model, {k: str(v) for k, v in props.items()})
    onnx.checker.check_model(model)
    return model


def _save(model, path):
    onnx = _onnx()
    if path is None:
        return model
    try:
        onnx.save(model, os.fspath(path) if not hasattr(path, "write") else path)
    except OSError as e:
        raise OSError(f"export: cannot write {path}: {e.strerror or e}") from None
    return model


def _is_estimator(model):
    return hasattr(model, "coefs_") or (hasattr(model, "get_params") and hasattr(model, "fit")
                                        and hasattr(model, "predict"))


_SK_ACT = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": None}


def _export_estimator(est, opset, dynamic_batch):
    onnx = _onnx()
    if not hasattr(est, "coefs_"):
        raise ValueError(f"export: {type(est).__name__} is not fitted (no coefs_); call fit first")
    act = getattr(est, "activation", "relu")
    if act not in _SK_ACT:
        raise ValueError(f"export: {type(est).__name__}.activation={act!r} is not supported "
                         f"(relu, tanh, logistic, identity)")
    steps = []
    coefs, intercepts = list(est.coefs_), list(est.intercepts_)
    n_in = int(np.shape(coefs[0])[0])
    for i, (c, b) in enumerate(zip(coefs, intercepts)):
        c = np.asarray(c, dtype=np.float32)
        steps.append(("linear", {"weight": np.ascontiguousarray(c.T),
                                 "bias": np.asarray(b, np.float32).reshape(-1)}, (1, c.shape[0])))
        if i < len(coefs) - 1 and _SK_ACT[act] is not None:
            steps.append((_SK_ACT[act], {}, (1, c.shape[1])))
    g = _Graph(opset)
    z = _emit_steps(g, "input", steps)
    n_out = int(np.shape(coefs[-1])[1])
    out_act = getattr(est, "out_activation_", "identity")
    doc = f"{type(est).__module__}.{type(est).__name__} exported by fastmlp.onnx"
    meta = {"estimator": f"{type(est).__module__}.{type(est).__name__}"}
    if not hasattr(est, "classes_"):
        if out_act != "identity":
            raise ValueError(f"export: a regressor with out_activation_={out_act!r} is not supported")
        return _finish(g, [n_in], [(z, "predictions", onnx.TensorProto.FLOAT, [n_out])],
                       dynamic_batch, 1, doc, meta)
    return _finish(g, [n_in], _class_outputs(g, z, np.asarray(est.classes_), out_act, n_out),
                   dynamic_batch, 1, doc, meta)


def _class_outputs(g, z, classes, out_act, n_out):
    """The ``label`` and ``probabilities`` outputs of a classifier from its logits ``z``:
    out_act 'softmax' (one logit per class), 'logistic' with one output (binary: [1 - p, p]) or
    several (multilabel: a 0/1 label per output). For _finish."""
    onnx = g.onnx
    if out_act == "softmax":
        probs = g.op("Softmax", [z], axis=1)
        multilabel = False
    elif out_act == "logistic" and n_out == 1:  # binary: [1 - p, p]
        p = g.op("Sigmoid", [z])
        probs = g.op("Concat", [g.op("Sub", [g.const("one", 1.0), p]), p], axis=1)
        multilabel = False
    elif out_act == "logistic":
        probs = g.op("Sigmoid", [z])
        multilabel = True
    else:
        raise ValueError(f"export: a classifier with out_activation_={out_act!r} is not supported")
    if multilabel:
        label = g.op("Cast", [g.op("Greater", [probs, g.const("half", 0.5)])],
                     to=onnx.TensorProto.INT64)
        lab_t, lab_shape = onnx.TensorProto.INT64, [n_out]
    else:
        idx = g.op("ArgMax", [probs], axis=1, keepdims=0)
        if classes.dtype.kind in "iub":
            cls_name, lab_t = g.const("classes", classes, np.int64), onnx.TensorProto.INT64
        elif classes.dtype.kind == "f":
            cls_name, lab_t = g.const("classes", classes, np.float32), onnx.TensorProto.FLOAT
        else:
            from onnx import numpy_helper

            cls_name = g.name("classes")
            g.inits.append(numpy_helper.from_array(np.array([str(c) for c in classes], dtype=object),
                                                   cls_name))
            lab_t = onnx.TensorProto.STRING
        label = g.op("Gather", [cls_name, idx], base="label", axis=0)
        lab_shape = []
    n_prob = n_out if multilabel or out_act == "softmax" else 2
    return [(label, "label", lab_t, lab_shape),
            (probs, "probabilities", onnx.TensorProto.FLOAT, [n_prob])]


def export(model, path, sample_input=None, dynamic_batch=True, opset=None):
    """Write ``model`` to ``path`` as ONNX; returns the ``onnx.ModelProto`` (``path=None``: only
    return it).

    ``model``: a fastmlp ``nn.Module`` (see the module docstring for what it may hold) or a fitted
    scikit-learn MLP estimator (fastmlp's or scikit-learn's). ``sample_input``: an example batch
    (array or Tensor) that fixes the non-batch input shape; None uses 4 random rows of the first
    Linear layer's width. ``dynamic_batch``: a symbolic batch dimension (else the sample's batch
    size). ``opset``: the ONNX opset (default :data:`DEFAULT_OPSET`; 20+ writes GELU as ``Gelu``).
    """
    opset = _resolve_opset(opset)
    from .nn.modules import Module

    if not isinstance(model, Module):
        if _is_estimator(model):
            return _save(_export_estimator(model, opset, dynamic_batch), path)  # (no trace: no sample)
        raise TypeError(f"export: model must be a fastmlp nn.Module or a fitted scikit-learn MLP "
                        f"estimator, got {type(model).__name__}")
    sample = _sample_for(model, sample_input)
    steps, got = _trace_steps(model, sample)
    if not steps:
        raise ValueError("export: the model computes nothing from its input (no operation found)")
    _check_reproduces(steps, sample, got)
    g = _Graph(opset)
    y = _emit_steps(g, "input", steps)
    model_proto = _finish(g, sample.shape[1:], [(y, "output", g.onnx.TensorProto.FLOAT, got.shape[1:])],
                          dynamic_batch, sample.shape[0], f"{type(model).__name__} exported by fastmlp.onnx")
    return _save(model_proto, path)


def export_chain(path, weights, biases, relu, meta=None, opset=None, dynamic_batch=True, acts=None,
                 classes=None):
    """A chain of Linear layers given as arrays (weights (out, in)) as ONNX: what the CLI's
    ``export`` subcommand writes for a model.npz. ``relu``: a ReLU after each layer, or ``acts``:
    each layer's activation as (kind, p0, p1) of csrc/include/fastmlp/activation.h, or None.
    Without ``classes`` the graph's output ``output`` is the last layer's; with ``classes`` (a
    classifier: one logit per class, or one logit for two classes) it returns ``label`` (the
    class, its value from ``classes``) and ``probabilities`` (n, classes), as an exported
    scikit-learn classifier does."""
    opset = _resolve_opset(opset)
    if acts is None:
        acts = [("relu", 0.0, 0.0) if r else None for r in relu]
    steps = []
    for w, b, a in zip(weights, biases, acts):
        w = np.asarray(w, np.float32)
        steps.append(("linear", {"weight": w, "bias": None if b is None else np.asarray(b, np.float32)},
                      (1, w.shape[1])))
        if a is not None and a[0] != "identity":
            kind, p = _act_step(a[0], a[1], a[2])
            steps.append((kind, p, (1, w.shape[0])))
    g = _Graph(opset)
    y = _emit_steps(g, "input", steps)
    n_out = int(np.shape(weights[-1])[0])
    if classes is None:
        outputs = [(y, "output", g.onnx.TensorProto.FLOAT, [n_out])]
    else:
        classes = np.asarray(classes)
        if n_out not in (1, len(classes)):
            raise ValueError(f"export: {len(classes)} classes but the last layer has {n_out} outputs")
        outputs = _class_outputs(g, y, classes, "logistic" if n_out == 1 else "softmax", n_out)
    m = _finish(g, [int(np.shape(weights[0])[1])], outputs, dynamic_batch, 1,
                "fastmlp CLI model exported by fastmlp.onnx", meta)
    return _save(m, path)


# ======================================================================================
# Import: an ONNX MLP as nn.Sequential.
# ======================================================================================

def _attrs(node):
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constant_value(node):
    from onnx import numpy_helper

    a = _attrs(node)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for k in ("value_float", "value_int"):
        if k in a:
            return np.asarray(a[k])
    for k in ("value_floats", "value_ints"):
        if k in a:
            return np.asarray(list(a[k]))
    raise ValueError(f"load: Constant node {node.name!r} has no supported value attribute")


def _err(node, why=None):
    return ValueError(f"load: unsupported operator {node.op_type} (node {node.name or '<unnamed>'!r})"
                      + (f": {why}" if why else "") + ". fastmlp.onnx.load reads MLPs made of Gemm, "
                      "MatMul+Add, Relu, Tanh, Sigmoid, LeakyRelu, Elu, Softplus, Clip, Gelu (or its erf "
                      "formula), x*Sigmoid(x), Softmax, LogSoftmax, Flatten, LayerNormalization, "
                      "BatchNormalization, Identity, Dropout")


class _Loader:
    def __init__(self, model):
        from onnx import numpy_helper

        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        nodes = []
        for n in g.node:
            if n.op_type == "Constant":
                self.consts[n.output[0]] = _constant_value(n)
            else:
                nodes.append(n)
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ValueError(f"load: an MLP graph has one input, this one has {len(inputs)} "
                             f"({', '.join(i.name for i in inputs)})")
        self.input = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.in_shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        out = self._pick_output(g, nodes)
        producer = {o: n for n in nodes for o in n.output}
        need, stack = set(), [out]
        while stack:
            t = stack.pop()
            n = producer.get(t)
            if n is not None and id(n) not in need:
                need.add(id(n))
                stack.extend(n.input)
        dep = {self.input}
        self.nodes = []
        for n in nodes:
            if id(n) not in need:
                continue
            if any(i in dep for i in n.input):
                self.nodes.append(n)
                dep.update(o for o in n.output if o)
            else:
                raise _err(n, "it computes a value the MLP's weights would need at load time")
        self.out = out
        self.count = {}
        for n in self.nodes:
            for i in n.input:
                self.count[i] = self.count.get(i, 0) + 1
        self.count[out] = self.count.get(out, 0) + 1  # the graph output stays open to the end

    def _pick_output(self, g, nodes):
        import onnx

        producer = {o: n for n in nodes for o in n.output}
        cands = []
        for o in g.output:
            name = o.name
            p = producer.get(name)
            if p is not None and p.op_type == "ZipMap":  # skl2onnx's dict of probabilities
                name = p.input[0]
            elif o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                continue
            cands.append((o.name, name))
        if not cands:
            raise ValueError("load: the graph has no float tensor output")
        for oname, name in cands:
            if "prob" in oname:
                return name
        return cands[0][1]

    def regions(self):
        """Single-entry single-exit runs of nodes, in order: (entry tensor, nodes, exit tensor)."""
        i, cur = 0, self.input
        while i < len(self.nodes):
            open_ = {cur: self.count.get(cur, 0)}
            region = []
            while i < len(self.nodes):
                n = self.nodes[i]
                i += 1
                region.append(n)
                for t in n.input:
                    if t in open_:
                        open_[t] -= 1
                        if open_[t] <= 0:
                            del open_[t]
                for o in n.output:
                    if o and self.count.get(o, 0) > 0:
                        open_[o] = self.count[o]
                if len(open_) == 1 and cur not in open_:
                    break
            if len(open_) != 1:
                raise _err(region[-1], "the graph is not a chain of layers")
            nxt = next(iter(open_))
            yield cur, region, nxt
            cur = nxt
        if cur != self.out:
            raise ValueError(f"load: the chain from {self.input!r} does not reach the output {self.out!r}")

    def const(self, node, idx, what):
        if idx >= len(node.input) or node.input[idx] == "":
            return None
        name = node.input[idx]
        if name not in self.consts:
            raise _err(node, f"its {what} ({name!r}) is not a constant")
        return np.asarray(self.consts[name])


def _region_eval(loader, entry, region, exit_, x):
    """Run a few nodes with onnx's reference evaluator (for matching multi-node patterns)."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    used = {i for n in region for i in n.input if i in loader.consts}
    inits = [numpy_helper.from_array(np.asarray(loader.consts[k]), k) for k in used]
    g = helper.make_graph(list(region), "region",
                          [helper.make_tensor_value_info(entry, onnx.TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info(exit_, onnx.TensorProto.FLOAT, None)],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", loader.opset)])
    return ReferenceEvaluator(m).run(None, {entry: x})[0]


_PATTERNS = [  # multi-node regions recognised by what they compute
    ("silu", lambda x: x * _sigm(x)),
    ("gelu", lambda x: _np_gelu(x, {"approximate": "none"})),
    ("gelu_tanh", lambda x: _np_gelu(x, {"approximate": "tanh"})),
]


_ELEMENTWISE = {"Div", "Mul", "Erf", "Add", "Sub", "Sigmoid", "Tanh", "Pow", "Concat", "Sqrt"}


def _match_pattern(loader, entry, region, exit_, specs, width):
    """A multi-node element-wise pattern (x*sigmoid(x), the GELU formulas, skl2onnx's binary
    [1 - p, p]) appended to ``specs``; False when ``region`` computes none of them."""
    ops = sorted(n.op_type for n in region)
    if ops == ["Concat", "Sigmoid", "Sub"] and specs and specs[-1][0] == "linear" \
            and specs[-1][1]["weight"].shape[0] == 1:
        # skl2onnx's binary classifier: [1 - sigmoid(z), sigmoid(z)] = softmax([0, z])
        x = np.linspace(-6, 6, 13, dtype=np.float32).reshape(-1, 1)
        got = _region_eval(loader, entry, region, exit_, x)
        s = _sigm(x.astype(np.float64))
        if not np.allclose(got, np.concatenate([1 - s, s], 1), atol=1e-5):
            return False
        lin = specs[-1][1]
        w, b = lin["weight"], lin["bias"]
        lin["weight"] = np.concatenate([np.zeros_like(w), w])
        lin["bias"] = np.concatenate([np.zeros(1, np.float32),
                                      b if b is not None else np.zeros(1, np.float32)])
        specs.append(("softmax", {"dim": 1}))
        return True
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, width or 4)) * 3).astype(np.float32)
    try:
        got = np.asarray(_region_eval(loader, entry, region, exit_, x), dtype=np.float64)
    except Exception:  # noqa: BLE001 - not a pattern we can evaluate
        return False
    for kind, fn in _PATTERNS:
        want = fn(x.astype(np.float64))
        if got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-5):
            specs.append(("gelu", {"approximate": "tanh"}) if kind == "gelu_tanh"
                         else ("gelu", {"approximate": "none"}) if kind == "gelu" else (kind, {}))
            return True
    return False


def _specs_of_regions(loader, regions, width):
    """The layer specs of the graph's regions, merging up to four consecutive element-wise
    regions into one pattern where they compute one."""
    specs = []
    i = 0
    while i < len(regions):
        done = False
        for k in range(min(4, len(regions) - i), 0, -1):
            group = regions[i:i + k]
            nodes = [n for _, r, _ in group for n in r]
            if len(nodes) < 2 or any(n.op_type not in _ELEMENTWISE for n in nodes):
                continue
            if _match_pattern(loader, group[0][0], nodes, group[-1][2], specs, width):
                i += k
                done = True
                break
        if done:
            continue
        entry, region, exit_ = regions[i]
        if len(region) > 1:
            raise _err(region[0], f"the node pattern {' -> '.join(n.op_type for n in region)} is not "
                       f"a layer fastmlp knows")
        _spec_of_node(loader, entry, region, specs, width)
        if specs and specs[-1][0] == "linear":
            width = specs[-1][1]["weight"].shape[0]
        i += 1
    return specs


def _spec_of_node(loader, entry, region, specs, width):
    """Append the layer spec of one node to ``specs``."""
    n = region[0]
    op, a = n.op_type, _attrs(n)
    if op == "Add" and len(n.input) == 2 and n.input[1] == entry:  # bias + x
        n = type(n)()
        n.CopyFrom(region[0])
        n.input[0], n.input[1] = n.input[1], n.input[0]
    if n.input[0] != entry:
        raise _err(n, f"its data input is not input 0")
    if op == "Gemm":
        if a.get("transA", 0):
            raise _err(n, "transA=1")
        B = loader.const(n, 1, "B")
        w = B if a.get("transB", 0) else B.T
        w = w * a.get("alpha", 1.0)
        C = loader.const(n, 2, "C")
        b = None if C is None else np.broadcast_to(C * a.get("beta", 1.0), (w.shape[0],))
        specs.append(("linear", {"weight": w, "bias": b}))
    elif op == "MatMul":
        W = loader.const(n, 1, "weight")
        if W.ndim != 2:
            raise _err(n, f"a {W.ndim}-D weight")
        specs.append(("linear", {"weight": W.T, "bias": None}))
    elif op == "Add":
        b = loader.const(n, 1, "bias")
        if not specs or specs[-1][0] != "linear":
            raise _err(n, "an Add that is not a Linear layer's bias")
        lin = specs[-1][1]
        out = lin["weight"].shape[0]
        if b.size not in (1, out):
            raise _err(n, f"a bias of shape {b.shape} for {out} outputs")
        b = np.broadcast_to(b.reshape(-1), (out,))
        lin["bias"] = b if lin["bias"] is None else lin["bias"] + b
    elif op in ("Relu", "Tanh", "Sigmoid", "Softplus"):
        specs.append((op.lower(), {}))
    elif op == "LeakyRelu":
        specs.append(("leaky_relu", {"negative_slope": float(a.get("alpha", 0.01))}))
    elif op == "Elu":
        specs.append(("elu", {"alpha": float(a.get("alpha", 1.0))}))
    elif op == "Gelu":
        specs.append(("gelu", {"approximate": a.get("approximate", b"none")}))
    elif op == "Clip":
        if loader.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo, hi = loader.const(n, 1, "min"), loader.const(n, 2, "max")
        lo = -np.inf if lo is None else float(np.asarray(lo).reshape(()))
        hi = np.inf if hi is None else float(np.asarray(hi).reshape(()))
        specs.append(("clip", {"min": lo, "max": hi}))
    elif op in ("Softmax", "LogSoftmax"):
        axis = int(a.get("axis", -1 if loader.opset >= 13 else 1))
        specs.append(("softmax" if op == "Softmax" else "log_softmax", {"dim": axis}))
    elif op == "Flatten":
        if int(a.get("axis", 1)) != 1:
            raise _err(n, f"axis={a.get('axis')} (only a flatten after the batch dimension)")
        specs.append(("flatten", {}))
    elif op == "Reshape":
        shape = [int(v) for v in loader.const(n, 1, "shape").reshape(-1)]
        if len(shape) == 2 and shape[0] in (-1, 0) and (shape[1] == -1 or shape[1] >= 0):
            if shape[1] == -1 or width is None or shape[1] != width:
                specs.append(("flatten", {}))
            # else: (n, width) to (n, width): nothing to do
        else:
            raise _err(n, f"a reshape to {shape} (only (batch, -1) is an MLP layer)")
    elif op in ("Identity", "Dropout"):
        pass
    elif op == "Cast":
        import onnx

        if a.get("to") != onnx.TensorProto.FLOAT:
            raise _err(n, "a cast to a type other than float")
    elif op == "LayerNormalization":
        scale, bias = loader.const(n, 1, "scale"), loader.const(n, 2, "bias")
        axis = int(a.get("axis", -1))
        if axis != -scale.ndim and not (axis >= 0 and loader.in_shape and axis == len(loader.in_shape) - scale.ndim):
            raise _err(n, f"axis={axis} with a scale of shape {scale.shape}")
        specs.append(("layer_norm", {"weight": scale, "bias": bias, "eps": float(a.get("epsilon", 1e-5))}))
    elif op == "BatchNormalization":
        if a.get("training_mode", 0):
            raise _err(n, "training_mode=1")
        specs.append(("batch_norm", {"weight": loader.const(n, 1, "scale"), "bias": loader.const(n, 2, "B"),
                                     "mean": loader.const(n, 3, "mean"), "var": loader.const(n, 4, "var"),
                                     "eps": float(a.get("epsilon", 1e-5))}))
    else:
        raise _err(n)
    for o in n.output[1:]:
        if o and loader.count.get(o):
            raise _err(n, f"its output {o!r} is used")


def _module(cls_name, what, *args, **kwargs):
    from . import nn

    cls = getattr(nn, cls_name, None)
    if cls is None:
        raise ValueError(f"load: the graph needs nn.{cls_name} ({what}), which this fastmlp build "
                         f"does not have")
    return cls(*args, **kwargs)


def _set(module, **arrays):
    for k, v in arrays.items():
        t = getattr(module, k)
        t._data[...] = np.asarray(v, dtype=t._data.dtype).reshape(t._data.shape)


def _build(specs):
    from . import nn

    mods = []
    for kind, p in specs:
        if kind == "linear":
            w = np.asarray(p["weight"], np.float32)
            m = nn.Linear(w.shape[1], w.shape[0], bias=p["bias"] is not None)
            _set(m, weight=w)
            if p["bias"] is not None:
                _set(m, bias=p["bias"])
        elif kind in ("relu", "tanh", "sigmoid"):
            m = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]()
        elif kind == "softplus":
            m = _module("Softplus", "Softplus")
        elif kind == "silu":
            m = _module("SiLU", "x * Sigmoid(x)")
        elif kind == "gelu":
            ap = p["approximate"]
            ap = ap.decode() if isinstance(ap, bytes) else ap
            m = _module("GELU", "Gelu", approximate=ap)
        elif kind == "leaky_relu":
            m = _module("LeakyReLU", "LeakyRelu", negative_slope=p["negative_slope"])
        elif kind == "elu":
            m = _module("ELU", "Elu", alpha=p["alpha"])
        elif kind == "clip":
            lo, hi = p["min"], p["max"]
            if lo == 0 and hi == 6:
                m = _module("ReLU6", "Clip(0, 6)")
            elif lo == 0 and hi == np.inf:
                m = nn.ReLU()
            else:
                m = _module("Hardtanh", "Clip", min_val=lo, max_val=hi)
        elif kind == "softmax":
            m = _module("Softmax", "Softmax", dim=p["dim"])
        elif kind == "log_softmax":
            m = _module("LogSoftmax", "LogSoftmax", dim=p["dim"])
        elif kind == "flatten":
            m = nn.Flatten()
        elif kind == "layer_norm":
            w = np.asarray(p["weight"])
            m = _module("LayerNorm", "LayerNormalization", list(w.shape), eps=p["eps"])
            _set(m, weight=w, bias=p["bias"] if p["bias"] is not None else np.zeros_like(w))
        elif kind == "batch_norm":
            c = np.asarray(p["mean"]).shape[0]
            m = _module("BatchNorm1d", "BatchNormalization", c, eps=p["eps"])
            _set(m, weight=p["weight"], bias=p["bias"], running_mean=p["mean"], running_var=p["var"])
        else:  # pragma: no cover - every spec kind above
            raise AssertionError(kind)
        mods.append(m)
    return nn.Sequential(*mods).eval()


def load(path):
    """An ONNX MLP (a path, file object, bytes or ``onnx.ModelProto``) as an ``nn.Sequential`` in
    eval mode. Unsupported operators raise ValueError naming the operator and its node."""
    onnx = _onnx()
    if isinstance(path, onnx.ModelProto):
        model = path
    elif isinstance(path, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(path))
    else:
        try:
            model = onnx.load(os.fspath(path) if not hasattr(path, "read") else path)
        except FileNotFoundError:
            raise FileNotFoundError(f"load: no such file {path}") from None
        except Exception as e:  # noqa: BLE001 - not an ONNX file
            if isinstance(e, OSError):
                raise
            raise ValueError(f"load: {path} is not a readable ONNX model ({e})") from None
    ld = _Loader(model)
    width = ld.in_shape[-1] if ld.in_shape and len(ld.in_shape) == 2 else None
    specs = _specs_of_regions(ld, list(ld.regions()), width)
    if not specs:
        raise ValueError("load: the graph holds no layer")
    return _build(specs)
