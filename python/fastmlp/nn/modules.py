"""``nn.Module`` and the layers of an MLP: Linear, ReLU, Sequential, Identity, … (losses: loss.py)

Parameters, buffers and submodules are kept in ordered registries (as in PyTorch) and also as
plain instance attributes, so ``self.fc1`` in a ``forward`` is an ordinary attribute lookup.

``state_dict()`` returns detached tensors sharing memory with the parameters; it can be handed to
PyTorch with ``{k: torch.from_numpy(v.numpy()) for k, v in sd.items()}``. ``load_state_dict``
accepts fastmlp Tensors, numpy arrays, or PyTorch tensors (anything with
``.detach().cpu().numpy()``; torch is never imported here).
"""
from __future__ import annotations

import math
from collections import OrderedDict, namedtuple
from itertools import islice

import numpy as np

from .. import dtypes as _dt
from .. import ops as _ops
from ..autograd import GradMode as _GradMode
from ..ops import infer_forward as _infer_native
from ..devices import asarray
from ..tensor import Tensor, _as_device, _wrap
from . import functional as F
from . import init
from .parameter import Parameter

__all__ = ["Module", "Linear", "ReLU", "Sequential", "ModuleList", "Identity", "Flatten"]

# Bumped by every attribute write, module (de)registration and train/eval switch on any Module:
# caches made from a model's structure (the fused trainer's traced chain) compare it to know they
# are still valid (one integer compare per use).
STRUCTURE_VERSION = [0]

_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _addindent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


def _to_numpy_value(v, key):
    """A state-dict value as a numpy array (fastmlp Tensor, numpy array, or a torch tensor)."""
    if isinstance(v, Tensor):
        a = v._data
        return a if type(a) is np.ndarray else a.get()
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch.Tensor, duck-typed
        return v.detach().cpu().numpy()
    if isinstance(v, (int, float, list)):
        return np.asarray(v)
    raise TypeError(f"load_state_dict: value for {key!r} must be a Tensor, numpy array or torch "
                    f"tensor, got {type(v).__name__}")


class Module:
    """Base class of all layers and models (``torch.nn.Module``)."""

    training: bool

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() takes no arguments")
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers"] = set()
        d["_modules"] = OrderedDict()

    # ---- registration ----------------------------------------------------------------------
    def _registries(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")
        return self.__dict__

    def __setattr__(self, name, value):
        d = self.__dict__
        STRUCTURE_VERSION[0] += 1
        if isinstance(value, Parameter):
            self._registries("parameters")
            self._discard(name, keep="_parameters")  # a re-assigned name keeps its place
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            self._registries("module")
            self._discard(name, keep="_modules")
            d["_modules"][name] = value
            self._modules_changed()
        elif "_parameters" in d and name in d["_parameters"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(torch.nn.Parameter or None expected)")
            d["_parameters"][name] = None
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(torch.nn.Module or None expected)")
            d["_modules"][name] = None
            self._modules_changed()
        elif "_buffers" in d and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(torch.Tensor or None expected)")
            d["_buffers"][name] = value
        object.__setattr__(self, name, value)

    def _discard(self, name, keep=None):
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg != keep:
                d[reg].pop(name, None)
        d["_non_persistent_buffers"].discard(name)

    def __delattr__(self, name):
        d = self.__dict__
        STRUCTURE_VERSION[0] += 1
        if "_parameters" in d:
            was_module = name in d["_modules"]
            self._discard(name)
            if was_module:
                self._modules_changed()
        object.__delattr__(self, name)

    def _modules_changed(self):
        STRUCTURE_VERSION[0] += 1

    def register_parameter(self, name, param):
        self._registries("parameters")
        if not isinstance(name, str):
            raise TypeError(f"parameter name should be a string. Got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"parameter name can't contain \".\" or be empty, got {name!r}")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(torch.nn.Parameter or None required)")
        self._discard(name, keep="_parameters")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        self._registries("buffers")
        if not isinstance(name, str) or "." in name or name == "":
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(torch Tensor or None required)")
        self._discard(name, keep="_buffers")
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or name == "":
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        self._registries("module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._discard(name, keep="_modules")
        self._modules[name] = module
        object.__setattr__(self, name, module)
        self._modules_changed()

    register_module = add_module

    def get_submodule(self, target):
        mod = self
        if target == "":
            return mod
        for item in target.split("."):
            if item not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no attribute `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target):
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"`{name}` is not an nn.Parameter")
        return mod._parameters[name]

    # ---- calling ---------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  f'"forward" function')

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Linear/ReLU/MSELoss call their kernels straight from __call__ (one Python call less
        # per layer); a subclass that defines its own forward gets the generic __call__ back.
        if "forward" in cls.__dict__ and "__call__" not in cls.__dict__:
            cls.__call__ = Module.__call__

    # ---- traversal -------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name,
                                       remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in m.__dict__[registry].items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield (mprefix + ("." if mprefix else "") + name), v

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ---------------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            m.__dict__["training"] = mode
        STRUCTURE_VERSION[0] += 1
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad._data[...] = 0

    # ---- devices and dtypes ----------------------------------------------------------------
    def _apply_arrays(self, fn):
        """Replace every parameter's and buffer's array (and grad) in place, keeping identities."""
        for m in self.modules():
            for reg in ("_parameters", "_buffers"):
                for v in m.__dict__[reg].values():
                    if v is None:
                        continue
                    v._data = fn(v._data)
                    if v.grad is not None:
                        v.grad._data = fn(v.grad._data)
        return self

    def to(self, *args, **kwargs):
        from ..tensor import _parse_to

        dev, dt, _ = _parse_to(args, kwargs)
        if dev is not None and dev.type == "cuda":
            from ..devices import check_cuda_available

            check_cuda_available()
        np_dt = None if dt is None else _dt.to_numpy_dtype(dt)
        if np_dt is not None and np_dt.kind != "f":
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired "
                            f"dtype={dt}")

        def conv(a):
            if dev is not None:
                a = asarray(a, dev=dev)
            if np_dt is not None and a.dtype.kind == "f" and a.dtype != np_dt:
                a = a.astype(np_dt)
            return a

        return self._apply_arrays(conv)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(_as_device("cuda" if device is None else device))

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def type(self, dst_type):
        return self.to(dst_type)

    # ---- state dict ------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """name → tensor for every parameter and persistent buffer (sharing memory, detached).

        To PyTorch: ``torch_model.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in
        sd.items()})``. From PyTorch: ``model.load_state_dict(torch_model.state_dict())`` works
        directly (torch tensors are read through ``.detach().cpu().numpy()``).
        """
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy ``state_dict`` into this module's parameters and buffers (in place).

        Missing or unexpected keys raise RuntimeError when ``strict`` (listing them); shape
        mismatches always raise. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        errors = []
        pairs = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            src = _to_numpy_value(state_dict[k], k)
            if tuple(src.shape) != tuple(target._data.shape):
                errors.append(f"size mismatch for {k}: copying a param with shape "
                              f"torch.Size({list(src.shape)}) from checkpoint, the shape in current "
                              f"model is torch.Size({list(target._data.shape)}).")
                continue
            pairs.append((target, src))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        for target, src in pairs:
            if src.dtype.kind not in "fiub":
                raise TypeError(f"load_state_dict: cannot load an array of dtype {src.dtype}")
            if assign:
                target._data = asarray(src, dtype=target._data.dtype, dev=target.device, copy=True)
            else:
                target._data[...] = asarray(src, dtype=target._data.dtype, dev=target.device)
        return _IncompatibleKeys(missing, unexpected)

    # ---- representation --------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        child = []
        for name, m in self._modules.items():
            child.append(f"({name}): " + _addindent(repr(m), 2))
        lines = lines + child
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not child:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def __dir__(self):
        return sorted(set(super().__dir__()))

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """``y = x @ weight.T + bias``; ``weight`` is [out_features, in_features].

    Initialised as PyTorch does: ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(in), 1/sqrt(in)),
    for the weight and the same bound for the bias.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        for n, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"Linear: {n} must be a non-negative int, got {v!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        np_dt = _dt.to_numpy_dtype(dtype) if dtype is not None else np.dtype(np.float32)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=np_dt))
        if bias:
            self.bias = Parameter(np.empty((self.out_features,), dtype=np_dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None and str(device) != "cpu":
            self.to(device)

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F._linear(input, self.weight, self.bias, False, self)

    def __call__(self, input):
        return F._linear(input, self.weight, self.bias, False, self)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input, self.inplace)

    def __call__(self, input):
        try:
            node = input._node
        except AttributeError:
            raise F._relu_type_error(input) from None
        if node is not None and F._fuse_relu(input):  # fused into the Linear before it
            return input
        return F.relu(input, self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        if not isinstance(input, Tensor):
            raise F.not_tensor_error("flatten", (("input", input),))
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: integer-keyed children, renumbered as PyTorch does."""

    def _renumber(self, modules):
        for k in list(self._modules.keys()):
            object.__delattr__(self, k)
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __setitem__(self, idx, module):
        key = list(self._modules.keys())[idx]
        setattr(self, key, module)

    def __delitem__(self, idx):
        keys = list(self._modules.keys())
        doomed = set(keys[idx] if isinstance(idx, slice) else [keys[idx]])
        self._renumber([m for k, m in self._modules.items() if k not in doomed])

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        items = list(self._modules.values())
        items.insert(index, module)
        self._renumber(items)
        return self


class Sequential(_ModuleSequence):
    """Modules applied in order. ``Linear`` directly followed by ``ReLU`` or any other element-wise
    activation module (one with ``_act_spec``, see nn/activation.py) runs as one fused kernel."""

    def __init__(self, *args):
        super().__init__()
        self.__dict__["_plan"] = None
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def _modules_changed(self):
        STRUCTURE_VERSION[0] += 1
        self.__dict__["_plan"] = None

    def __getstate__(self):
        state = super().__getstate__()
        state["_plan"] = None  # a cache, rebuilt by the first forward
        state.pop("_infer", None)  # the no_grad forward's native plan (a cache too)
        return state

    def _build_plan(self):
        from .activation import _ElementwiseAct  # (activation.py builds on this module)

        act_call = _ElementwiseAct.__call__
        # The plan remembers the children it was made from (by identity) and forward rebuilds it
        # whenever they differ, so writes that bypass __setattr__ (``seq._modules["0"] = ...``,
        # replacing ``_modules`` itself) never leave a stale plan running old layers.
        key = tuple(self._modules.values())
        mods = [m for m in key if m is not None]
        plan = []
        i = 0
        while i < len(mods):
            m = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if type(m) is Linear and type(nxt) is ReLU:
                plan.append((True, m))
                i += 2
            elif (type(m) is Linear and hasattr(nxt, "_act_spec")
                  and type(nxt).__call__ is act_call):
                plan.append((nxt, m))  # its spec is read at each call (parameters may change)
                i += 2
            else:
                plan.append((False, m))
                i += 1
        self.__dict__["_plan"] = (key, plan)
        return plan

    def _infer_state(self, key):
        """(version, children, InferPlan or None, [(parameter, its array)]): the whole chain as
        one native forward (fastmlp.ops.InferPlan) when it is Linear layers with element-wise
        activations (and Identity, or Dropout that is inactive); None in the third slot otherwise."""
        try:
            from .activation import _ElementwiseAct
            from .layers import Dropout
        except ImportError:  # the interpreter is finalizing: the layer loop runs the model
            return (None, key, None, [])

        cached = self._plan
        plan = cached[1] if cached is not None and cached[0] == key else self._build_plan()
        act_call = _ElementwiseAct.__call__
        layers = []  # [Linear, act (kind, p0, p1) or None]
        ok = True
        for fused, m in plan:
            if type(m) is Linear:
                act = None if fused is False else (1, 0.0, 0.0) if fused is True else \
                    tuple(fused._act_spec())
                layers.append([m, act])
            elif fused is False and type(m) is Identity:
                continue
            elif fused is False and type(m) is Dropout and (not m.training or m.p == 0):
                continue
            elif fused is False and layers and layers[-1][1] is None and (
                    type(m) is ReLU or (hasattr(m, "_act_spec") and type(m).__call__ is act_call)):
                layers[-1][1] = (1, 0.0, 0.0) if type(m) is ReLU else tuple(m._act_spec())
            else:
                ok = False
                break
        ip, arrays = None, []
        if ok and layers:
            ws, bs, acts = [], [], []
            for m, act in layers:
                w, b = m.weight, m.bias
                ws.append(w._data)
                bs.append(None if b is None else b._data)
                acts.append(None if act is None else (int(act[0]), float(act[1]), float(act[2])))
                arrays += [(w, w._data)] + ([] if b is None else [(b, b._data)])
            try:
                ip = _ops.InferPlan(ws, bs, acts)
            except (TypeError, ValueError):  # e.g. float64 or GPU parameters: the layer loop
                ip = None
        st = (STRUCTURE_VERSION[0], key, ip, arrays)
        self.__dict__["_infer"] = st
        return st

    def _infer_forward(self, input):
        """The no_grad forward in one native call, or None where it does not apply. Valid while
        no module attribute changed (STRUCTURE_VERSION), the children are the same objects and
        every parameter holds the same array (in-place updates are read by the plan)."""
        st = self.__dict__.get("_infer")
        key = tuple(self._modules.values())
        if st is None or st[0] != STRUCTURE_VERSION[0] or st[1] != key:
            st = self._infer_state(key)
        else:
            for p, a in st[3]:
                if p._data is not a:
                    st = self._infer_state(key)
                    break
        ip = st[2]
        if ip is None:
            return None
        try:
            x = input._data
        except AttributeError:
            return None
        r = _infer_native(ip.capsule, x, None)
        return None if r is None else _wrap(r, None, False)

    def forward(self, input):
        if not _GradMode.enabled:
            r = self._infer_forward(input)
            if r is not None:
                return r
        cached = self._plan
        if cached is not None and cached[0] == tuple(self._modules.values()):
            plan = cached[1]
        else:
            plan = self._build_plan()
        linear = F._linear
        for fused, m in plan:
            if fused is False:
                input = m(input)
            elif fused is True:
                input = linear(input, m.weight, m.bias, True, m)
            else:
                input = linear(input, m.weight, m.bias, fused._act_spec(), m)
        return input

    def _get_item_by_idx(self, idx):
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range")
        return next(islice(self._modules.values(), idx % n, None))

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return self._get_item_by_idx(idx.__index__() if not isinstance(idx, int) else idx)


class ModuleList(_ModuleSequence):
    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return list(self._modules.values())[idx]
