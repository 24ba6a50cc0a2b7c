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

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _C

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

    @property
    def in_features(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def device(self) -> str:
        """'cpu' or 'cuda:<index>': where every parameter lives (ValueError when they differ)."""
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
        for w, r in zip(self.weights, self.relu):
            parts.append(f"{w.shape[0]}{' relu' if r else ''}")
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


def extract_chain(model) -> Chain:
    """The model as a :class:`Chain` sharing its parameter memory.

    ``nn.Sequential`` of Linear/ReLU is read directly; another Module is read from its Linear
    modules (registration order) with the ReLU placement found by probing its forward.
    """
    if isinstance(model, Chain):
        chain = model
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
        C.mlp_forward(chain.weights, chain.biases, chain.relu, Xd, out,
                      cp.cuda.get_current_stream().ptr)
    return _host(out) if on_host else out


def predict(model, X) -> np.ndarray:
    """The model's output on ``X`` (n, in) as a float32 (n, out) array, by the native forward.
    For a model on the GPU it runs there: a numpy result for host ``X``, CuPy for GPU ``X``."""
    chain = extract_chain(model)
    if chain.is_cuda:
        cp, C = _cuda_backend(chain)
        return _predict_cuda(chain, X, cp, C)
    X = _check_predict_input(chain, _as_data(X, "X"))
    return _C.mlp_forward(chain.weights, chain.biases, chain.relu, _f32(X))


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

def _check_int(v, name, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"fit: {name} must be an int, got {_kind(v)}")
    if v < lo:
        raise ValueError(f"fit: {name} must be >= {lo}, got {v}")
    return int(v)


def _check_float(v, name, lo=0.0):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"fit: {name} must be a number, got {_kind(v)}")
    v = float(v)
    if not (v >= lo) or math.isinf(v):
        raise ValueError(f"fit: invalid {name}: {v} (must be finite and >= {lo})")
    return v


def fit(model, X, y, *, epochs, batch_size, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
        nesterov=False, shuffle=True, drop_last=False, seed=None, validation_data=None,
        progress=None, allow_nonfinite=False, permutation=None):
    """Train ``model`` (an ``nn.Sequential`` of Linear/ReLU, or a Module whose forward is such a
    chain) on ``X``, ``y`` with MSE loss and SGD, whole epochs at a time in native code.

    Same semantics as the eager loop with ``DataLoader(..., batch_size, shuffle, drop_last)``,
    ``nn.MSELoss()`` and ``optim.SGD(model.parameters(), lr, momentum, dampening, weight_decay,
    nesterov)`` created fresh for this call. Parameters are updated in place.

    - ``X`` (n, in) and ``y`` (n, out) are numpy arrays or Tensors (converted to float32); ``y``
      of shape (n,) is read as (n, 1) when the model has one output.
    - ``shuffle``: a new seeded permutation each epoch; ``seed`` (int) makes it reproducible (None:
      a fresh random seed, recorded in the history). ``permutation``: an explicit sample order,
      (n,) for every epoch or (epochs, n), instead of shuffling.
    - ``validation_data=(X_val, y_val)``: its MSE after every epoch in ``history["val_loss"]``.
    - ``progress``: a tqdm bar (or a line per epoch without tqdm) on stderr; None shows it only
      when stderr is a terminal.
    - A NaN/inf batch loss raises :class:`NonFiniteLossError` naming the epoch and batch (the
      weights are as before that batch); ``allow_nonfinite=True`` keeps going.

    - A model on the GPU (``model.to("cuda")``) trains there with the same semantics and the same
      sample order for a given seed; ``X``/``y`` may be host data (uploaded once) or GPU arrays /
      CUDA Tensors (used in place). A model split across devices is a ValueError; a GPU model
      without a usable CUDA device a RuntimeError.

    Returns a :class:`History`: ``loss`` (per-epoch mean of the batch losses, weighted by batch
    size), ``val_loss``, ``samples_per_sec`` (whole run), ``epoch_samples_per_sec``, ``seconds``,
    ``steps``, ``seed``, ``device``.
    """
    chain = extract_chain(model)
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    lr = _check_float(lr, "learning rate lr")
    momentum = _check_float(momentum, "momentum")
    dampening = _check_float(dampening, "dampening")
    weight_decay = _check_float(weight_decay, "weight_decay")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("fit: Nesterov momentum requires a momentum and zero dampening")
    on_gpu = chain.is_cuda
    if on_gpu:
        cp, CU = _cuda_backend(chain)
        X, Y = prepare_data_cuda(chain, X, y, cp)
    else:
        X, Y = prepare_data(chain, X, y)
    n = X.shape[0]
    if drop_last and n < batch_size:
        raise ValueError(f"fit: drop_last=True with {n} samples and batch_size={batch_size} leaves "
                         "no batch to train on")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("fit: validation_data must be a tuple (X_val, y_val)")
        if on_gpu:
            val = prepare_data_cuda(chain, validation_data[0], validation_data[1], cp, what="X_val")
        else:
            val = prepare_data(chain, validation_data[0], validation_data[1], what="X_val")
    perm = None
    if permutation is not None:
        perm = np.asarray(permutation)
        if not np.issubdtype(perm.dtype, np.integer):
            raise TypeError(f"fit: permutation must hold integers (sample indices), got dtype {perm.dtype}")
        perm = np.ascontiguousarray(perm, dtype=np.int64)
        if perm.shape not in ((n,), (epochs, n)):
            raise ValueError(f"fit: permutation must have shape ({n},) or ({epochs}, {n}), got {perm.shape}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) & ((1 << 64) - 1)
    else:
        seed = _check_int(seed, "seed", 0) & ((1 << 64) - 1)

    bufs_w = bufs_b = None
    if momentum != 0:
        xp = cp if on_gpu else np
        bufs_w = [xp.zeros_like(w) for w in chain.weights]
        bufs_b = [xp.zeros_like(b) if b is not None else None for b in chain.biases]

    hist = History(loss=[], val_loss=[], epoch_samples_per_sec=[], samples_per_sec=0.0,
                   seconds=0.0, steps=0, seed=seed, architecture=chain.describe(),
                   device=chain.device)
    prog = _Progress(progress, epochs)
    used_per_epoch = (n // batch_size) * batch_size if drop_last else n
    total_time = 0.0
    try:
        for e in range(epochs):
            if perm is None:
                p = None
            else:
                p = perm if perm.ndim == 1 else perm[e]
            t0 = time.perf_counter()
            if on_gpu:
                if p is None and shuffle:  # the CPU trainer's own order for this epoch
                    p = _C.mlp_shuffle_order(n, seed, e)
                with cp.cuda.Device(chain.device_index):
                    r = CU.mlp_train(chain.weights, chain.biases, chain.relu, X, Y, epochs=1,
                                     batch_size=batch_size, drop_last=drop_last, perm=p, lr=lr,
                                     momentum=momentum, dampening=dampening,
                                     weight_decay=weight_decay, nesterov=bool(nesterov),
                                     weight_bufs=bufs_w, bias_bufs=bufs_b,
                                     first_step=hist["steps"] == 0,
                                     allow_nonfinite=bool(allow_nonfinite),
                                     stream=cp.cuda.get_current_stream().ptr)
            else:
                r = _C.mlp_train(chain.weights, chain.biases, chain.relu, X, Y, epochs=1,
                                 batch_size=batch_size, drop_last=drop_last, shuffle=bool(shuffle),
                                 seed=seed, epoch_offset=e, perm=p, mode="torch", lr=lr,
                                 momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                 nesterov=bool(nesterov), weight_bufs=bufs_w, bias_bufs=bufs_b,
                                 first_step=hist["steps"] == 0, allow_nonfinite=bool(allow_nonfinite))
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
            loss = r["losses"][0]
            hist["loss"].append(loss)
            sps = used_per_epoch / dt if dt > 0 else float("inf")
            hist["epoch_samples_per_sec"].append(sps)
            vl = None
            if val is not None:
                if on_gpu:  # on the device; one scalar comes back
                    pred = _predict_cuda(chain, val[0], cp, CU)
                    d = pred.astype(cp.float64) - val[1]
                    vl = float((d * d).mean())
                else:
                    pred = _C.mlp_forward(chain.weights, chain.biases, chain.relu, val[0])
                    vl = _mse(pred, val[1])
                hist["val_loss"].append(vl)
            prog.update(e, loss, vl, sps)
    finally:
        prog.close()
        hist["seconds"] = total_time
        done = len(hist["loss"])
        hist["samples_per_sec"] = used_per_epoch * done / total_time if total_time > 0 else 0.0
    return hist
