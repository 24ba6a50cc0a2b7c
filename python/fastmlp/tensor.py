"""``fastmlp.Tensor``: one numpy array (CPU) or CuPy array (CUDA) plus the autograd tape.

Each differentiable op is a small ``Node`` subclass defined next to the function that records it
(forward here, backward in the node). The hot ops of an MLP (linear, ReLU, MSE, their backward and
the SGD update) live in :mod:`fastmlp.nn.functional` and :mod:`fastmlp.optim` and call the compiled
kernels; the cold ops here use numpy (or CuPy) directly.

``Tensor.numpy()`` on the CPU returns the underlying array itself, not a copy, as PyTorch shares
memory: writing into it changes the tensor. Unlike PyTorch it also works on tensors that require
grad (other parts of fastmlp update parameters through it).
"""
from __future__ import annotations

import builtins
import sys

import numpy as np

from . import dtypes as _dt
from .autograd import GradMode, Node, run_backward
from .devices import CPU, array_module, asarray, check_cuda_available, device, device_of

__all__ = ["Tensor", "Size", "tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full",
           "zeros_like", "ones_like", "empty_like", "full_like", "rand", "randn", "rand_like",
           "randn_like", "randint", "randperm", "arange", "linspace", "eye", "cat", "stack",
           "is_tensor", "numel", "exp", "log", "sqrt", "tanh", "sigmoid", "abs", "sum", "mean",
           "matmul", "mm", "flatten", "transpose", "reshape", "argmax", "max", "min", "clamp",
           "where", "allclose", "equal", "squeeze", "unsqueeze"]

_F32 = np.dtype(np.float32)
_new = object.__new__
_getrefcount = sys.getrefcount
_ndarray = np.ndarray


class Size(tuple):
    """A tensor's shape: a tuple that prints as ``fastmlp.Size([2, 3])``."""

    def __repr__(self):
        return f"fastmlp.Size([{', '.join(str(s) for s in self)}])"

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n


def _wrap(data, node=None, requires_grad=False):
    """A Tensor around ``data`` (no copy, no checks): the one constructor the ops use."""
    t = _new(Tensor)
    t._data = data
    t.grad = None
    t.requires_grad = requires_grad
    t._node = node
    return t


def _result(data, node_cls, inputs, *saved):
    """Wrap an op's output; record ``node_cls`` when grad mode is on and an input needs grad."""
    if type(data) is not _ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # numpy turns 0-d results into scalars; a Tensor holds an array
    if GradMode.enabled:
        for t in inputs:
            if t.requires_grad:
                return _wrap(data, node_cls(inputs, saved), True)
    return _wrap(data)


def _same_device(a, b):
    if type(a) is not type(b) and device_of(a) != device_of(b):
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            f"{device_of(a)} and {device_of(b)}!")


def _as_tensor_like(x, like):
    """Turn an operand (Tensor, array, Python number) into a Tensor on ``like``'s device."""
    if isinstance(x, Tensor):
        _same_device(like._data, x._data)
        return x
    if isinstance(x, (builtins.int, builtins.float, builtins.bool)):
        # A Python scalar takes the tensor's dtype when it is floating point (as torch does).
        dt = like._data.dtype
        if dt.kind != "f":
            dt = np.dtype(np.float32) if isinstance(x, builtins.float) else dt
        return _wrap(array_module(like.device).asarray(x, dtype=dt))
    if isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__"):
        return _wrap(asarray(x, dev=like.device))
    raise TypeError(f"unsupported operand type for a Tensor op: {type(x).__name__}")


def _unbroadcast(g, shape):
    """Sum ``g`` down to ``shape`` (the reverse of broadcasting)."""
    if g.shape == shape:
        return g
    nd = g.ndim - len(shape)
    if nd > 0:
        g = g.sum(axis=tuple(range(nd)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _unb(g, like):
    """The gradient for an input ``like``: un-broadcast to its shape, in its dtype."""
    g = _unbroadcast(g, like.shape)
    if g.dtype != like.dtype and like.dtype.kind == "f":
        g = g.astype(like.dtype)
    return g


def _fmt_array(a):
    """Array text in PyTorch's style: 4 decimals, or integers written as ``1.``."""
    if a.size == 0:
        return "[]" if a.ndim == 1 else f"size={tuple(a.shape)}"
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 1e8:
            opts = dict(floatmode="unique", precision=4)
        else:
            big = finite.size and (np.abs(finite).max() >= 1e8 or (
                np.abs(finite[finite != 0]).min(initial=1.0) < 1e-4 and np.abs(finite).max() > 0))
            opts = dict(floatmode="fixed", precision=4, suppress_small=False)
            if big:
                opts["formatter"] = {"float_kind": lambda v: f"{v:.4e}"}
        return np.array2string(a, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3,
                               **opts)
    if a.dtype.kind == "b":
        return np.array2string(a, separator=", ", prefix="tensor(",
                               formatter={"bool": lambda v: "True" if v else "False"})
    return np.array2string(a, separator=", ", prefix="tensor(", threshold=1000)


class Tensor:
    """A multi-dimensional array with autograd, shaped like ``torch.Tensor``.

    ``Tensor(data)`` copies ``data`` into a float32 tensor (``torch.Tensor`` semantics);
    ``Tensor(2, 3)`` makes an uninitialised (here: zero) 2×3 float32 tensor. Prefer
    :func:`fastmlp.tensor`, :func:`fastmlp.from_numpy` and the factory functions.
    """

    __slots__ = ("_data", "grad", "requires_grad", "_node", "__weakref__")
    __hash__ = object.__hash__
    __array_priority__ = 1000  # numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, *args, requires_grad=False):
        if len(args) == 1 and not isinstance(args[0], builtins.int):
            src = args[0]
            data = src._data.astype(np.float32) if isinstance(src, Tensor) \
                else np.array(src, dtype=np.float32)
        else:
            shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            data = np.zeros(tuple(shape), dtype=np.float32)
        self._data = data
        self.grad = None
        self.requires_grad = builtins.bool(requires_grad)
        self._node = None

    # ---- basic properties ----------------------------------------------------------------
    @property
    def data(self):
        """A detached tensor sharing this tensor's memory (as ``torch.Tensor.data``)."""
        return _wrap(self._data)

    @data.setter
    def data(self, value):
        if isinstance(value, Tensor):
            value = value._data
        else:
            value = asarray(value, dev=self.device)
        self._data = value

    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[dim]

    def dim(self):
        return self._data.ndim

    ndimension = dim

    @property
    def ndim(self):
        return self._data.ndim

    def numel(self):
        return builtins.int(self._data.size)

    nelement = numel

    @property
    def dtype(self):
        return _dt.from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        return CPU if type(self._data) is _ndarray else device_of(self._data)

    @property
    def is_cuda(self):
        return type(self._data) is not _ndarray

    @property
    def is_leaf(self):
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    def is_contiguous(self):
        return builtins.bool(self._data.flags.c_contiguous)

    def element_size(self):
        return self._data.itemsize

    def stride(self, dim=None):
        st = tuple(s // self._data.itemsize for s in self._data.strides)
        return st if dim is None else st[dim]

    def data_ptr(self):
        return self._data.ctypes.data if type(self._data) is _ndarray else self._data.data.ptr

    # ---- conversion ------------------------------------------------------------------------
    def numpy(self, force=False):
        """The underlying numpy array itself (shared memory, no copy) for a CPU tensor."""
        if type(self._data) is not _ndarray:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use "
                            "Tensor.cpu() to copy the tensor to host memory first.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and a.dtype != dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def item(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.item()

    def tolist(self):
        return self._data.tolist()

    def __float__(self):
        return builtins.float(self.item())

    def __int__(self):
        return builtins.int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return builtins.int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return builtins.bool(self._data.item())

    def __format__(self, spec):
        if self._data.ndim == 0 or (spec and self._data.size == 1):
            return format(self.item(), spec)
        return format(repr(self), spec)

    def detach(self):
        return _wrap(self._data)

    def detach_(self):
        self._node = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad=True):
        if self._node is not None and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you "
                               "want to use a computed variable in a subgraph that doesn't require "
                               "differentiation use var_no_grad = var.detach().")
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self.requires_grad = builtins.bool(requires_grad)
        return self

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(self)`` each time a backward pass has accumulated into this leaf's ``.grad``;
        returns a handle with ``remove()``."""
        from .autograd import register_post_accumulate_grad_hook

        return register_post_accumulate_grad_hook(self, hook)

    def retain_grad(self):
        raise NotImplementedError("fastmlp: retain_grad() on non-leaf tensors is not supported")

    def clone(self):
        return _result(self._data.copy(), _IdentityBackward, (self,))

    def contiguous(self):
        if self._data.flags.c_contiguous:
            return self
        return _result(array_module(self.device).ascontiguousarray(self._data), _IdentityBackward,
                       (self,))

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other_tensor)``."""
        dev, dt, copy = _parse_to(args, kwargs)
        return self._to(dev, dt, copy)

    def _to(self, dev, dt, copy=False):
        cur_dev = self.device
        arr = self._data
        if dev is not None and dev != cur_dev:
            if dev.type == "cuda":
                check_cuda_available()
            arr = asarray(arr, dev=dev)
        np_dt = None if dt is None else _dt.to_numpy_dtype(dt)
        if np_dt is not None and arr.dtype != np_dt:
            arr = arr.astype(np_dt)
        if arr is self._data:
            if not copy:
                return self
            arr = arr.copy()
        if self.requires_grad and GradMode.enabled and np_dt is not None and np_dt.kind == "f":
            return _wrap(arr, _ToCopyBackward((self,), ()), True)
        return _result(arr, _ToCopyBackward, (self,))

    def cpu(self):
        return self._to(CPU, None)

    def cuda(self, device=None):
        check_cuda_available()
        return self._to(_as_device("cuda" if device is None else device), None)

    def float(self):
        return self._to(None, _dt.float32)

    def double(self):
        return self._to(None, _dt.float64)

    def half(self):
        return self._to(None, _dt.float16)

    def long(self):
        return self._to(None, _dt.int64)

    def int(self):
        return self._to(None, _dt.int32)

    def bool(self):
        return self._to(None, _dt.bool_)

    def type(self, dtype=None):
        if dtype is None:
            return {"float32": "fastmlp.FloatTensor", "float64": "fastmlp.DoubleTensor",
                    "int64": "fastmlp.LongTensor"}.get(self._data.dtype.name,
                                                       f"fastmlp.{self._data.dtype.name}")
        return self._to(None, dtype)

    def type_as(self, other):
        return self._to(None, other.dtype)

    # ---- autograd --------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        if create_graph:
            raise NotImplementedError("fastmlp: create_graph=True (higher-order gradients) is not supported")
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            a = self._data
            if a.ndim == 0 and a.dtype is _F32 and type(a) is _ndarray:
                g = _ONE_F32
            elif a.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            else:
                g = _ones_like_scalar(a)
        else:
            if isinstance(gradient, Tensor):
                _same_device(self._data, gradient._data)
                g = gradient._data
            else:
                g = asarray(gradient, dev=self.device)
            if g.shape != self._data.shape:
                raise RuntimeError(f"Mismatch in shape: grad_output[0] has a shape of {Size(g.shape)} "
                                   f"and output[0] has a shape of {self.shape}.")
            g = g.astype(self._data.dtype, copy=True)  # nodes may read it; never alias the caller's
        run_backward(self, g, retain_graph)

    # ---- representation --------------------------------------------------------------------
    def __repr__(self):
        a = self._data
        if type(a) is not _ndarray:
            a = a.get()
        extra = []
        if a.dtype not in (np.float32, np.int64, np.bool_) or (a.size == 0 and a.dtype != np.float32):
            extra.append(f"dtype={self.dtype!r}")
        if self.is_cuda:
            extra.insert(0, f"device='{self.device}'")
        if self._node is not None:
            extra.append(f"grad_fn=<{self._node.name()}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        body = _fmt_array(a) if a.ndim else _fmt_array(a.reshape(1))[1:-1]
        if a.size == 0 and a.ndim != 1:
            return f"tensor([], {', '.join([body] + extra)})"
        return "tensor(" + ", ".join([body] + extra) + ")"

    def __str__(self):
        return self.__repr__()

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        if self.requires_grad and GradMode.enabled:
            return (self[i] for i in range(self._data.shape[0]))
        return (_wrap(row) for row in self._data)

    def __reduce_ex__(self, protocol):
        # Pickling (e.g. for multiprocessing) copies the data; fastmlp.save never pickles.
        return (_rebuild, (np.asarray(self.cpu()._data), self.requires_grad))

    # ---- arithmetic ------------------------------------------------------------------------
    def __add__(self, other):
        return _binary(self, other, _Add)

    def __radd__(self, other):
        return _binary(_as_tensor_like(other, self), self, _Add)

    def __sub__(self, other):
        return _binary(self, other, _Sub)

    def __rsub__(self, other):
        return _binary(_as_tensor_like(other, self), self, _Sub)

    def __mul__(self, other):
        return _binary(self, other, _Mul)

    def __rmul__(self, other):
        return _binary(_as_tensor_like(other, self), self, _Mul)

    def __truediv__(self, other):
        return _binary(self, other, _Div)

    def __rtruediv__(self, other):
        return _binary(_as_tensor_like(other, self), self, _Div)

    def __pow__(self, other):
        if isinstance(other, (builtins.int, builtins.float)):
            return _result(self._data ** other, _PowScalar, (self,), self._data, other)
        return _binary(self, other, _Pow)

    def __rpow__(self, other):
        return _binary(_as_tensor_like(other, self), self, _Pow)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(_as_tensor_like(other, self), self)

    def __neg__(self):
        return _result(-self._data, _Neg, (self,))

    def __pos__(self):
        return self

    def __abs__(self):
        return abs(self)

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    divide = __truediv__
    multiply = __mul__
    subtract = __sub__
    neg = __neg__
    pow = __pow__

    # comparisons give bool tensors (no gradient)
    def _cmp(self, other, op):
        if other is None:
            return NotImplemented  # `t == None` is False, `t != None` is True, as in PyTorch
        o = other._data if isinstance(other, Tensor) else other
        if isinstance(other, Tensor):
            _same_device(self._data, o)
        return _wrap(op(self._data, o))

    def __eq__(self, other):
        return self._cmp(other, np.equal if self.device.type == "cpu" else (lambda a, b: a == b))

    def __ne__(self, other):
        return self._cmp(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._cmp(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._cmp(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._cmp(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._cmp(other, lambda a, b: a >= b)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    # in-place ops: allowed on tensors that need no gradient, or under no_grad()
    def _check_inplace(self):
        if self.requires_grad and GradMode.enabled:
            if self._node is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
            raise RuntimeError("fastmlp: in-place operations on tensors that are part of an autograd "
                               "graph are not supported; use the out-of-place op")

    def _operand(self, other):
        if isinstance(other, Tensor):
            _same_device(self._data, other._data)
            return other._data
        return other

    def add_(self, other, alpha=1):
        self._check_inplace()
        o = self._operand(other)
        self._data += o if alpha == 1 else alpha * o
        return self

    def sub_(self, other, alpha=1):
        self._check_inplace()
        o = self._operand(other)
        self._data -= o if alpha == 1 else alpha * o
        return self

    def mul_(self, other):
        self._check_inplace()
        self._data *= self._operand(other)
        return self

    def div_(self, other):
        self._check_inplace()
        self._data /= self._operand(other)
        return self

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def zero_(self):
        self._check_inplace()
        self._data[...] = 0
        return self

    def fill_(self, value):
        self._check_inplace()
        self._data[...] = value.item() if isinstance(value, Tensor) else value
        return self

    def copy_(self, src, non_blocking=False):
        self._check_inplace()
        if isinstance(src, Tensor):
            src = src._data
        self._data[...] = asarray(src, dev=self.device)
        return self

    def uniform_(self, a=0.0, b=1.0, generator=None):
        from .generator import rng_of

        self._check_inplace()
        r = rng_of(generator).random(self._data.shape, dtype=np.float64)
        self._data[...] = asarray((a + (b - a) * r).astype(self._data.dtype), dev=self.device)
        return self

    def normal_(self, mean=0.0, std=1.0, generator=None):
        from .generator import rng_of

        self._check_inplace()
        r = rng_of(generator).standard_normal(self._data.shape)
        self._data[...] = asarray((mean + std * r).astype(self._data.dtype), dev=self.device)
        return self

    def clamp_(self, min=None, max=None):
        self._check_inplace()
        array_module(self.device).clip(self._data, min, max, out=self._data)
        return self

    def relu_(self):
        self._check_inplace()
        np.maximum(self._data, 0, out=self._data, where=~np.isnan(self._data)) \
            if type(self._data) is _ndarray else self._data.clip(0, None, out=self._data)
        return self

    # ---- reductions and shape ops ----------------------------------------------------------
    def sum(self, dim=None, keepdim=False, dtype=None):
        return sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim=None, keepdim=False, dtype=None):
        return mean(self, dim, keepdim, dtype=dtype)

    def max(self, dim=None, keepdim=False):
        return max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _wrap(_argreduce(self._data, dim, keepdim, "argmin"))

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        return _result(self._data.reshape(shape), _Reshape, (self,), self._data.shape)

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], _dt.dtype):
            raise NotImplementedError("fastmlp: view(dtype) is not supported")
        shape = _shape_arg(shape)
        if not self._data.flags.c_contiguous:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at "
                               "least one dimension spans across two contiguous subspaces). Use "
                               ".reshape(...) instead.")
        return _result(self._data.reshape(shape), _Reshape, (self,), self._data.shape)

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return flatten(self, start_dim, end_dim)

    def squeeze(self, dim=None):
        return squeeze(self, dim)

    def unsqueeze(self, dim):
        return unsqueeze(self, dim)

    def t(self):
        if self._data.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self._data.ndim}D")
        return _result(self._data.T, _Transpose, (self,), None)

    @property
    def T(self):
        return _result(self._data.T, _Transpose, (self,), None)

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def transpose(self, dim0, dim1):
        return transpose(self, dim0, dim1)

    def permute(self, *dims):
        dims = _shape_arg(dims)
        return _result(self._data.transpose(dims), _Transpose, (self,), tuple(np.argsort(dims)))

    def expand(self, *sizes):
        sizes = _shape_arg(sizes)
        shp = tuple(s if n == -1 else n for s, n in
                    zip((1,) * (len(sizes) - self._data.ndim) + self._data.shape, sizes))
        xp = array_module(self.device)
        return _result(xp.broadcast_to(self._data, shp), _Expand, (self,), self._data.shape)

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *sizes):
        raise NotImplementedError("fastmlp: Tensor.repeat is not supported")

    def matmul(self, other):
        return matmul(self, other)

    mm = matmul

    def relu(self):
        from .nn.functional import relu

        return relu(self)

    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def sqrt(self):
        return sqrt(self)

    def tanh(self):
        return tanh(self)

    def sigmoid(self):
        return sigmoid(self)

    def abs(self):
        return abs(self)

    def clamp(self, min=None, max=None):
        return clamp(self, min, max)

    clip = clamp

    def square(self):
        return self * self

    def __getitem__(self, idx):
        idx = _index_arg(idx, self)
        return _result(self._data[idx], _Index, (self,), self._data.shape, idx)

    def __setitem__(self, idx, value):
        self._check_inplace()
        idx = _index_arg(idx, self)
        if isinstance(value, Tensor):
            _same_device(self._data, value._data)
            value = value._data
        self._data[idx] = value

    def apply_(self, fn):
        raise NotImplementedError("fastmlp: apply_ is not supported")


def _rebuild(arr, requires_grad):
    t = _wrap(arr)
    t.requires_grad = requires_grad
    return t


_ONES = {}
_ONE_F32 = np.ones((), dtype=np.float32)
_ONE_F32.flags.writeable = False


def _ones_like_scalar(a):
    key = (type(a), a.dtype, a.ndim)
    o = _ONES.get(key)
    if o is None:
        o = array_module(device_of(a)).ones(a.shape, dtype=a.dtype)
        if type(a) is _ndarray:
            o.flags.writeable = False
            _ONES[key] = o
    return o


def _as_device(d):
    if isinstance(d, device):
        return d
    if isinstance(d, builtins.int):
        return device("cuda", d)
    return device(d)


def _parse_to(args, kwargs):
    dev = kwargs.pop("device", None)
    dt = kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            dev, dt = a.device, a.dtype
        elif isinstance(a, _dt.dtype) or (isinstance(a, type) and a in (builtins.float, builtins.int)):
            dt = a
        elif isinstance(a, (str, device, builtins.int)) and not isinstance(a, builtins.bool):
            dev = a
        elif isinstance(a, (np.dtype,)) or (isinstance(a, type) and issubclass(a, np.generic)):
            dt = a
        elif isinstance(a, builtins.bool):
            pass  # non_blocking positional
        else:
            raise TypeError(f"to() received an invalid argument {a!r}")
    return (None if dev is None else _as_device(dev)), dt, copy


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return tuple(builtins.int(s) for s in shape)


def _index_arg(idx, t):
    if isinstance(idx, Tensor):
        _same_device(t._data, idx._data)
        return idx._data
    if isinstance(idx, tuple):
        return tuple(i._data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list):
        return np.asarray(idx) if type(t._data) is _ndarray else array_module(t.device).asarray(idx)
    return idx


# ---- nodes of the cold ops (numpy/CuPy); each next to the op that records it -----------------
class _IdentityBackward(Node):
    __slots__ = ()
    name_ = "CloneBackward0"

    def backward(self, g):
        return (g,)


class _ToCopyBackward(Node):
    __slots__ = ()
    name_ = "ToCopyBackward0"

    def backward(self, g):
        src = self.inputs[0]._data
        if type(g) is not type(src):
            g = asarray(g, dev=device_of(src))
        return (g.astype(src.dtype, copy=False),)


def _binary(a, b, node_cls):
    if not isinstance(b, Tensor):
        b = _as_tensor_like(b, a)
    elif type(a._data) is not type(b._data):
        _same_device(a._data, b._data)
    x, y = a._data, b._data
    out = node_cls.forward(x, y)
    if out.dtype != x.dtype and out.dtype != y.dtype or (out.dtype.kind == "f" and x.dtype != y.dtype):
        out = out.astype(_promote(x, y, node_cls), copy=False)
    return _result(out, node_cls, (a, b))


def _promote(x, y, node_cls):
    """PyTorch's result dtype: a float operand's type beats an int one; within floats a
    dimensioned tensor beats a 0-d one; int / int is float32."""
    kx, ky = x.dtype.kind, y.dtype.kind
    if kx == "f" and ky != "f":
        return x.dtype
    if ky == "f" and kx != "f":
        return y.dtype
    if kx == "f" and ky == "f":
        if x.ndim == 0 and y.ndim > 0:
            return y.dtype
        if y.ndim == 0 and x.ndim > 0:
            return x.dtype
        return np.result_type(x.dtype, y.dtype)
    if node_cls is _Div:
        return np.dtype(np.float32)
    return np.result_type(x.dtype, y.dtype)


class _Add(Node):
    __slots__ = ()
    name_ = "AddBackward0"
    forward = staticmethod(lambda x, y: x + y)

    def backward(self, g):
        a, b = self.inputs
        return (_unb(g, a._data) if a.requires_grad else None,
                _unb(g, b._data) if b.requires_grad else None)


class _Sub(Node):
    __slots__ = ()
    name_ = "SubBackward0"
    forward = staticmethod(lambda x, y: x - y)

    def backward(self, g):
        a, b = self.inputs
        return (_unb(g, a._data) if a.requires_grad else None,
                _unb(-g, b._data) if b.requires_grad else None)


class _Mul(Node):
    __slots__ = ()
    name_ = "MulBackward0"
    forward = staticmethod(lambda x, y: x * y)

    def backward(self, g):
        a, b = self.inputs
        return (_unb(g * b._data, a._data) if a.requires_grad else None,
                _unb(g * a._data, b._data) if b.requires_grad else None)


class _Div(Node):
    __slots__ = ()
    name_ = "DivBackward0"
    forward = staticmethod(lambda x, y: x / y)

    def backward(self, g):
        a, b = self.inputs
        x, y = a._data, b._data
        return (_unb(g / y, x) if a.requires_grad else None,
                _unb(-g * x / (y * y), y) if b.requires_grad else None)


class _Pow(Node):
    __slots__ = ()
    name_ = "PowBackward1"
    forward = staticmethod(lambda x, y: x ** y)

    def backward(self, g):
        a, b = self.inputs
        x, y = a._data, b._data
        ga = _unb(g * y * x ** (y - 1), x) if a.requires_grad else None
        gb = None
        if b.requires_grad:
            xp = array_module(device_of(x))
            with np.errstate(divide="ignore", invalid="ignore"):
                lg = xp.where(x > 0, xp.log(xp.where(x > 0, x, 1)), 0)
            gb = _unb(g * (x ** y) * lg, y)
        return ga, gb


class _PowScalar(Node):
    __slots__ = ()
    name_ = "PowBackward0"

    def backward(self, g):
        x, p = self.saved
        if p == 2:
            return (g * (2 * x),)
        return ((g * (p * x ** (p - 1))).astype(x.dtype, copy=False),)


class _Neg(Node):
    __slots__ = ()
    name_ = "NegBackward0"

    def backward(self, g):
        return (-g,)


def _unary(name, fwd, bwd):
    """A unary elementwise op: fwd(xp, x) -> y; bwd(xp, x, y, g) -> dx."""

    cls = type(f"_{name}", (Node,), {"__slots__": (), "name_": name + "Backward0",
                                     "backward": lambda self, g: (bwd(array_module(device_of(g)),
                                                                      self.saved[0], self.saved[1], g),)})

    def op(input):
        x = input._data
        y = fwd(array_module(input.device), x)
        return _result(y, cls, (input,), x, y)

    op.__name__ = name.lower()
    return op


exp = _unary("Exp", lambda xp, x: xp.exp(x), lambda xp, x, y, g: g * y)
log = _unary("Log", lambda xp, x: xp.log(x), lambda xp, x, y, g: g / x)
sqrt = _unary("Sqrt", lambda xp, x: xp.sqrt(x), lambda xp, x, y, g: g / (2 * y))
tanh = _unary("Tanh", lambda xp, x: xp.tanh(x), lambda xp, x, y, g: g * (1 - y * y))
sigmoid = _unary("Sigmoid", lambda xp, x: (1 / (1 + xp.exp(-x))).astype(x.dtype, copy=False),
                 lambda xp, x, y, g: g * y * (1 - y))
abs = _unary("Abs", lambda xp, x: xp.abs(x), lambda xp, x, y, g: g * xp.sign(x))  # noqa: A001


def _clamp_op(xp, x, lo, hi):
    return xp.clip(x, lo, hi)


class _Clamp(Node):
    __slots__ = ()
    name_ = "ClampBackward1"

    def backward(self, g):
        x, lo, hi = self.saved
        m = np.ones(x.shape, bool) if type(x) is _ndarray else array_module(device_of(x)).ones(x.shape, bool)
        if lo is not None:
            m &= x >= lo
        if hi is not None:
            m &= x <= hi
        return (g * m,)


def clamp(input, min=None, max=None):  # noqa: A002
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    return _result(array_module(input.device).clip(input._data, min, max), _Clamp, (input,),
                   input._data, min, max)


clip = clamp


def _axes(dim, ndim):
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        return tuple(d % ndim for d in dim) if ndim else tuple(dim)
    return (dim % ndim,) if ndim else (dim,)


class _Sum(Node):
    __slots__ = ()
    name_ = "SumBackward1"

    def backward(self, g):
        shape, axes, keepdim, scale = self.saved
        xp = array_module(device_of(g))
        if axes is not None and not keepdim:
            g = xp.expand_dims(g, axes)
        if scale != 1:
            g = g * xp.asarray(scale, dtype=g.dtype)
        return (xp.broadcast_to(g, shape).copy(),)


def sum(input, dim=None, keepdim=False, dtype=None):  # noqa: A001
    x = input._data
    axes = _axes(dim, x.ndim)
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    out = x.sum(axis=axes, keepdims=keepdim)
    if type(out) is not _ndarray and type(x) is _ndarray:
        out = np.asarray(out)
    if x.dtype.kind == "b":
        out = out.astype(np.int64)
    return _result(out, _Sum, (input,), x.shape, axes, keepdim, 1)


def mean(input, dim=None, keepdim=False, dtype=None):
    x = input._data
    if x.dtype.kind != "f" and dtype is None:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {input.dtype.name.capitalize()}")
    axes = _axes(dim, x.ndim)
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    out = x.mean(axis=axes, keepdims=keepdim)
    if type(out) is not _ndarray and type(x) is _ndarray:
        out = np.asarray(out, dtype=x.dtype)
    n = x.size if axes is None else int(np.prod([x.shape[a] for a in axes]))
    return _result(out, _Sum, (input,), x.shape, axes, keepdim, 1.0 / builtins.max(n, 1))


def _argreduce(x, dim, keepdim, fn):
    if dim is None:
        return np.asarray(getattr(x, fn)()) if type(x) is _ndarray else getattr(x, fn)()
    r = getattr(x, fn)(axis=dim)
    if keepdim:
        r = r.reshape(r.shape[:dim % x.ndim] + (1,) + r.shape[dim % x.ndim:])
    return r


def argmax(input, dim=None, keepdim=False):
    return _wrap(_argreduce(input._data, dim, keepdim, "argmax"))


class _MaxAll(Node):
    __slots__ = ()
    name_ = "MaxBackward1"

    def backward(self, g):
        x, idx, dim, keepdim = self.saved
        xp = array_module(device_of(x))
        out = xp.zeros(x.shape, dtype=g.dtype)
        if dim is None:
            out.reshape(-1)[idx] = g
        else:
            ix = idx if keepdim else xp.expand_dims(idx, dim)
            gg = g if keepdim else xp.expand_dims(g, dim)
            xp.put_along_axis(out, ix, gg, axis=dim)
        return (out,)


def _maxmin(input, dim, keepdim, fn):
    x = input._data
    argfn = "argmax" if fn == "max" else "argmin"
    if dim is None:
        idx = builtins.int(getattr(x, argfn)())
        val = x.reshape(-1)[idx:idx + 1].reshape(())
        return _result(val.copy(), _MaxAll, (input,), x, idx, None, False)
    dim = dim % x.ndim
    idx = getattr(x, argfn)(axis=dim)
    xp = array_module(input.device)
    vals = xp.take_along_axis(x, xp.expand_dims(idx, dim), axis=dim)
    if not keepdim:
        vals = vals.squeeze(dim)
    from collections import namedtuple

    v = _result(vals, _MaxAll, (input,), x, idx, dim, keepdim)
    return _MaxResult(v, _wrap(idx if not keepdim else xp.expand_dims(idx, dim)))


class _MaxResult(tuple):
    """``(values, indices)`` as returned by ``max(dim=...)``."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def max(input, dim=None, keepdim=False):  # noqa: A001
    if isinstance(dim, Tensor):
        return _binary(input, dim, _Maximum)
    return _maxmin(input, dim, keepdim, "max")


def min(input, dim=None, keepdim=False):  # noqa: A001
    return _maxmin(input, dim, keepdim, "min")


class _Maximum(Node):
    __slots__ = ()
    name_ = "MaximumBackward0"

    @staticmethod
    def forward(x, y):
        return array_module(device_of(x)).maximum(x, y)

    def backward(self, g):
        a, b = self.inputs
        m = a._data >= b._data
        return (_unbroadcast(g * m, a._data.shape) if a.requires_grad else None,
                _unbroadcast(g * ~m, b._data.shape) if b.requires_grad else None)


class _Reshape(Node):
    __slots__ = ()
    name_ = "ViewBackward0"

    def backward(self, g):
        return (g.reshape(self.saved[0]),)


class _Transpose(Node):
    __slots__ = ()
    name_ = "TBackward0"

    def backward(self, g):
        inv = self.saved[0]
        return (g.T if inv is None else g.transpose(inv),)


class _Expand(Node):
    __slots__ = ()
    name_ = "ExpandBackward0"

    def backward(self, g):
        return (_unbroadcast(g, self.saved[0]),)


class _Index(Node):
    __slots__ = ()
    name_ = "IndexBackward0"

    def backward(self, g):
        shape, idx = self.saved
        xp = array_module(device_of(g))
        out = xp.zeros(shape, dtype=g.dtype)
        if type(out) is _ndarray:
            np.add.at(out, idx, g)
        else:
            xp.add.at(out, idx, g)
        return (out,)


def reshape(input, shape):
    return input.reshape(shape)


def flatten(input, start_dim=0, end_dim=-1):
    shp = input._data.shape
    nd = len(shp)
    if nd == 0:
        return input.reshape(1)
    s, e = start_dim % nd, end_dim % nd
    n = 1
    for d in shp[s:e + 1]:
        n *= d
    return input.reshape(shp[:s] + (n,) + shp[e + 1:])


def squeeze(input, dim=None):
    shp = input._data.shape
    if dim is None:
        new = tuple(s for s in shp if s != 1)
    else:
        dims = {d % len(shp) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))} if shp else set()
        new = tuple(s for i, s in enumerate(shp) if not (i in dims and s == 1))
    return input.reshape(new)


def unsqueeze(input, dim):
    shp = input._data.shape
    d = dim % (len(shp) + 1)
    return input.reshape(shp[:d] + (1,) + shp[d:])


def transpose(input, dim0, dim1):
    nd = input._data.ndim
    perm = list(range(nd))
    d0, d1 = dim0 % nd, dim1 % nd
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return input.permute(perm)


class _MatMul(Node):
    __slots__ = ()
    name_ = "MmBackward0"

    def backward(self, g):
        a, b = self.inputs
        x, y = a._data, b._data
        ga = gb = None
        if x.ndim == 2 and y.ndim == 2 and g.dtype == _F32:
            from . import ops

            if a.requires_grad:
                ga = ops.matmul(g, y.T)
            if b.requires_grad:
                gb = ops.matmul(x.T, g)
            return ga, gb
        xp = array_module(device_of(x))
        if x.ndim == 1 and y.ndim == 1:
            return (g * y if a.requires_grad else None, g * x if b.requires_grad else None)
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        g2 = g
        if x.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if y.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.requires_grad:
            ga = _unbroadcast(g2 @ xp.swapaxes(y2, -1, -2), x2.shape).reshape(x.shape)
        if b.requires_grad:
            gb = _unbroadcast(xp.swapaxes(x2, -1, -2) @ g2, y2.shape).reshape(y.shape)
        return ga, gb


def matmul(input, other):
    """``input @ other``; 2-D float32 products run on the fastmlp GEMM kernel."""
    if not isinstance(other, Tensor):
        other = _as_tensor_like(other, input)
    x, y = input._data, other._data
    _same_device(x, y)
    if x.ndim == 0 or y.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{x.ndim}D and {y.ndim}D")
    if x.shape[-1] != y.shape[-2 if y.ndim > 1 else 0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied "
                           f"({'x'.join(map(str, x.shape))} and {'x'.join(map(str, y.shape))})")
    if x.dtype != y.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {x.dtype} != {y.dtype}")
    if x.ndim == 2 and y.ndim == 2 and x.dtype == _F32:
        from . import ops

        out = ops.matmul(x, y)
    else:
        out = x @ y
    return _result(out, _MatMul, (input, other))


mm = matmul


class _Cat(Node):
    __slots__ = ()
    name_ = "CatBackward0"

    def backward(self, g):
        dim, sizes = self.saved
        xp = array_module(device_of(g))
        bounds = np.cumsum(sizes)[:-1].tolist()
        parts = xp.split(g, bounds, axis=dim)
        return tuple(p if t.requires_grad else None for p, t in zip(parts, self.inputs))


def cat(tensors, dim=0):
    tensors = tuple(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    first = tensors[0]
    for t in tensors[1:]:
        _same_device(first._data, t._data)
    xp = array_module(first.device)
    d = dim % builtins.max(first._data.ndim, 1)
    out = xp.concatenate([t._data for t in tensors], axis=d)
    return _result(out, _Cat, tensors, d, [t._data.shape[d] for t in tensors])


concatenate = cat


def stack(tensors, dim=0):
    tensors = tuple(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    return cat([t.unsqueeze(dim) for t in tensors], dim)


class _Where(Node):
    __slots__ = ()
    name_ = "WhereBackward0"

    def backward(self, g):
        a, b = self.inputs
        c = self.saved[0]
        return (_unbroadcast(g * c, a._data.shape) if a.requires_grad else None,
                _unbroadcast(g * ~c, b._data.shape) if b.requires_grad else None)


def where(condition, input, other):
    c = condition._data if isinstance(condition, Tensor) else condition
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    if not isinstance(other, Tensor):
        other = _as_tensor_like(other, input)
    xp = array_module(input.device)
    return _result(xp.where(c, input._data, other._data), _Where, (input, other), c)


def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False):
    return builtins.bool(np.allclose(np.asarray(input.cpu()._data), np.asarray(other.cpu()._data),
                                     rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other):
    return input._data.shape == other._data.shape and builtins.bool((input._data == other._data).all())


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()


# ---- factories ----------------------------------------------------------------------------
def _factory_args(size):
    return _shape_arg(size)


def _finish(arr, dtype, device, requires_grad, default=np.float32):
    np_dt = _dt.to_numpy_dtype(dtype) if dtype is not None else None
    if np_dt is not None and arr.dtype != np_dt:
        arr = arr.astype(np_dt)
    dev = CPU if device is None else _as_device(device)
    if dev.type != "cpu":
        arr = asarray(arr, dev=dev)
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays, tensors).

    As in PyTorch, Python floats give float32, Python ints int64, bools bool; a numpy array keeps
    its dtype (float64 stays float64).
    """
    if isinstance(data, Tensor):
        arr = data._data.copy()
        if device is None:
            device = data.device
        if type(arr) is not _ndarray:
            return _finish_cuda(arr, dtype, device, requires_grad)
    elif isinstance(data, np.ndarray):
        if data.dtype == object:
            raise TypeError("fastmlp.tensor(): can't convert a numpy array of dtype object")
        arr = np.array(data, copy=True)
    elif hasattr(data, "__cuda_array_interface__"):
        return _finish_cuda(data.copy(), dtype, device or "cuda", requires_grad)
    elif hasattr(data, "detach") and hasattr(data, "numpy"):  # a torch tensor (duck-typed)
        arr = np.array(data.detach().cpu().numpy(), copy=True)
    else:
        data = _unwrap_nested(data)
        arr = np.array(data)
        if arr.dtype == object:
            raise TypeError(f"fastmlp.tensor(): could not convert {type(data).__name__} to a tensor "
                            "(ragged nested sequence or unsupported element type)")
        if arr.dtype == np.float64 and dtype is None:
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu" and dtype is None:
            arr = arr.astype(np.int64)
    _dt.from_numpy_dtype(arr.dtype)  # supported dtype?
    return _finish(arr, dtype, device, requires_grad)


def _finish_cuda(arr, dtype, device, requires_grad):
    if dtype is not None:
        arr = arr.astype(_dt.to_numpy_dtype(dtype))
    t = _wrap(asarray(arr, dev=_as_device(device)))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        return data._data.tolist() if type(data._data) is not _ndarray else data._data
    if isinstance(data, (list, tuple)) and data and any(isinstance(d, (Tensor, list, tuple)) for d in data):
        return [_unwrap_nested(d) for d in data]
    return data


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    if isinstance(data, np.ndarray) and (device is None or str(device) == "cpu"):
        return _finish(np.asarray(data), dtype, device, False)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray):
    """A tensor sharing memory with ``ndarray`` (no copy); float64 stays float64."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    _dt.from_numpy_dtype(ndarray.dtype)
    return _wrap(ndarray)


def zeros(*size, dtype=None, device=None, requires_grad=False, out=None):
    return _finish(np.zeros(_factory_args(size), dtype=_dt.to_numpy_dtype(dtype or _dt.float32)),
                   None, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, out=None):
    return _finish(np.ones(_factory_args(size), dtype=_dt.to_numpy_dtype(dtype or _dt.float32)),
                   None, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False, out=None):
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = _dt.bool_ if isinstance(fill_value, builtins.bool) else (
            _dt.int64 if isinstance(fill_value, builtins.int) else _dt.float32)
    return _finish(np.full(_shape_arg((size,)), fill_value, dtype=_dt.to_numpy_dtype(dtype)), None,
                   device, requires_grad)


def _like(input, dtype, device):
    return (dtype or input.dtype), (device if device is not None else input.device)


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(input, dtype, device)
    return zeros(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(input, dtype, device)
    return ones(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(input, dtype, device)
    return full(input.shape, fill_value, dtype=dt, device=dev, requires_grad=requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    from .generator import rng_of

    arr = rng_of(generator).random(_factory_args(size), dtype=np.float32)
    return _finish(arr, dtype, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    from .generator import rng_of

    arr = rng_of(generator).standard_normal(_factory_args(size), dtype=np.float32)
    return _finish(arr, dtype, device, requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(input, dtype, device)
    return rand(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def randn_like(input, dtype=None, device=None, requires_grad=False):
    dt, dev = _like(input, dtype, device)
    return randn(input.shape, dtype=dt, device=dev, requires_grad=requires_grad)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    from .generator import rng_of

    if high is None:
        low, high = 0, low
    arr = rng_of(generator).integers(low, high, size=_shape_arg((size,)), dtype=np.int64)
    return _finish(arr, dtype, device, requires_grad)


def randperm(n, generator=None, dtype=None, device=None, requires_grad=False):
    from .generator import rng_of

    return _finish(rng_of(generator).permutation(n).astype(np.int64), dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    is_float = any(isinstance(v, builtins.float) for v in (start, end, step))
    arr = np.arange(start, end, step, dtype=np.float32 if is_float else np.int64)
    return _finish(arr, dtype, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _finish(np.linspace(start, end, steps, dtype=np.float32), dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _finish(np.eye(n, m, dtype=np.float32), dtype, device, requires_grad)
