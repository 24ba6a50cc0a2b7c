"""``optim.Optimizer``: parameter groups, per-parameter state, zero_grad, state dicts."""
from __future__ import annotations

import copy

import numpy as np

from ..tensor import Tensor, _wrap

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)


def grad_arrays(group):
    """(params that have a gradient, their gradient arrays, fast) for one parameter group; fast
    is True when every parameter and gradient is a float32 numpy array (one CPU kernel call) or
    a float32 GPU array the CUDA kernels can step (one launch); otherwise the optimizers use
    array operations in the parameters' dtype."""
    params = []
    grads = []
    fast = True
    gpu = False
    for p in group["params"]:
        g = p.grad
        if g is None:
            continue
        a = p._data
        ga = g._data
        if type(a) is not _ndarray or a.dtype is not _F32 or ga.dtype is not _F32:
            if type(a) is not _ndarray and a.dtype == _F32 and ga.dtype == _F32:
                gpu = True  # a float32 GPU array: the CUDA kernels, where they can run
            else:
                fast = False
        params.append(p)
        grads.append(ga)
    if fast and gpu:
        fast = _gpu_kernels_ready(params[0]._data)
    return params, grads, fast


def _gpu_kernels_ready(a):
    if not hasattr(a, "__cuda_array_interface__"):
        return False
    from .. import ops_cuda

    return ops_cuda.unavailable_reason() == ""


def new_state_array(a):
    """A zero state Tensor shaped, typed and placed like the parameter array ``a``."""
    return _wrap(np.zeros_like(a) if type(a) is _ndarray else a * 0)


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class: holds ``param_groups`` (list of dicts with ``"params"`` and hyper-parameters)
    and ``state`` (parameter → dict). Subclasses implement ``step``."""

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            f"or dicts, but got {params.type()}")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for g in param_groups:
            self.add_param_group(g)

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of tensors in sets will change between runs. Please use "
                            "a list instead.")
        else:
            param_group["params"] = list(params)
        for p in param_group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            param_group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in param_group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        if len({id(p) for p in param_group["params"]}) != len(param_group["params"]):
            import warnings

            warnings.warn("optimizer contains a parameter group with duplicate parameters; in "
                          "future, this will cause an error", UserWarning, stacklevel=3)
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad._data[...] = 0

    def step(self, closure=None):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _closure_loss(closure):
        if closure is None:
            return None
        from ..autograd import enable_grad

        with enable_grad():
            return closure()

    # ---- state dicts (PyTorch's layout: params referred to by their index) -----------------
    def state_dict(self):
        index = {}
        groups = []
        i = 0
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            ids = []
            for p in g["params"]:
                if id(p) not in index:
                    index[id(p)] = i
                    i += 1
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state.get(p)
                if st:
                    state[index[id(p)]] = {k: (v.detach() if isinstance(v, Tensor) else v)
                                           for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the "
                             "size of optimizer's group")
        id_map = {}
        for g, s in zip(groups, saved_groups):
            for old, p in zip(s["params"], g["params"]):
                id_map[old] = p
        self.state = {}
        from ..devices import asarray
        from ..tensor import _wrap

        for k, st in state_dict["state"].items():
            key = int(k)
            if key not in id_map:
                continue
            p = id_map[key]
            new = {}
            for name, v in st.items():
                if name == "step":  # a count (torch keeps a 0-dim float tensor): a float here
                    new[name] = float(v.item() if hasattr(v, "item") else v)
                    continue
                if isinstance(v, Tensor) or hasattr(v, "shape"):
                    arr = v._data if isinstance(v, Tensor) else (
                        v.detach().cpu().numpy() if hasattr(v, "detach") else v)
                    if tuple(arr.shape) != tuple(p._data.shape):
                        raise ValueError(f"loaded state for a parameter of shape {tuple(p.shape)} "
                                         f"has {name} of shape {tuple(arr.shape)}")
                    new[name] = _wrap(asarray(arr, dtype=p._data.dtype, dev=p.device, copy=True))
                else:
                    new[name] = copy.deepcopy(v)
            self.state[p] = new
        for g, s in zip(groups, saved_groups):
            for k, v in s.items():
                if k != "params":
                    g[k] = v

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, g in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(g):
                if k != "params":
                    s += f"\n    {k}: {g[k]}"
        return s + "\n)"

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
