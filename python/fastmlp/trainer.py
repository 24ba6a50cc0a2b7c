"""Whole-epoch fused training: :func:`fit` runs the training loop of a Linear/ReLU MLP in one native
call per epoch (shuffle, batches, forward, MSE loss, backward and the SGD update all in C++, with the
GIL released), instead of one Python round trip per op.

The math is the eager loop's::

    for epoch in range(epochs):
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size, shuffle, drop_last):
            loss = nn.MSELoss()(model(xb), yb)
            opt.zero_grad(); loss.backward(); opt.step()      # opt = optim.SGD(model.parameters(), ...)

so from the same weights and the same sample order it gives the same weights (within float32
rounding of a different summation order). ``model`` is updated in place.

A model whose parameters live on the GPU (``model.to("cuda")``; CuPy arrays underneath) trains on
the GPU: ``fastmlp._cuda.mlp_train`` runs the same loop with every launch on CuPy's current
stream, no host round trip per step, one copy back per epoch. The sample order is made on the
host by the CPU trainer's own shuffle, so a CPU and a GPU fit with the same seed see the same
batches.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import costmodel as _costmodel
from . import ops as _ops
from .ops import cpu as _kernels
from .ops import infer_forward as _infer_forward
from .training_spec import (LOSS_KINDS, OPTIM_KINDS, resolve_loss, resolve_optimizer,
                            write_back_state)
from .hyperparams import check_f32

__all__ = ["fit", "predict", "History", "NonFiniteLossError", "extract_chain", "Chain"]

EAGER_HINT = ("fastmlp.fit handles chains of Linear layers with ReLU between them; for any other "
              "model write the eager loop (fastmlp.nn / fastmlp.optim, as in PyTorch)")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (``fit(..., allow_nonfinite=True)`` continues)."""

    def __init__(self, message, epoch, batch, loss, history):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.loss = loss
        self.history = history

    def __reduce__(self):  # message and fields survive pickle (multiprocessing.Pool, executors)
        return (type(self), (str(self), self.epoch, self.batch, self.loss, self.history),
                self.__dict__ or None)

    def __setstate__(self, state):
        if state:
            self.__dict__.update(state)


class History(dict):
    """What :func:`fit` returns: a dict (``loss``, ``val_loss``, ``samples_per_sec``, ...) whose keys
    are also attributes (``history.loss``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# ---- the model as a chain of arrays ----------------------------------------------------------

@dataclass
class Chain:
    """A Linear(+ReLU) chain as float32 arrays shared with the model (no copies)."""

    weights: list           # (out, in) arrays, the model's own memory
    biases: list            # (out,) arrays or None
    relu: list              # bool per layer: ReLU after it
    modules: list = field(default_factory=list)
    frozen: list = field(default_factory=list)  # per layer: (weight frozen, bias frozen)
    known_device: str = None  # set once checked (a traced chain is rebuilt when arrays change)
    acts: list = None       # per layer: (kind name, p0, p1) or None (activation.h's kinds)
    dropout: list = None    # per layer: dropout probability after the activation (training)
    params: list = None     # per layer: (weight Parameter, bias Parameter or None)
    # per layer: None or a LayerNorm/BatchNorm1d after the Linear (before or after the activation):
    # {"kind": "layer"|"batch", "name", "before_act", "eps", "weight"/"bias": arrays or None,
    #  "wparam"/"bparam": their Parameters, and for BatchNorm1d "batch_stats", "running_mean",
    #  "running_var" (arrays or None), "momentum", "cumulative", "nbt" (0-d int64 array or None)}
    norms: list = None
    infer: object = None    # the native forward plan (ops.InferPlan), made by infer_plan()

    def infer_plan(self):
        """The chain's native inference plan (:class:`fastmlp.ops.InferPlan`, made once: it reads
        the parameter arrays in place), or None where it cannot run (parameters that are not
        C-contiguous float32 host arrays)."""
        p = self.infer
        if p is None and any(self.norms or []):
            p = self.infer = False  # the plan runs Linear + activation layers only
        if p is None:
            acts = self.acts or [("relu", 0.0, 0.0) if r else None for r in self.relu]
            try:  # (ops, not sys.modules: predict may run while the interpreter is finalizing)
                p = _ops.InferPlan(self.weights, self.biases,
                                   [None if a is None else (_ops.act_kind(a[0]), float(a[1]),
                                                            float(a[2])) for a in acts])
            except (TypeError, ValueError):
                p = False
            self.infer = p
        return p or None

    @property
    def basic(self) -> bool:
        """Only ReLU/identity activations and no dropout: the ReLU/MSE/SGD trainer can run it."""
        acts = self.acts or []
        return all(a is None or a[0] in ("relu", "identity") for a in acts) and \
            not any(self.dropout or []) and not any(self.norms or [])

    def norm_params(self):
        """The norm layers' Parameters (weight, bias where present), layer order."""
        return [p for nm in (self.norms or []) if nm for p in (nm["wparam"], nm["bparam"])
                if p is not None]

    def all_params(self):
        """Every Parameter the chain trains or reads: the Linear layers', then the norms'."""
        return [p for pair in (self.params or []) for p in pair if p is not None] + \
            self.norm_params()

    def norm_arrays(self):
        """The arrays a norm layer holds (parameters and running statistics), for saving."""
        return [nm[k] for nm in (self.norms or []) if nm
                for k in ("weight", "bias", "running_mean", "running_var", "nbt")
                if nm.get(k) is not None]

    def count_norm_batches(self, forwards):
        """num_batches_tracked += forwards for each BatchNorm1d updating its running statistics
        (the eager module counts every training forward)."""
        for nm in self.norms or []:
            if nm and nm["kind"] == "batch" and nm["batch_stats"] and nm["nbt"] is not None \
                    and nm["running_mean"] is not None:
                nm["nbt"][...] += forwards

    def batchnorm_batches(self):
        """Names of the BatchNorm1d layers normalising with the batch's statistics."""
        return [f"layer {i}'s BatchNorm1d" for i, nm in enumerate(self.norms or [])
                if nm and nm["kind"] == "batch" and nm["batch_stats"]]

    def spec_layers(self, states=None, frozen=True, norm_states=None):
        """The layer dicts of csrc/bindings/mlp_spec.h (states: per layer (wstate, bstate);
        norm_states: per layer (wstate, bstate) of its norm, or None)."""
        ACT_KINDS = sys.modules[__package__ + ".tracing"].ACT_KINDS
        out = []
        acts = self.acts or [("relu", 0.0, 0.0) if r else None for r in self.relu]
        drops = self.dropout or [0.0] * len(self.weights)
        fro = self.frozen or [(False, False)] * len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = acts[i] or ("identity", 0.0, 0.0)
            d = {"weight": w, "bias": b, "act": (ACT_KINDS[a[0]], float(a[1]), float(a[2])),
                 "dropout": float(drops[i]),
                 "frozen_weight": bool(fro[i][0]) if frozen else True,
                 "frozen_bias": bool(fro[i][1]) if frozen else True}
            if states is not None:
                d["wstate"], d["bstate"] = states[i]
            nm = (self.norms or [None] * len(self.weights))[i]
            if nm:
                nd = {"kind": 1 if nm["kind"] == "layer" else 2, "before_act": bool(nm["before_act"]),
                      "eps": float(nm["eps"]), "weight": nm["weight"], "bias": nm["bias"],
                      "frozen_weight": nm["wparam"] is not None and not nm["wparam"].requires_grad
                      if frozen else True,
                      "frozen_bias": nm["bparam"] is not None and not nm["bparam"].requires_grad
                      if frozen else True}
                if nm["kind"] == "batch":
                    nd.update(batch_stats=bool(nm["batch_stats"]), running_mean=nm["running_mean"],
                              running_var=nm["running_var"], momentum=float(nm["momentum"]),
                              cumulative=bool(nm["cumulative"]),
                              count=int(nm["nbt"]) if nm["nbt"] is not None else 0)
                if norm_states is not None and norm_states[i] is not None:
                    nd["wstate"], nd["bstate"] = norm_states[i]
                d["norm"] = nd
            out.append(d)
        return out

    @property
    def in_features(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def device(self) -> str:
        """'cpu' or 'cuda:<index>': where every parameter lives (ValueError when they differ)."""
        if self.known_device is not None:
            return self.known_device
        found = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            for name, a in ((f"layer {i} weight", w), (f"layer {i} bias", b)):
                if a is not None:
                    found.setdefault(_array_device(a), name)
        if len(found) > 1:
            where = ", ".join(f"{name} on {dev}" for dev, name in found.items())
            raise ValueError(f"fit: the model's parameters are on different devices ({where}); move "
                             f"the whole model to one device with model.to('cpu') or model.to('cuda')")
        return next(iter(found))

    @property
    def is_cuda(self) -> bool:
        return self.device != "cpu"

    @property
    def device_index(self) -> int:
        """The CUDA device number of a GPU chain (0 for 'cuda')."""
        return int(self.device.partition(":")[2] or 0)

    def describe(self) -> str:
        parts = [str(self.in_features)]
        acts = self.acts or [("relu",) if r else None for r in self.relu]
        for i, (w, a) in enumerate(zip(self.weights, acts)):
            d = (self.dropout or [0.0] * len(self.weights))[i]
            nm = (self.norms or [None] * len(self.weights))[i]
            act = ' ' + a[0] if a and a[0] != 'identity' else ''
            if nm:
                act = f" {nm['name']}{act}" if nm["before_act"] else f"{act} {nm['name']}"
            parts.append(f"{w.shape[0]}{act}{f' dropout({d:g})' if d else ''}")
        return " -> ".join(parts)


def _kind(obj) -> str:
    return type(obj).__name__


def _is_torch(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


def _is_gpu_array(a) -> bool:
    return type(a) is not np.ndarray and hasattr(a, "__cuda_array_interface__")


def _array_device(a) -> str:
    """'cpu' for a host array, 'cuda:<index>' for a GPU array."""
    if not _is_gpu_array(a):
        return "cpu"
    return f"cuda:{int(getattr(getattr(a, 'device', None), 'id', 0) or 0)}"


def _cupy():
    import cupy

    return cupy


def _param_array(p, what: str):
    """The float32 array behind a parameter, without a copy (training writes into it): a numpy
    array for a CPU parameter, a CuPy array for a GPU one."""
    if p is None:
        return None
    if isinstance(p, np.ndarray) and not _is_gpu_array(p):
        arr = p
    elif _is_torch(p):
        if p.device.type == "cuda":
            arr = _cupy().asarray(p.detach())  # shares the tensor's memory (__cuda_array_interface__)
        elif p.device.type != "cpu":
            raise ValueError(f"fit: {what} is on {p.device}; fastmlp.fit trains CPU or CUDA tensors")
        else:
            arr = p.detach().numpy()
    elif _is_gpu_array(p):
        arr = p
    elif _is_gpu_array(getattr(p, "_data", None)):
        arr = p._data  # a fastmlp Tensor on the GPU: its CuPy array
    elif hasattr(p, "numpy"):
        arr = p.numpy()
    else:
        raise TypeError(f"fit: {what} is a {_kind(p)}, expected a Tensor or numpy array")
    dtype = getattr(arr, "dtype", None)
    if dtype != np.float32:
        raise TypeError(f"fit: {what} has dtype {dtype if dtype is not None else type(arr).__name__}; "
                        f"fastmlp trains float32 parameters")
    flags = getattr(arr, "flags", None)
    if not getattr(flags, "c_contiguous", False) or not getattr(flags, "writeable", True):
        raise ValueError(f"fit: {what} is not a writable C-contiguous array, so it cannot be "
                         f"updated in place")
    return arr


def _linear_arrays(m, name):
    w = _param_array(getattr(m, "weight", None), f"{name}.weight")
    if w is None or w.ndim != 2:
        raise TypeError(f"fit: {name} ({_kind(m)}) has no 2-D weight")
    b = getattr(m, "bias", None)
    b = _param_array(b, f"{name}.bias") if b is not None else None
    return w, b


def _children(model):
    if hasattr(model, "children"):
        return list(model.children())
    if hasattr(model, "_modules"):
        return list(model._modules.values())
    return None


def _submodules(model):
    """Every module under ``model`` (itself excluded) in registration order."""
    if hasattr(model, "modules"):
        mods = list(model.modules())
        return [m for m in mods if m is not model]
    out = []
    for c in _children(model) or []:
        out.append(c)
        out.extend(_submodules(c))
    return out


def _flat_children(model):
    out = []
    for m in _children(model):
        if _kind(m) == "Sequential" and _children(m) is not None:
            out.extend(_flat_children(m))  # nested Sequentials are one chain
        else:
            out.append(m)
    return out


def _chain_from_sequential(model) -> Chain:
    weights, biases, relu, mods = [], [], [], []
    for i, m in enumerate(_flat_children(model)):
        k = _kind(m)
        if k == "Linear":
            w, b = _linear_arrays(m, f"layer {i}")
            weights.append(w)
            biases.append(b)
            relu.append(False)
            mods.append(m)
        elif k == "ReLU":
            if not weights or relu[-1]:
                raise ValueError(f"fit: ReLU at position {i} does not follow a Linear layer. "
                                 + EAGER_HINT)
            relu[-1] = True
        elif k == "Identity":
            continue
        else:
            raise ValueError(f"fit: the model holds a {k} at position {i}. " + EAGER_HINT)
    if not weights:
        raise ValueError("fit: the model has no Linear layer. " + EAGER_HINT)
    return Chain(weights, biases, relu, mods)


def _forward_numpy(chain: Chain, x: np.ndarray) -> np.ndarray:
    a = x.astype(np.float64)
    for w, b, r in zip(chain.weights, chain.biases, chain.relu):
        a = a @ w.T.astype(np.float64)
        if b is not None:
            a = a + b
        if r:
            a = np.maximum(a, 0.0)
    return a


def _run_model(model, x: np.ndarray, torch_like: bool, device: str = "cpu") -> np.ndarray:
    if torch_like:
        import torch

        with torch.no_grad():
            out = model(torch.from_numpy(x).to(device))
        return out.detach().cpu().numpy().astype(np.float64)
    import fastmlp

    make = getattr(fastmlp, "tensor", None) or getattr(fastmlp, "Tensor")
    ng = getattr(fastmlp, "no_grad", None)
    inp = make(x) if device == "cpu" else make(x).to(device)
    if ng is not None:
        with ng():
            out = model(inp)
    else:
        out = model(inp)
    if device != "cpu" and hasattr(out, "cpu"):
        out = out.cpu()
    arr = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
    return np.asarray(arr, dtype=np.float64)


def _host(a):
    """A host (numpy) copy of a GPU array; a host array as is."""
    if a is None or not _is_gpu_array(a):
        return a
    get = getattr(a, "get", None)
    return np.asarray(get() if get is not None else _cupy().asnumpy(a))


def _chain_by_probe(model) -> Chain:
    """A Module whose forward is a Linear/ReLU chain written by hand (the seed ``Net``): take its
    Linear modules in registration order and find where the ReLUs are by running its forward on a
    probe batch and comparing with each candidate chain."""
    lins = [m for m in _submodules(model) if _kind(m) == "Linear"]
    if not lins:
        raise ValueError(f"fit: {_kind(model)} has no Linear layer. " + EAGER_HINT)
    others = [m for m in _submodules(model)
              if _kind(m) not in ("Linear", "ReLU", "Sequential", "Identity", "ModuleList")]
    if others:
        raise ValueError(f"fit: {_kind(model)} holds a {_kind(others[0])}. " + EAGER_HINT)
    weights, biases = [], []
    for i, m in enumerate(lins):
        w, b = _linear_arrays(m, f"Linear #{i}")
        if weights and w.shape[1] != weights[-1].shape[0]:
            raise ValueError(f"fit: the Linear layers of {_kind(model)} do not form a chain "
                             f"(#{i - 1} outputs {weights[-1].shape[0]} features, #{i} takes "
                             f"{w.shape[1]}). " + EAGER_HINT)
        weights.append(w)
        biases.append(b)
    L = len(weights)
    device = Chain(weights, biases, [False] * L).device  # mixed devices: a clear error first
    if device != "cpu":  # the candidates are evaluated on host copies
        weights_h, biases_h = [_host(w) for w in weights], [_host(b) for b in biases]
    else:
        weights_h, biases_h = weights, biases
    if L - 1 > 12:
        raise ValueError(f"fit: cannot infer the ReLU placement of {L} Linear layers by probing; "
                         "use nn.Sequential")
    torch_like = _is_torch(getattr(lins[0], "weight", None))
    rng = np.random.default_rng(12345)
    half = rng.standard_normal((32, weights[0].shape[1])).astype(np.float32) * 4.0
    probe = np.concatenate([half, -half])  # both signs: every unit's ReLU shows on one side
    try:
        got = _run_model(model, probe, torch_like, device)
    except Exception as e:  # noqa: BLE001 - any failure means: not a plain chain we can run
        raise ValueError(f"fit: running {_kind(model)} on a probe batch failed ({e}). "
                         + EAGER_HINT) from e
    if got.shape != (probe.shape[0], weights[-1].shape[0]):
        raise ValueError(f"fit: {_kind(model)}'s output has shape {got.shape}, not that of its "
                         f"last Linear layer. " + EAGER_HINT)
    scale = max(1.0, float(np.abs(got).max()))
    matches = []
    for mask in range(1 << (L - 1)):
        relu = [bool(mask >> i & 1) for i in range(L - 1)] + [False]
        want = _forward_numpy(Chain(weights_h, biases_h, relu), probe)
        if np.allclose(got, want, rtol=1e-4, atol=1e-4 * scale):
            matches.append(relu)
    # The model may end in a ReLU too.
    for mask in range(1 << (L - 1)):
        relu = [bool(mask >> i & 1) for i in range(L - 1)] + [True]
        want = _forward_numpy(Chain(weights_h, biases_h, relu), probe)
        if np.allclose(got, want, rtol=1e-4, atol=1e-4 * scale):
            matches.append(relu)
    if not matches:
        raise ValueError(f"fit: {_kind(model)}'s forward is not a chain of its Linear layers with "
                         f"ReLUs between them. " + EAGER_HINT)
    if len(matches) > 1:
        raise ValueError(f"fit: the ReLU placement of {_kind(model)} is ambiguous on a probe batch "
                         f"(candidates {matches}); use nn.Sequential")
    return Chain(weights, biases, matches[0], lins)


def _chain_by_trace(model):
    """A fastmlp Module read by tracing its forward (:mod:`fastmlp.tracing`): the chain and the
    parameters it was made from (for the cache's validity check)."""
    tracing = sys.modules[__package__ + ".tracing"]
    layers = tracing.trace_layers(model)
    weights, biases, relu, frozen, params = [], [], [], [], []
    acts, drops, pairs, norms = [], [], [], []
    for i, ly in enumerate(layers):
        w, b = ly["weight"], ly["bias"]
        name = ly["weight_name"].rpartition(".")[0] or "layer"
        weights.append(_param_array(w, f"{name}.weight"))
        biases.append(_param_array(b, f"{name}.bias") if b is not None else None)
        params.extend(p for p in (w, b) if p is not None)
        frozen.append((not w.requires_grad, b is not None and not b.requires_grad))
        act = ly["act"]
        relu.append(act is not None and act[0] == "relu")
        acts.append(act)
        drops.append(ly.get("dropout", 0.0))
        pairs.append((w, b))
        norms.append(_norm_arrays(ly.get("norm"), name, params))
    chain = Chain(weights, biases, relu, [], frozen, acts=acts, dropout=drops, params=pairs,
                  norms=norms if any(norms) else None)
    chain.known_device = chain.device  # the cache rebuilds the chain when an array changes
    return chain, params


def _norm_arrays(norm, name, params):
    """A traced norm (tracing._node_norm) with its arrays shared with the model; the Parameters
    and buffers go into ``params`` (the cache's validity check)."""
    if norm is None:
        return None
    d = dict(norm)
    d["wparam"], d["bparam"] = norm["weight"], norm["bias"]
    where = f"{name} {norm['name']}"
    d["weight"] = _param_array(norm["weight"], f"{where}.weight") if norm["weight"] is not None else None
    d["bias"] = _param_array(norm["bias"], f"{where}.bias") if norm["bias"] is not None else None
    params.extend(p for p in (norm["weight"], norm["bias"]) if p is not None)
    if norm["kind"] == "batch":
        for k in ("running_mean", "running_var"):
            t = norm[k]
            d[k] = _param_array(t, f"{where}.{k}") if t is not None else None
            if t is not None:
                params.append(t)
        t = norm.get("num_batches_tracked")
        d["nbt"] = t._data if t is not None and (isinstance(t._data, np.ndarray) or
                                                 _is_gpu_array(t._data)) else None
        if t is not None:
            params.append(t)
    return d


def _is_fastmlp_module(model) -> bool:
    # No import here: fit may run while the interpreter is finalizing (imports then fail); a
    # fastmlp Module exists only once fastmlp.nn.modules is loaded.
    mods = sys.modules.get(__package__ + ".nn.modules")
    return mods is not None and isinstance(model, mods.Module)


def extract_chain(model) -> Chain:
    """The model as a :class:`Chain` sharing its parameter memory.

    A fastmlp Module is read by tracing one forward (exactly what ``model(x)`` computes; cached
    on the model until a module under it changes). A PyTorch ``nn.Sequential`` of Linear/ReLU is
    read directly; another PyTorch Module from its Linear modules (registration order) with the
    ReLU placement found by probing its forward.
    """
    if isinstance(model, Chain):
        chain = model
    elif _is_fastmlp_module(model):
        chain = sys.modules[__package__ + ".tracing"].cached(model, _chain_by_trace)
    elif _kind(model) == "Sequential" and _children(model) is not None:
        chain = _chain_from_sequential(model)
    elif _kind(model) == "Linear":
        w, b = _linear_arrays(model, "model")
        chain = Chain([w], [b], [False], [model])
    elif _children(model) is None and not hasattr(model, "modules"):
        raise TypeError(f"fit: model must be an nn.Module (a Linear/ReLU chain), got {_kind(model)}")
    else:
        chain = _chain_by_probe(model)
    chain.device  # noqa: B018 - raises the clear error for a model split across devices
    return chain


# ---- data ------------------------------------------------------------------------------------

def _frame_kind(a):
    """'pandas' / 'polars' for their DataFrame and Series, else None (neither is imported here)."""
    mod = type(a).__module__.split(".")[0]
    if mod in ("pandas", "polars") and type(a).__name__ in ("DataFrame", "Series"):
        return mod
    return None


def _numeric_dtype(kind, dt) -> bool:
    if kind == "pandas":
        import pandas as pd

        return bool(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))
    return bool(dt.is_numeric() or str(dt) == "Boolean")


def _frame_to_numpy(a, kind: str, name: str) -> np.ndarray:
    """A pandas / polars DataFrame or Series as a numpy array: float32 columns stay float32 (and
    a frame whose memory is one C-contiguous float32 block comes back without a copy); a
    non-numeric column is a TypeError naming it; missing values become NaN."""
    if type(a).__name__ == "Series":
        cols = [(getattr(a, "name", None), a.dtype)]
    else:
        cols = list(zip(a.columns, a.dtypes)) if kind == "pandas" else list(a.schema.items())
    for col, dt in cols:
        if not _numeric_dtype(kind, dt):
            raise TypeError(f"fit: {name} column {col!r} has dtype {dt}, not numbers; encode it first "
                            f"(e.g. pandas.get_dummies) or drop it")
    if kind == "pandas":
        dts = {np.dtype(dt) if isinstance(dt, np.dtype) else None for _, dt in cols}
        if len(dts) == 1 and None not in dts:
            return a.to_numpy(copy=False)  # one numpy dtype: the block itself where it can be
        return a.to_numpy(dtype=np.float32, na_value=np.nan)
    arr = a.to_numpy()
    return arr if arr.dtype.kind in "fiub" else arr.astype(np.float32)


def as_host_array(a, name: str = "X"):
    """Host data (numpy, Tensor, torch tensor, pandas/polars frame or series, anything with
    ``__array__`` or ``__dlpack__``) as a numpy array, without a copy where that is possible."""
    if isinstance(a, np.ndarray):
        return a
    if _is_torch(a):
        return a.detach().cpu().numpy()
    kind = _frame_kind(a)
    if kind is not None:
        return _frame_to_numpy(a, kind, name)
    if hasattr(a, "numpy") and not hasattr(a, "__array__"):
        return a.numpy()
    if hasattr(a, "__array__"):
        return np.asarray(a)
    if hasattr(a, "__dlpack__"):
        try:
            return np.from_dlpack(a)
        except Exception as e:  # noqa: BLE001 - e.g. device memory numpy cannot read
            raise TypeError(f"fit: {name} ({_kind(a)}) exposes __dlpack__ but numpy cannot read it "
                            f"({e})") from e
    if hasattr(a, "numpy"):
        return a.numpy()
    return a


def _as_data(a, name: str) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype.kind == "f":  # the common case, checked first
        return a
    a = as_host_array(a, name)
    try:
        arr = np.asarray(a)
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"fit: {name} must be an array or Tensor, got {_kind(a)}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"fit: {name} must hold numbers, got dtype {arr.dtype}")
    return arr  # a view: shapes are checked before the float32 copy (a huge bad input fails at once)


def _f32(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_shapes(chain: Chain, X, y, what: str, ylabel: str):
    """Shape checks shared by the host and GPU paths; returns y as (n, out)."""
    if X.ndim != 2:
        raise ValueError(f"fit: {what} must be 2-D (n_samples, {chain.in_features}), got shape {X.shape}")
    if X.shape[1] != chain.in_features:
        raise ValueError(f"fit: {what} has {X.shape[1]} features but the model's first Linear layer "
                         f"takes {chain.in_features}")
    if y.ndim == 1:
        if chain.out_features != 1:
            raise ValueError(f"fit: {ylabel} has shape {y.shape} but the model has "
                             f"{chain.out_features} outputs; pass {ylabel} as (n, {chain.out_features})")
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != chain.out_features:
        raise ValueError(f"fit: {ylabel} must have shape (n, {chain.out_features}), got {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"fit: {what} has {X.shape[0]} samples but {ylabel} has {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError(f"fit: {what} has no samples")
    return y


def prepare_data(chain: Chain, X, y, what: str = "X"):
    """X (n, in) and y (n, out) as C-contiguous float32.

    y of shape (n,) is read as (n, 1) when the model has one output: the usual regression target.
    (PyTorch's MSELoss would broadcast (n, 1) against (n,) to (n, n) with a warning; fit does the
    intended thing instead.) y (n,) for a model with several outputs is an error.
    """
    ylabel = "y" if what == "X" else what.replace("X", "y")
    X = _as_data(X, what)
    y = _as_data(y, ylabel)
    y = _check_shapes(chain, X, y, what, ylabel)
    return _f32(X), _f32(y)


def _gpu_view(a):
    """The GPU array behind a GPU array / CUDA Tensor, or None for host data."""
    if _is_gpu_array(a):
        return a
    if _is_torch(a):
        return a.detach() if a.device.type == "cuda" else None
    data = getattr(a, "_data", None)
    return data if _is_gpu_array(data) else None


def prepare_data_cuda(chain: Chain, X, y, cp, what: str = "X"):
    """X (n, in) and y (n, out) as C-contiguous float32 CuPy arrays on the model's device: GPU
    arrays and CUDA Tensors are used in place (converted on the device only when needed), host
    data is checked first and uploaded once."""
    ylabel = "y" if what == "X" else what.replace("X", "y")
    index = chain.device_index
    with cp.cuda.Device(index):
        arrays = []
        for a, name in ((X, what), (y, ylabel)):
            g = _gpu_view(a)
            if g is not None:
                g = cp.asarray(g)
                kind = g.dtype.kind
                if kind not in "fiub":
                    raise TypeError(f"fit: {name} must hold numbers, got dtype {g.dtype}")
                arrays.append(g)
            else:
                arrays.append(_as_data(a, name))
        Xa, ya = arrays
        ya = _check_shapes(chain, Xa, ya, what, ylabel)
        return tuple(cp.ascontiguousarray(a, dtype=cp.float32) if _is_gpu_array(a)
                     else cp.asarray(_f32(a)) for a in (Xa, ya))


def _cuda_backend(chain: Chain):
    """(cupy, fastmlp._cuda) for training a GPU model, or RuntimeError saying why not."""
    from . import ops_cuda

    reason = ops_cuda.unavailable_reason()
    if reason:
        raise RuntimeError(f"fit: the model's parameters are on {chain.device}, but CUDA is not "
                           f"available ({reason}). Keep the model on the CPU (model.to('cpu')) "
                           f"to train it there")
    return ops_cuda._modules()


def _check_predict_input(chain: Chain, X):
    """X itself when it is (n, in_features) (checked before any copy), else ValueError."""
    if X.ndim != 2 or X.shape[1] != chain.in_features:
        raise ValueError(f"predict: X must have shape (n, {chain.in_features}), got {X.shape}")
    return X


def _predict_cuda(chain: Chain, X, cp, C):
    """The chain's output on the GPU: a CuPy array (X on the GPU) or a numpy array (X on the host)."""
    on_host = _gpu_view(X) is None
    index = chain.device_index
    with cp.cuda.Device(index):
        if on_host:
            Xd = cp.asarray(_f32(_check_predict_input(chain, _as_data(X, "X"))))
        else:
            Xd = _check_predict_input(chain, cp.asarray(_gpu_view(X)))
            Xd = cp.ascontiguousarray(Xd, dtype=cp.float32)
        out = cp.empty((Xd.shape[0], chain.out_features), dtype=cp.float32)
        if chain.basic:
            C.mlp_forward(chain.weights, chain.biases, chain.relu, Xd, out,
                          cp.cuda.get_current_stream().ptr)
        else:  # any activation: the general trainer's forward (no dropout)
            C.mlp_fit_forward(chain.spec_layers(frozen=False), Xd, out,
                              cp.cuda.get_current_stream().ptr)
    return _host(out) if on_host else out


def prepare_class_data_cuda(chain: Chain, X, y, cp, what: str = "X"):
    """X (n, in) float32 on the model's device (a GPU array used in place) and class targets y
    (n,) int64 on the device, checked on the host first (as the CPU path checks them)."""
    ylabel = "y" if what == "X" else what.replace("X", "y")
    with cp.cuda.Device(chain.device_index):
        g = _gpu_view(X)
        Xa = cp.asarray(g) if g is not None else _as_data(X, what)
        if Xa.ndim != 2 or Xa.shape[1] != chain.in_features:
            raise ValueError(f"fit: {what} must have shape (n, {chain.in_features}), got {Xa.shape}")
        gy = _gpu_view(y)
        Y = _class_targets(_host(cp.asarray(gy)) if gy is not None else y, chain.out_features, ylabel)
        if Y.shape[0] != Xa.shape[0]:
            raise ValueError(f"fit: {what} has {Xa.shape[0]} samples but {ylabel} has {Y.shape[0]}")
        if Xa.shape[0] == 0:
            raise ValueError(f"fit: {what} has no samples")
        Xd = cp.ascontiguousarray(Xa, dtype=cp.float32) if _is_gpu_array(Xa) else cp.asarray(_f32(Xa))
        return Xd, cp.asarray(np.ascontiguousarray(Y, dtype=np.int64))


def predict(model, X, *, out=None) -> np.ndarray:
    """The model's output on ``X`` (n, in) as a float32 (n, out) array, by the native forward.

    A new array per call, or ``out`` (a writable C-contiguous float32 (n, out) numpy array) filled
    and returned. The forward plan and its workspace are made on the first call and kept with the
    model's cached chain: later calls re-extract nothing and allocate nothing but the result
    (nothing at all with ``out``). For a model on the GPU it runs there: a numpy result for host
    ``X``, CuPy for GPU ``X``."""
    # The hot path: a fastmlp model predicted before and unchanged since (tracing.cached_hit's
    # checks, inline).
    hit = getattr(model, "__dict__", _NO_DICT).get("_fastmlp_chain")
    if hit is not None and hit[0] == _STRUCTURE_VERSION[0]:
        for p, a in hit[2]:
            if p._data is not a:
                break
        else:
            plan = hit[1].infer
            if plan:
                r = _infer_forward(plan.capsule, X, out)
                if r is not None:
                    return r
    chain = extract_chain(model)
    if chain.is_cuda:
        if out is not None:
            raise ValueError("predict: out= takes a host array; a model on the GPU returns its own "
                             "array (call predict without out)")
        cp, C = _cuda_backend(chain)
        return _predict_cuda(chain, X, cp, C)
    X = _check_predict_input(chain, _as_data(X, "X"))
    plan = chain.infer_plan()
    if plan is not None:
        r = _infer_forward(plan.capsule, _f32(X), out)
        if r is not None:
            return r
    r = _forward(chain, _f32(X))
    if out is None:
        return r
    if not isinstance(out, np.ndarray) or out.shape != r.shape or out.dtype != np.float32:
        raise ValueError(f"predict: out must be a float32 numpy array of shape {r.shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    out[...] = r
    return out


_NO_DICT = {}


def _chain_outputs(chain: Chain, X: np.ndarray, path: str = "auto") -> np.ndarray:
    """The chain on host float32 X (inference) through its inference plan where the chain allows
    it (Linear + activation layers with C-contiguous float32 parameters: the plan predict runs),
    else through the trainers' forward (:func:`_forward`). ``path`` (ops.INFER_PATHS): "auto"
    picks by the row count; "tiles" gives every row the same arithmetic whatever the number of
    rows (a row's result does not depend on the batch it came in)."""
    plan = chain.infer_plan()
    if plan is not None:
        r = _infer_forward(plan.capsule, X, None, _ops.INFER_PATHS[path])
        if r is not None:
            return r
    return _forward(chain, X)


def _forward(chain: Chain, X: np.ndarray) -> np.ndarray:
    """The chain on host float32 X (inference: no dropout)."""
    if chain.basic:
        return _kernels.mlp_forward(chain.weights, chain.biases, chain.relu, X)
    return _kernels.mlp_fit_forward(chain.spec_layers(frozen=False), X)


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    d = pred.astype(np.float64) - y
    return float(np.mean(d * d))


# ---- progress --------------------------------------------------------------------------------

class _Progress:
    def __init__(self, enabled, epochs):
        if enabled is None:
            enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.enabled = bool(enabled)
        self.bar = None
        self.epochs = epochs
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=epochs, unit="epoch", desc="fit", file=sys.stderr,
                                leave=True, dynamic_ncols=True)

    def update(self, epoch, loss, val_loss, sps):
        if not self.enabled:
            return
        post = {"loss": f"{loss:.4g}"}
        if val_loss is not None:
            post["val_loss"] = f"{val_loss:.4g}"
        post["samples/s"] = f"{sps:,.0f}"
        if self.bar is not None:
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
        else:
            text = "  ".join(f"{k} {v}" for k, v in post.items())
            print(f"epoch {epoch + 1}/{self.epochs}  {text}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---- fit -------------------------------------------------------------------------------------

_INT64_MAX = (1 << 63) - 1


def _check_int(v, name, lo, hi=_INT64_MAX):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"fit: {name} must be an int, got {_kind(v)}")
    if v < lo:
        raise ValueError(f"fit: {name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"fit: {name}={v} is too large (at most {hi}, a 64-bit integer)")
    return int(v)


def _check_float(v, name, lo=0.0):
    return check_f32(v, name, lo, where="fit")


def _frozen_flags(chain: Chain):
    """(weight_frozen, bias_frozen) per layer from the parameters' ``requires_grad`` (None when
    nothing is frozen). The eager loop never updates a parameter with requires_grad=False."""
    if chain.params:  # a traced chain: its parameters
        flags = [(not bool(w.requires_grad), b is not None and not bool(b.requires_grad))
                 for w, b in chain.params]
    elif len(chain.modules) == len(chain.weights):
        flags = []
        for m in chain.modules:
            w, b = getattr(m, "weight", None), getattr(m, "bias", None)
            flags.append((not bool(getattr(w, "requires_grad", True)),
                          b is not None and not bool(getattr(b, "requires_grad", True))))
    else:
        return None
    if not any(f for pair in flags for f in pair):
        return None
    trained = [not fw for fw, _ in flags] + [b is not None and not fb
                                              for (_, fb), b in zip(flags, chain.biases)] + \
        [bool(p.requires_grad) for p in chain.norm_params()]
    if not any(trained):
        raise RuntimeError("fit: every parameter of the model has requires_grad=False, so there "
                           "is nothing to train (the eager loop's loss.backward() raises 'element "
                           "0 of tensors does not require grad and does not have a grad_fn')")
    return flags


def _interruptible() -> bool:
    """Ctrl-C may stop a native epoch at a batch boundary: on the main thread, with Python's
    default SIGINT handler (which raises KeyboardInterrupt)."""
    try:
        return (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    except (ValueError, AttributeError):
        return False


def _class_targets(y, n_classes, what):
    """Class-index targets (n,) int64 for cross-entropy, checked as PyTorch does."""
    if hasattr(y, "_data"):
        y = y._data
    y = np.asarray(as_host_array(y, what))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.dtype.kind not in "iu":
        raise TypeError(f"fit: cross_entropy needs class-index targets {what} of an integer dtype "
                        f"(int64), got dtype {y.dtype}; for class probabilities use the eager loop")
    if y.ndim != 1:
        raise ValueError(f"fit: class targets {what} must have shape (n,), got {y.shape}")
    return np.ascontiguousarray(y, dtype=np.int64)


def _weights_vector(w, n, name):
    if w is None:
        return None
    a = np.asarray(w._data if hasattr(w, "_data") else w)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"fit: {name} must hold numbers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    if a.shape != (n,):
        raise ValueError(f"fit: {name} must have shape ({n},), got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"fit: {name} must hold finite non-negative weights")
    return a


def _accuracy(pred, y):
    yi = np.asarray(y).reshape(-1)
    if pred.shape[1] == 1:  # binary logits
        return float(np.mean((pred[:, 0] > 0) == (yi > 0.5)))
    return float(np.mean(np.argmax(pred, axis=1) == yi))


def fit(model, X, y, *, epochs, batch_size, lr=None, loss="mse", optimizer="sgd", momentum=0.0,
        dampening=0.0, weight_decay=None, nesterov=False, shuffle=True, drop_last=False, seed=None,
        validation_data=None, progress=None, allow_nonfinite=False, permutation=None,
        scheduler=None, scheduler_interval=None, lr_schedule=None, sample_weight=None,
        class_weight=None, metric=None, patience=None, min_delta=0.0, restore_best_weights=True,
        on_epoch_end=None, distributed=False, resume=None, **hyper):
    """Train ``model`` on ``X``, ``y`` whole epochs at a time in native code.

    ``model``: an ``nn.Sequential`` or any Module whose forward is a chain of Linear layers with
    element-wise activations (ReLU, Tanh, Sigmoid, GELU, SiLU, LeakyReLU, ELU, Softplus, Hardtanh),
    Dropout and a LayerNorm or BatchNorm1d per Linear (before or after its activation) between
    them, read by tracing one forward (:mod:`fastmlp.tracing`). BatchNorm1d trains as the
    module in the model's mode does (training: batch statistics, running statistics and
    ``num_batches_tracked`` updated); ``predict`` and validation use eval mode. Same
    semantics as the eager loop with ``DataLoader(..., batch_size, shuffle, drop_last)``, the
    loss module and the optimizer created for this call (or passed in). Parameters (and an
    optimizer instance's state) are updated in place; parameters with ``requires_grad=False``
    are left alone, as the eager loop leaves them.

    - ``loss``: 'mse' (default), 'cross_entropy' (int64 class targets), 'bce_with_logits', 'l1',
      'huber', 'smooth_l1', or the loss module itself (``nn.CrossEntropyLoss(weight=...,
      label_smoothing=...)``, ``nn.HuberLoss(delta=...)``, ``nn.BCEWithLogitsLoss(pos_weight=...)``).
    - ``optimizer``: 'sgd' (default; ``momentum``, ``dampening``, ``weight_decay``, ``nesterov``),
      'adam', 'adamw' (``betas``, ``eps``, ``weight_decay``, ``amsgrad``), 'rmsprop' (``alpha``,
      ``eps``, ``momentum``, ``centered``), 'adagrad' (``lr_decay``, ``eps``,
      ``initial_accumulator_value``), with ``lr`` and the hyper-parameters as keyword
      arguments (PyTorch's names and defaults, ``maximize`` too); or an ``optim`` instance built
      on ``model.parameters()`` whose settings and state are used and left updated.
    - ``scheduler``: an ``optim.lr_scheduler`` instance on that optimizer instance, stepped per
      epoch (default) or per step (``scheduler_interval='step'``; the default for OneCycleLR);
      ``ReduceLROnPlateau`` is stepped with the validation loss (or the training loss).
      ``lr_schedule``: a callable ``step -> lr`` (global optimizer step, from 0). Per-step rates
      are computed before each epoch and applied inside the native loop.
    - ``X`` (n, in), ``y`` (n, out) (or (n,) class indices for cross_entropy): arrays or Tensors.
    - ``sample_weight`` (n,): a weighted mean loss, sum_i w_i l_i / sum_i w_i. ``class_weight``
      (classes,): cross-entropy's per-class weight.
    - ``shuffle``, ``seed``, ``permutation``, ``drop_last``: the sample order, as before.
    - ``validation_data=(X_val, y_val)``: its loss after every epoch in ``history["val_loss"]``
      (and ``history["val_accuracy"]`` for classification, or with ``metric='accuracy'``).
      ``patience``: stop when the validation loss (training loss without validation data) has not
      improved by ``min_delta`` for that many epochs; ``restore_best_weights`` puts back the best.
    - ``on_epoch_end(history)``: called after every epoch; returning True stops training.
    - A NaN/inf batch loss raises :class:`NonFiniteLossError` (``allow_nonfinite=True`` goes on).
    - A model on the GPU trains there: ``fastmlp._cuda.mlp_train`` for ReLU chains with MSE and
      plain SGD, ``fastmlp._cuda.mlp_fit`` (the general trainer's GPU twin) for everything else.
    - ``distributed=True`` (CPU models, any chain, loss and optimizer above; under
      ``mpiexec -n N``, see :mod:`fastmlp.distributed`, which it initialises if needed): every
      rank passes the same ``X``, ``y`` and options; rank 0's weights, optimizer state and seed
      are broadcast first; each global batch of ``batch_size`` rows is split into N contiguous
      parts, one per rank, each part's loss divided by the global batch's denominator (its rows,
      or its sum of sample weights; cross-entropy: its sum of class x sample weights), and every
      step all-reduces one flat buffer (all gradients and the loss) before the update, so N
      processes follow one process with the same ``batch_size`` and order (within float32
      rounding; dropout masks are drawn per global row). Losses, ``val_loss`` and
      ``val_accuracy`` are global (each rank predicts a part of the validation data); only rank
      0 shows progress; an early stop on any rank stops all. One process is the plain fit.
    - ``resume``: ``history["state"]`` of an earlier fit: continues with its epoch count, seed,
      step count and momentum buffers, so that fit(k epochs) then fit(m epochs, resume=...)
      equals fit(k + m epochs) (SGD; other optimizers carry their state in an optim instance).

    Returns a :class:`History`: ``loss``, ``val_loss``, ``samples_per_sec``, ``seconds``,
    ``steps``, ``seed``, ``device``, ``lr`` (per epoch), ``best_epoch`` with ``patience``,
    ``state`` (for ``resume``).
    """
    chain = extract_chain(model)
    frozen = _frozen_flags(chain)
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    lspec = resolve_loss(loss, chain.out_features)
    wd_given = weight_decay is not None
    if isinstance(optimizer, str):
        name = optimizer.lower()
        h = dict(hyper)
        if name in ("sgd", "rmsprop"):
            h.setdefault("momentum", momentum)
        elif momentum != 0.0:
            raise TypeError(f"fit: momentum is a hyper-parameter of sgd and rmsprop; {name} does "
                            f"not take it (Adam's is betas=(beta1, beta2))")
        if name == "sgd":
            h.setdefault("dampening", dampening)
            h.setdefault("nesterov", bool(nesterov))
        elif dampening != 0.0 or nesterov:
            raise TypeError(f"fit: dampening/nesterov are SGD's; {name} does not take them")
        if wd_given:
            h.setdefault("weight_decay", weight_decay)
        if lr is not None:
            lr = _check_float(lr, "learning rate lr")
        ospec = resolve_optimizer(name, lr, h, chain.all_params())
    else:
        if momentum or dampening or nesterov or wd_given:
            raise TypeError("fit: with an optimizer instance, set momentum/weight_decay/... on it")
        if not chain.params:
            raise ValueError("fit: an optimizer instance needs a fastmlp model")
        ospec = resolve_optimizer(optimizer, lr, hyper, chain.all_params())
    if scheduler is not None and (ospec.instance is None or
                                  getattr(scheduler, "optimizer", None) is not ospec.instance):
        raise ValueError("fit: scheduler must be an lr_scheduler on the optimizer instance passed "
                         "as optimizer= (a scheduler steps its own optimizer's learning rate)")
    if scheduler is not None and lr_schedule is not None:
        raise TypeError("fit: pass scheduler or lr_schedule, not both")
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(f"fit: lr_schedule must be a callable step -> lr, got {_kind(lr_schedule)}")
    sched_kind = type(scheduler).__name__ if scheduler is not None else None
    if scheduler_interval is None:
        scheduler_interval = "step" if sched_kind == "OneCycleLR" else "epoch"
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if sched_kind == "ReduceLROnPlateau" and scheduler_interval == "step":
        raise ValueError("fit: ReduceLROnPlateau is stepped per epoch with a metric")
    if patience is not None:
        patience = _check_int(patience, "patience", 1)
    min_delta = _check_float(min_delta, "min_delta")
    if metric not in (None, "loss", "accuracy"):
        raise ValueError(f"fit: metric must be 'loss' or 'accuracy', got {metric!r}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"fit: on_epoch_end must be callable, got {_kind(on_epoch_end)}")
    fast = (chain.basic and lspec.name == "mse" and ospec.name == "sgd" and ospec.instance is None
            and not ospec.hyper.get("maximize") and scheduler is None and lr_schedule is None
            and sample_weight is None and class_weight is None)
    on_gpu = chain.is_cuda
    if on_gpu:
        cp, CU = _cuda_backend(chain)
        if lspec.classification:
            X, Y = prepare_class_data_cuda(chain, X, y, cp)
        else:
            X, Y = prepare_data_cuda(chain, X, y, cp)
    elif lspec.classification:
        Xa = _as_data(X, "X")
        if Xa.ndim != 2 or Xa.shape[1] != chain.in_features:
            raise ValueError(f"fit: X must have shape (n, {chain.in_features}), got {Xa.shape}")
        Y = _class_targets(y, chain.out_features, "y")
        if Y.shape[0] != Xa.shape[0]:
            raise ValueError(f"fit: X has {Xa.shape[0]} samples but y has {Y.shape[0]}")
        if Xa.shape[0] == 0:
            raise ValueError("fit: X has no samples")
        X = _f32(Xa)
    else:
        X, Y = prepare_data(chain, X, y)
    n = X.shape[0]
    if drop_last and n < batch_size:
        raise ValueError(f"fit: drop_last=True with {n} samples and batch_size={batch_size} leaves "
                         "no batch to train on")
    bn = chain.batchnorm_batches()
    if bn and (min(batch_size, n) == 1 or (not drop_last and n % batch_size == 1)):
        raise ValueError(f"fit: {bn[0]} normalises with the batch's statistics, but "
                         f"batch_size={batch_size} with {n} samples gives a batch of 1 sample "
                         f"(Expected more than 1 value per channel when training); choose another "
                         f"batch_size or drop_last=True")
    sw = _weights_vector(sample_weight, n, "sample_weight")
    cw = None
    if class_weight is not None:
        if not lspec.classification:
            raise ValueError("fit: class_weight applies to loss='cross_entropy'")
        cw = _weights_vector(class_weight, chain.out_features, "class_weight")
        lspec.class_weight = cw
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("fit: validation_data must be a tuple (X_val, y_val)")
        if on_gpu and fast:
            val = prepare_data_cuda(chain, validation_data[0], validation_data[1], cp, what="X_val")
        elif on_gpu:  # predictions on the device, the loss / accuracy on the host (one copy back)
            if lspec.classification:
                Xv, yv = prepare_class_data_cuda(chain, validation_data[0], validation_data[1], cp,
                                                 what="X_val")
            else:
                Xv, yv = prepare_data_cuda(chain, validation_data[0], validation_data[1], cp,
                                           what="X_val")
            val = (Xv, _host(yv))
        elif lspec.classification:
            Xv = _as_data(validation_data[0], "X_val")
            if Xv.ndim != 2 or Xv.shape[1] != chain.in_features:
                raise ValueError(f"fit: X_val has {Xv.shape[-1]} features but the model takes "
                                 f"{chain.in_features}")
            val = (_f32(Xv), _class_targets(validation_data[1], chain.out_features, "y_val"))
        else:
            val = prepare_data(chain, validation_data[0], validation_data[1], what="X_val")
    want_acc = metric == "accuracy" or (metric is None and lspec.classification)
    perm = None
    if permutation is not None:
        perm = np.asarray(permutation)
        if not np.issubdtype(perm.dtype, np.integer):
            raise TypeError(f"fit: permutation must hold integers (sample indices), got dtype {perm.dtype}")
        perm = np.ascontiguousarray(perm, dtype=np.int64)
        if perm.shape not in ((n,), (epochs, n)):
            raise ValueError(f"fit: permutation must have shape ({n},) or ({epochs}, {n}), got {perm.shape}")
    start_epoch, start_steps = 0, 0
    if resume is not None:
        start_epoch, start_steps, rseed = _check_resume(resume)
        if seed is not None and _check_int(seed, "seed", 0, hi=None) & ((1 << 64) - 1) != rseed:
            raise ValueError(f"fit: seed={seed} differs from the resumed run's seed {rseed}; pass "
                             f"seed=None (or the same seed) with resume")
        seed = rseed
        if not fast and ospec.instance is None:
            raise ValueError("fit: resume continues SGD fits of ReLU chains with MSE; with another "
                             "optimizer pass the same optim instance again (it carries its state) "
                             "and epoch_offset comes from resume")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) & ((1 << 64) - 1)
    else:
        seed = _check_int(seed, "seed", 0, hi=None) & ((1 << 64) - 1)
    group = None
    if distributed:
        if on_gpu:
            raise NotImplementedError("fit(distributed=True) trains CPU models; for a model on the "
                                      "GPU write the eager loop with nn.parallel.DistributedDataParallel "
                                      "and fastmlp.distributed.init('nccl')")
        if chain.batchnorm_batches():
            raise ValueError(
                f"fit(distributed=True): {', '.join(chain.batchnorm_batches())} normalises with "
                f"the batch's statistics, which each rank would take over its own rows only (not "
                f"the global batch's); train it in one process, or use LayerNorm or the "
                f"BatchNorm1d in eval mode")
        group = _process_group(chain, X, Y, batch_size, epochs,
                               (int(fast), LOSS_KINDS[lspec.name], OPTIM_KINDS[ospec.name],
                                int(sw is not None), int(lspec.class_weight is not None)))
        if group is not None:
            seed = group.bcast_object(seed, 0)

    steps_per_epoch = n // batch_size if drop_last else -(-n // batch_size)
    bufs_w = bufs_b = None
    states = None
    momentum = float(ospec.hyper.get("momentum", 0.0)) if ospec.name == "sgd" else 0.0
    if fast and momentum != 0:
        xp = cp if on_gpu else np
        bufs_w = [xp.zeros_like(w) for w in chain.weights]
        bufs_b = [xp.zeros_like(b) if b is not None else None for b in chain.biases]
        if resume is not None:
            _load_momentum(resume, bufs_w, bufs_b, start_steps)
    norm_states = None
    if not fast:
        states = []
        for (pw, pb), w, b in zip(chain.params, chain.weights, chain.biases):
            states.append((ospec.state_for(pw, w), ospec.state_for(pb, b) if pb is not None else None))
        if chain.norms:
            norm_states = [None if not nm else
                           tuple(ospec.state_for(nm[k[0] + "param"], nm[k]) if nm[k] is not None
                                 else None for k in ("weight", "bias"))
                           for nm in chain.norms]
    dist_kw = {}
    if group is not None:  # rank 0's parameters, optimizer state and step count everywhere
        _broadcast_chain(group, chain, bufs_w, bufs_b, states, norm_states)
        if not fast:
            ospec.step = group.bcast_object(ospec.step, 0)
        dist_kw = _allreduce_hook(group, chain, fused=not fast)
    cpu_path = "auto"  # the CPU trainers' small-matrix or gemm path (fastmlp.costmodel)
    if not on_gpu:
        cpu_path = _costmodel.choose_path(
            "train" if fast else "fit", [(w.shape[1], w.shape[0]) for w in chain.weights],
            min(batch_size, max(n, 1)), has_norm=bool(chain.norms) and any(chain.norms))
        if group is not None:  # every rank on rank 0's path (caches may differ between ranks)
            cpu_path = group.bcast_object(cpu_path, 0)
    chain_params = chain.all_params()
    dev_w = None  # the GPU general trainer's weight vectors, uploaded once
    if on_gpu and not fast:
        with cp.cuda.Device(chain.device_index):
            # optimizer state on the device (in place: write_back_state sees it), the norm layers' too
            for pair in states + [p for p in (norm_states or []) if p is not None]:
                for st in pair:
                    for k in range(3 if st is not None else 0):
                        if st[k] is not None and not _is_gpu_array(st[k]):
                            st[k] = cp.asarray(st[k])
            dev_w = tuple(None if a is None else cp.asarray(a)
                          for a in (sw, lspec.class_weight, lspec.pos_weight))

    hist = History(loss=[], val_loss=[], epoch_samples_per_sec=[], samples_per_sec=0.0,
                   seconds=0.0, steps=0, seed=seed, architecture=chain.describe(),
                   device=chain.device, lr=[])
    if want_acc:
        hist["val_accuracy"] = []
    prog = _Progress(progress if group is None or group.rank == 0 else False, epochs)
    used_per_epoch = (n // batch_size) * batch_size if drop_last else n
    total_time = 0.0
    best = None  # (score, epoch, saved parameter copies)
    bad_epochs = 0
    pgroup = ospec.instance.param_groups[0] if ospec.instance is not None else None
    try:
        for e in range(epochs):
            if perm is None:
                p = None
            else:
                p = perm if perm.ndim == 1 else perm[e]
            cur_lr = float(pgroup["lr"]) if pgroup is not None else ospec.lr
            sched = msched = None
            if lr_schedule is not None or (scheduler is not None and scheduler_interval == "step"):
                sched = np.empty(steps_per_epoch, np.float32)
                mkey = "betas" if ospec.name in ("adam", "adamw") else "momentum"
                if pgroup is not None and mkey in pgroup:
                    msched = np.empty(steps_per_epoch, np.float32)
                for k in range(steps_per_epoch):
                    if lr_schedule is not None:
                        sched[k] = _check_float(lr_schedule(ospec.step + k), "lr_schedule(step)")
                    else:  # the rates the eager loop's steps would use, then its scheduler.step()
                        sched[k] = float(pgroup["lr"])
                        if msched is not None:
                            v = pgroup[mkey]
                            msched[k] = float(v[0] if mkey == "betas" else v)
                        scheduler.step()
            hist["lr"].append(float(sched[0]) if sched is not None and len(sched) else cur_lr)
            t0 = time.perf_counter()
            if fast and on_gpu:
                if p is None and shuffle:  # the CPU trainer's own order for this epoch
                    p = _kernels.mlp_shuffle_order(n, seed, start_epoch + e)
                with cp.cuda.Device(chain.device_index):
                    r = CU.mlp_train(chain.weights, chain.biases, chain.relu, X, Y, epochs=1,
                                     batch_size=batch_size, drop_last=drop_last, perm=p, lr=ospec.lr,
                                     momentum=momentum, dampening=ospec.hyper["dampening"],
                                     weight_decay=ospec.hyper["weight_decay"],
                                     nesterov=bool(ospec.hyper["nesterov"]),
                                     weight_bufs=bufs_w, bias_bufs=bufs_b,
                                     first_step=start_steps + hist["steps"] == 0,
                                     allow_nonfinite=bool(allow_nonfinite),
                                     stream=cp.cuda.get_current_stream().ptr, frozen=frozen,
                                     interruptible=_interruptible())
            elif on_gpu:
                if p is None and shuffle:  # the CPU trainer's own order for this epoch
                    p = _kernels.mlp_shuffle_order(n, seed, start_epoch + e)
                with cp.cuda.Device(chain.device_index):
                    r = CU.mlp_fit(chain.spec_layers(states, norm_states=norm_states), X, Y,
                                   loss=lspec.as_dict(),
                                   optim=ospec.as_dict(lr=cur_lr), epochs=1, batch_size=batch_size,
                                   drop_last=drop_last, shuffle=False, seed=seed, epoch_offset=start_epoch + e,
                                   perm=p, step0=ospec.step, lr_schedule=sched,
                                   momentum_schedule=msched, dropout_seed=seed ^ 0x5DEECE66D,
                                   sample_weight=dev_w[0], class_weight=dev_w[1],
                                   pos_weight=dev_w[2], allow_nonfinite=bool(allow_nonfinite),
                                   stream=cp.cuda.get_current_stream().ptr)
                    # every training forward (the non-finite batch's too) counts for BatchNorm1d
                    chain.count_norm_batches(r["steps"] + (r["nonfinite"] is not None))
                ospec.step += r["steps"]
            elif fast:
                r = _kernels.mlp_train(chain.weights, chain.biases, chain.relu, X, Y, epochs=1,
                                 batch_size=batch_size, drop_last=drop_last, shuffle=bool(shuffle),
                                 seed=seed, epoch_offset=start_epoch + e, perm=p, mode="torch",
                                 lr=ospec.lr,
                                 momentum=momentum, dampening=ospec.hyper["dampening"],
                                 weight_decay=ospec.hyper["weight_decay"],
                                 nesterov=bool(ospec.hyper["nesterov"]), weight_bufs=bufs_w,
                                 bias_bufs=bufs_b, first_step=start_steps + hist["steps"] == 0,
                                 allow_nonfinite=bool(allow_nonfinite), frozen=frozen,
                                 interruptible=_interruptible(), path=cpu_path, **dist_kw)
            else:
                r = _kernels.mlp_fit(chain.spec_layers(states, norm_states=norm_states), X, Y,
                               loss=lspec.as_dict(),
                               optim=ospec.as_dict(lr=cur_lr), epochs=1, batch_size=batch_size,
                               drop_last=drop_last, shuffle=bool(shuffle), seed=seed,
                               epoch_offset=start_epoch + e, perm=p, step0=ospec.step,
                               lr_schedule=sched,
                               momentum_schedule=msched,
                               dropout_seed=seed ^ 0x5DEECE66D, sample_weight=sw,
                               class_weight=lspec.class_weight, pos_weight=lspec.pos_weight,
                               allow_nonfinite=bool(allow_nonfinite), path=cpu_path,
                               **dist_kw)
                # every training forward (the non-finite batch's too) counts for BatchNorm1d
                chain.count_norm_batches(r["steps"] + (r["nonfinite"] is not None))
                ospec.step += r["steps"]
            dt = time.perf_counter() - t0
            total_time += dt
            hist["steps"] += r["steps"]
            if r["nonfinite"] is not None:
                _, batch, bad = r["nonfinite"]
                raise NonFiniteLossError(
                    f"fit: the loss became {bad} at epoch {e + 1}, batch {batch + 1} (1-based); "
                    f"training stopped before that batch's update. Lower the learning rate, check "
                    f"the data for NaN/inf, or pass allow_nonfinite=True to continue",
                    epoch=e, batch=batch, loss=bad, history=hist)
            loss_e = r["losses"][0]
            hist["loss"].append(loss_e)
            sps = used_per_epoch / dt if dt > 0 else float("inf")
            hist["epoch_samples_per_sec"].append(sps)
            vl = None
            if val is not None:
                if on_gpu and not fast:  # predictions on the device, scored on the host
                    pred = _host(_predict_cuda(chain, val[0], cp, CU))
                    vl = lspec.value(pred, val[1])
                    if want_acc:
                        hist["val_accuracy"].append(_accuracy(pred, val[1]))
                elif on_gpu:  # on the device; one scalar comes back
                    pred = _predict_cuda(chain, val[0], cp, CU)
                    d = pred.astype(cp.float64) - val[1]
                    vl = float((d * d).mean())
                else:  # with distributed=True each rank predicts a part; one sum across ranks
                    pred = (_forward(chain, val[0]) if group is None else
                            _val_predictions_distributed(group, chain, val[0]))
                    vl = lspec.value(pred, val[1])
                    if want_acc:
                        hist["val_accuracy"].append(_accuracy(pred, val[1]))
                hist["val_loss"].append(vl)
            if scheduler is not None and scheduler_interval == "epoch":
                if sched_kind == "ReduceLROnPlateau":
                    scheduler.step(vl if vl is not None else loss_e)
                else:
                    scheduler.step()
            prog.update(e, loss_e, vl, sps)
            stop = False
            if patience is not None:
                score = vl if vl is not None else loss_e
                if best is None or score < best[0] - min_delta:
                    saved = ([w.copy() for w in chain.weights],
                             [b.copy() if b is not None else None for b in chain.biases],
                             [a.copy() for a in chain.norm_arrays()]) \
                        if restore_best_weights else None
                    best = (score, e, saved)
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                    if bad_epochs >= patience:
                        stop = True
                hist["best_epoch"] = best[1]
            if on_epoch_end is not None and on_epoch_end(hist) is True:
                stop = True
            if group is not None:  # a rank's on_epoch_end stops every rank (none left waiting)
                stop = bool(group.allreduce(np.array([float(stop)]), "sum")[0] > 0)
            if stop:
                break
        if best is not None and restore_best_weights and best[2] is not None:
            for w, sw_ in zip(chain.weights, best[2][0]):
                w[...] = sw_
            for b, sb in zip(chain.biases, best[2][1]):
                if b is not None:
                    b[...] = sb
            for a, sa in zip(chain.norm_arrays(), best[2][2]):  # norm parameters, running stats
                a[...] = sa
    except KeyboardInterrupt as e:
        e.history = hist  # the completed epochs; the model holds the last completed step
        raise
    finally:
        prog.close()
        hist["seconds"] = total_time
        done = len(hist["loss"])
        hist["samples_per_sec"] = used_per_epoch * done / total_time if total_time > 0 else 0.0
        if not fast:
            write_back_state(ospec, chain_params)
        hist["state"] = {"epoch": start_epoch + done, "seed": seed, "steps": start_steps + hist["steps"],
                         "momentum_buffers": None if bufs_w is None else
                         {"weights": list(bufs_w), "biases": list(bufs_b)}}
    return hist


# ---- fit(distributed=True) and resume --------------------------------------------------------

def _process_group(chain: Chain, X, Y, batch_size, epochs, kinds=()):
    """The fastmlp.distributed backend (initialised if needed), or None for one process. Checks
    that every rank was given the same problem (all ranks raise the same error otherwise);
    ``kinds``: more integers that must agree (trainer, loss, optimizer, weights given)."""
    group = _distributed_group()
    if group.size == 1:
        return None
    sig = np.array([X.shape[0], X.shape[1], Y.shape[1] if Y.ndim == 2 else 1, batch_size, epochs,
                    sum(int(w.size) for w in chain.weights), *kinds], dtype=np.int64)
    every = group.allgather(sig)
    if not (every == every[0]).all():
        raise ValueError("fit(distributed=True): the ranks were given different problems (rows, "
                         "features, outputs, batch_size, epochs, parameters, then trainer, loss, "
                         f"optimizer, sample/class weights per rank: {every.tolist()}); every "
                         "rank must pass the same X, y and options")
    return group


def _distributed_group():
    """fastmlp.distributed's backend, initialised on first use."""
    from . import distributed as dist

    if not dist.is_initialized():
        dist.init()
    return dist._group()


def _chain_arrays(chain: Chain, bufs_w, bufs_b, states=None, norm_states=None):
    arrays = [a for pair in zip(chain.weights, chain.biases) for a in pair if a is not None]
    if bufs_w is not None:
        arrays += [a for pair in zip(bufs_w, bufs_b) for a in pair if a is not None]
    for pair in states or ():  # the general trainer's optimizer state: (weight's, bias's) [s0, s1, s2]
        arrays += [a for st in pair if st is not None for a in st if a is not None]
    # the norm layers' float32 arrays (weight, bias, running statistics) and optimizer state
    arrays += [a for a in chain.norm_arrays() if a.dtype == np.float32]
    for pair in norm_states or ():
        arrays += [a for st in (pair or ()) if st is not None for a in st if a is not None]
    return arrays


def _broadcast_chain(group, chain: Chain, bufs_w, bufs_b, states=None, norm_states=None):
    """Rank 0's weights, biases and momentum buffers (or the general trainer's optimizer
    ``states``, and the norm layers' arrays and state) on every rank (one broadcast)."""
    arrays = _chain_arrays(chain, bufs_w, bufs_b, states, norm_states)
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    group.bcast(flat, 0)
    off = 0
    for a in arrays:
        a[...] = flat[off:off + a.size].reshape(a.shape)
        off += a.size


def _allreduce_hook(group, chain: Chain, fused=False):
    """mlp_train's keywords for data-parallel steps: one flat buffer (every weight and bias
    gradient, then the loss) and a callable that sums it across the ranks in place. ``fused``:
    mlp_fit's (the general trainer owns the buffer and hands it to the callable)."""
    allreduce = group.allreduce
    if fused:
        def reduce_buffer(buf):
            allreduce(buf, "sum")

        return {"grad_allreduce": reduce_buffer, "rank": group.rank, "world_size": group.size}
    size = 1 + sum(int(w.size) + (int(b.size) if b is not None else 0)
                   for w, b in zip(chain.weights, chain.biases))
    buf = np.zeros(size, dtype=np.float32)

    def reduce_step():
        allreduce(buf, "sum")

    return {"grad_allreduce": reduce_step, "grad_buffer": buf, "rank": group.rank,
            "world_size": group.size}


def _val_predictions_distributed(group, chain: Chain, Xv) -> np.ndarray:
    """The chain's predictions on X_val, every rank computing a contiguous part: the parts summed
    across the ranks (zeros elsewhere, so the sum is exact), the whole on every rank; the loss and
    accuracy are then those of one process."""
    n = Xv.shape[0]
    lo, hi = n * group.rank // group.size, n * (group.rank + 1) // group.size
    pred = np.zeros((n, chain.out_features), dtype=np.float32)
    if hi > lo:
        pred[lo:hi] = _forward(chain, Xv[lo:hi])
    group.allreduce(pred, "sum")
    return pred


def _check_resume(state):
    if not isinstance(state, dict):
        raise TypeError(f"fit: resume must be the dict history['state'] of an earlier fit, got "
                        f"{_kind(state)}")
    missing = [k for k in ("epoch", "seed", "steps") if k not in state]
    if missing:
        raise ValueError(f"fit: resume is missing {missing}; pass history['state'] of an earlier fit")
    return (_check_int(int(state["epoch"]), "resume['epoch']", 0),
            _check_int(int(state["steps"]), "resume['steps']", 0),
            int(state["seed"]) & ((1 << 64) - 1))


def _load_momentum(state, bufs_w, bufs_b, steps):
    mb = state.get("momentum_buffers")
    if mb is None:
        if steps > 0:
            raise ValueError("fit: resume has no momentum buffers (the earlier fit had momentum=0); "
                             "resuming with momentum != 0 would not continue that run")
        return
    for name, mine, theirs in (("weights", bufs_w, mb["weights"]), ("biases", bufs_b, mb["biases"])):
        if len(theirs) != len(mine):
            raise ValueError(f"fit: resume's momentum buffers have {len(theirs)} {name} entries, the "
                             f"model {len(mine)}")
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if (a is None) != (b is None):
                raise ValueError(f"fit: resume's momentum buffer {name}[{i}] does not match the model")
            if a is None:
                continue
            b = np.asarray(b._data if hasattr(b, "_data") else b)
            if b.shape != a.shape:
                raise ValueError(f"fit: resume's momentum buffer {name}[{i}] has shape {b.shape}, the "
                                 f"model's parameter {a.shape}")
            a[...] = b if type(a) is np.ndarray else _cupy().asarray(b)


from .nn.modules import STRUCTURE_VERSION as _STRUCTURE_VERSION  # noqa: E402  (the chain cache key)
