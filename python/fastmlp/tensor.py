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
from .autograd import GradMode, Node, bump_version, run_backward, version_counter
from .devices import CPU, array_module, asarray, check_cuda_available, device, device_of

__all__ = ["Tensor", "Size", "tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full",
           "zeros_like", "ones_like", "empty_like", "full_like", "rand", "randn", "rand_like",
           "randn_like", "randint", "randperm", "arange", "linspace", "eye", "cat", "stack",
           "is_tensor", "numel", "exp", "log", "sqrt", "tanh", "sigmoid", "softmax", "log_softmax", "abs", "sum", "mean",
           "matmul", "mm", "flatten", "transpose", "reshape", "argmax", "max", "min", "clamp",
           "where", "allclose", "equal", "squeeze", "unsqueeze",
           # the long tail of the torch namespace (issue 12)
           "concat", "concatenate", "hstack", "vstack", "nonzero", "argwhere", "count_nonzero",
           "masked_fill", "masked_select", "gather", "take_along_dim", "scatter", "scatter_add",
           "index_select", "sort", "argsort", "topk", "kthvalue", "median", "split", "chunk",
           "tensor_split", "unbind", "flip", "fliplr", "flipud", "roll", "outer", "ger", "dot",
           "inner", "bmm", "einsum", "cumsum", "cumprod", "prod", "var", "std", "var_mean",
           "std_mean", "norm", "dist", "logsumexp", "isnan", "isinf", "isposinf", "isneginf",
           "isfinite", "isclose", "nan_to_num", "any", "all", "meshgrid", "bucketize",
           "searchsorted", "add", "sub", "subtract", "mul", "multiply", "div", "divide",
           "true_divide", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "logical_and",
           "logical_or", "logical_xor", "logical_not", "remainder", "fmod", "floor_divide",
           "normal", "bernoulli", "multinomial", "argmin", "amax", "amin", "maximum", "minimum",
           "clip", "clamp_min", "clamp_max", "sin", "cos", "tan", "log1p", "log2", "log10",
           "expm1", "rsqrt", "reciprocal", "sign", "floor", "ceil", "trunc", "fix", "round",
           "absolute", "negative", "pow", "square", "neg", "t", "permute", "one_hot"]

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


def _view(t, arr, node_cls, *saved):
    """An op's result that may be a view of ``t`` (reshape, transpose, slicing): a view shares
    ``t``'s version counter, as in torch, so writing through either is seen by the other's
    saved-tensor checks."""
    r = _result(arr, node_cls, (t,), *saved)
    base = arr.base if type(arr) is _ndarray else getattr(arr, "base", None)
    if base is not None:
        src = t._data
        if base is src or base is src.base:
            r._vc = version_counter(t)
    return r


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
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":  # numpy scalars act as Python's
        x = x.item()
    if isinstance(x, (builtins.int, builtins.float, builtins.bool)):
        # A Python scalar takes the tensor's dtype when it is floating point (as torch does).
        dt = like._data.dtype
        if dt.kind != "f":
            if isinstance(x, builtins.float):
                dt = np.dtype(np.float32)
            elif dt.kind == "b" and not isinstance(x, builtins.bool):
                dt = np.dtype(np.int64)
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


def _unb_t(g, like):
    """``_unb`` on Tensors (recorded, for create_graph): ``g`` summed down to ``like``'s shape."""
    shape = like if isinstance(like, tuple) else like._data.shape
    if g._data.shape != shape:
        nd = g._data.ndim - len(shape)
        if nd > 0:
            g = sum(g, tuple(range(nd)))
        axes = tuple(i for i, s in enumerate(shape) if s == 1 and g._data.shape[i] != 1)
        if axes:
            g = sum(g, axes, True)
        if g._data.shape != shape:
            g = g.reshape(shape)
    if not isinstance(like, tuple) and g._data.dtype != like._data.dtype \
            and like._data.dtype.kind == "f":
        g = g.to(like.dtype)
    return g


def _not_tensor(fn, value, arg="input", position=1):
    """PyTorch's TypeError for a non-Tensor argument: "sum(): argument 'input' (position 1) must
    be Tensor, not numpy.ndarray"."""
    t = type(value)
    mod = "" if t.__module__ == "builtins" else t.__module__.split(".")[0] + "."
    return TypeError(f"{fn}(): argument '{arg}' (position {position}) must be Tensor, not "
                     f"{mod}{t.__name__}")


def _const(arr):
    """A constant (no-grad) Tensor around an array: masks and signs inside a recorded backward."""
    return _wrap(arr)


class _MaskGrad(Node):
    """``g * mask`` inside a recorded backward (ReLU's, abs'): the mask is piecewise constant in
    the op's inputs ``deps``, so their gradient through it is zero — but they stay in the graph,
    as in torch (a second derivative w.r.t. them is 0, not "unused")."""

    __slots__ = ()
    name_ = "ThresholdBackwardBackward0"

    def backward(self, g2):
        mask = self.saved[0]
        xp = array_module(device_of(g2))
        out = [g2 * mask if self.inputs[0].requires_grad else None]
        out += [xp.zeros_like(t._data) if t.requires_grad else None for t in self.inputs[1:]]
        return tuple(out)

    def backward_graph(self, g2):
        mask = self.saved[0]
        out = [g2 * _const(mask) if self.inputs[0].requires_grad else None]
        out += [zeros_like(t) if t.requires_grad else None for t in self.inputs[1:]]
        return tuple(out)

    def _saved_inputs(self):
        return ()


def mask_grad(g, mask, deps):
    """``g * mask`` recorded with ``deps`` as zero-gradient inputs (see :class:`_MaskGrad`)."""
    r = g._data * mask
    if r.dtype != g._data.dtype:
        r = r.astype(g._data.dtype)
    return _result(r, _MaskGrad, (g, *deps), mask)


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

    __slots__ = ("_data", "grad", "requires_grad", "_node", "_vc", "__weakref__")
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
        t = _wrap(self._data)
        t._vc = version_counter(self)  # a detached tensor shares the version counter (as torch)
        return t

    @property
    def _version(self):
        """How many in-place operations modified this tensor (PyTorch's version counter)."""
        vc = getattr(self, "_vc", None)
        return 0 if vc is None else vc.version

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
        if create_graph or inputs is not None:
            from .autograd import backward as _backward

            return _backward(self, gradient, retain_graph, create_graph, inputs)
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

    def __rmatmul__(self, other):
        return matmul(_as_tensor_like(other, self), self)

    def __neg__(self):
        return _result(-self._data, _Neg, (self,))

    def __pos__(self):
        return self

    def add(self, other, *, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    mul = __mul__
    true_divide = __truediv__
    multiply = __mul__
    subtract = sub
    neg = __neg__
    negative = __neg__
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
        """Refuse what PyTorch refuses, then bump the version counter (the write follows)."""
        if self.requires_grad and GradMode.enabled:
            if self._node is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
            raise RuntimeError("fastmlp: in-place operations on tensors that are part of an autograd "
                               "graph are not supported; use the out-of-place op")
        bump_version(self)

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
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            return self._inplace_from(clamp(self.detach(), min, max))
        self._check_inplace()
        array_module(self.device).clip(self._data, min, max, out=self._data)
        return self

    def relu_(self):
        self._check_inplace()
        np.maximum(self._data, 0, out=self._data, where=~np.isnan(self._data)) \
            if type(self._data) is _ndarray else self._data.clip(0, None, out=self._data)
        return self

    # ---- reductions and shape ops ----------------------------------------------------------
    def cumsum(self, dim, dtype=None):
        return cumsum(self, dim, dtype=dtype)

    def cumprod(self, dim, dtype=None):
        return cumprod(self, dim, dtype=dtype)

    def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
        self._check_inplace()
        if src is None and value is None:
            raise TypeError("scatter_() missing 1 required argument: 'src' or 'value'")
        return _scatter(self, dim, index, src, value, reduce, False, True)

    def scatter_add_(self, dim, index, src):
        self._check_inplace()
        return _scatter(self, dim, index, src, None, None, True, True)

    def masked_fill_(self, mask, value):
        m = _bool_mask(mask, "masked_fill_")
        self._check_inplace()
        v = value.item() if isinstance(value, Tensor) else value
        self._data[array_module(self.device).broadcast_to(m, self._data.shape)] = v
        return self

    def split(self, split_size, dim=0):
        return split(self, split_size, dim)

    def flip(self, *dims, **kw):
        if "dims" in kw:
            return flip(self, kw.pop("dims"))
        return flip(self, dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims)

    def where(self, condition, other):
        return where(condition, self, other)

    def round(self, decimals=0):
        return round(self, decimals=decimals)

    def nelement(self):
        return self.numel()

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device,
                     requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    # in-place element-wise forms (tensors that need no gradient, or under no_grad); the plain
    # ones (`exp_`, `__iand__`, ...) are made from their out-of-place function at the end of the module
    def _inplace_from(self, r):
        self._check_inplace()
        self._data[...] = r._data if isinstance(r, Tensor) else r
        return self

    def neg_(self):
        return self._inplace_from(-self._data)

    def pow_(self, exponent):
        return self._inplace_from(self.detach() ** exponent)

    def round_(self, decimals=0):
        return self._inplace_from(round(self.detach(), decimals=decimals))

    def clamp_min_(self, min):  # noqa: A002
        return self.clamp_(min=min)

    def clamp_max_(self, max):  # noqa: A002
        return self.clamp_(max=max)

    def addcmul_(self, tensor1, tensor2, value=1):
        return self._inplace_from(self.detach() + tensor1.detach() * tensor2.detach() * value)

    def addcdiv_(self, tensor1, tensor2, value=1):
        return self._inplace_from(self.detach() + tensor1.detach() / tensor2.detach() * value)

    def lerp_(self, end, weight):
        return self._inplace_from(self.detach() + (end.detach() - self.detach()) * weight)

    def exponential_(self, lambd=1.0, generator=None):
        from .generator import rng_of

        self._check_inplace()
        r = rng_of(generator).exponential(1.0 / lambd, self._data.shape)
        self._data[...] = asarray(r.astype(self._data.dtype), dev=self.device)
        return self

    def bernoulli_(self, p=0.5, generator=None):
        from .generator import rng_of

        self._check_inplace()
        pp = p._data if isinstance(p, Tensor) else p
        r = rng_of(generator).random(self._data.shape) < np.asarray(pp)
        self._data[...] = asarray(r.astype(self._data.dtype), dev=self.device)
        return self

    def random_(self, from_=0, to=None, generator=None):
        from .generator import rng_of

        self._check_inplace()
        if to is None:
            from_, to = 0, from_ if from_ else 2 ** 24
        r = rng_of(generator).integers(from_, to, self._data.shape)
        self._data[...] = asarray(r.astype(self._data.dtype), dev=self.device)
        return self

    # bitwise / integer operators
    def __rmod__(self, other):
        return remainder(_as_tensor_like(other, self), self)

    def __rfloordiv__(self, other):
        return floor_divide(_as_tensor_like(other, self), self)

    def __lshift__(self, other):
        return _int_binary(self, other, np.left_shift, "lshift")

    def __rshift__(self, other):
        return _int_binary(self, other, np.right_shift, "rshift")

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        return _view(self, self._data.reshape(shape), _Reshape, self._data.shape)

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], _dt.dtype):
            raise NotImplementedError("fastmlp: view(dtype) is not supported")
        shape = _shape_arg(shape)
        if not self._data.flags.c_contiguous:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at "
                               "least one dimension spans across two contiguous subspaces). Use "
                               ".reshape(...) instead.")
        return _view(self, self._data.reshape(shape), _Reshape, self._data.shape)

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def t(self):
        if self._data.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self._data.ndim}D")
        return _view(self, self._data.T, _Transpose, None)

    @property
    def T(self):
        return _view(self, self._data.T, _Transpose, None)

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def permute(self, *dims):
        dims = _shape_arg(dims)
        return _view(self, self._data.transpose(dims), _Transpose, tuple(np.argsort(dims)))

    def expand(self, *sizes):
        sizes = _shape_arg(sizes)
        shp = tuple(s if n == -1 else n for s, n in
                    zip((1,) * (len(sizes) - self._data.ndim) + self._data.shape, sizes))
        xp = array_module(self.device)
        return _view(self, xp.broadcast_to(self._data, shp), _Expand, self._data.shape)

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *sizes):
        raise NotImplementedError("fastmlp: Tensor.repeat is not supported")

    def relu(self):
        from .nn.functional import relu

        return relu(self)

    def clamp_min(self, min):  # noqa: A002
        return clamp(self, min=min)

    def clamp_max(self, max):  # noqa: A002
        return clamp(self, max=max)

    def square(self):
        return self * self

    def __getitem__(self, idx):
        idx = _index_arg(idx, self)
        return _view(self, self._data[idx], _Index, self._data.shape, idx)

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

    def backward_graph(self, g):
        return (g,)

    def _saved_inputs(self):
        return ()


class _ToCopyBackward(Node):
    __slots__ = ()
    name_ = "ToCopyBackward0"

    def backward(self, g):
        src = self.inputs[0]._data
        if type(g) is not type(src):
            g = asarray(g, dev=device_of(src))
        return (g.astype(src.dtype, copy=False),)

    def backward_graph(self, g):
        src = self.inputs[0]
        return (g.to(src.device, src.dtype),)

    def _saved_inputs(self):
        return ()


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

    def backward_graph(self, g):
        a, b = self.inputs
        return (_unb_t(g, a) if a.requires_grad else None, _unb_t(g, b) if b.requires_grad else None)

    def _saved_inputs(self):
        return ()


class _Sub(Node):
    __slots__ = ()
    name_ = "SubBackward0"
    forward = staticmethod(lambda x, y: x - y)

    def backward(self, g):
        a, b = self.inputs
        return (_unb(g, a._data) if a.requires_grad else None,
                _unb(-g, b._data) if b.requires_grad else None)

    def backward_graph(self, g):
        a, b = self.inputs
        return (_unb_t(g, a) if a.requires_grad else None, _unb_t(-g, b) if b.requires_grad else None)

    def _saved_inputs(self):
        return ()


class _Mul(Node):
    __slots__ = ()
    name_ = "MulBackward0"
    forward = staticmethod(lambda x, y: x * y)

    def backward(self, g):
        a, b = self.inputs
        return (_unb(g * b._data, a._data) if a.requires_grad else None,
                _unb(g * a._data, b._data) if b.requires_grad else None)

    def backward_graph(self, g):
        a, b = self.inputs
        return (_unb_t(g * b, a) if a.requires_grad else None,
                _unb_t(g * a, b) if b.requires_grad else None)

    def _saved_inputs(self):  # as torch: each operand is saved for the other's gradient
        a, b = self.inputs
        return tuple(t for t, other in ((a, b), (b, a)) if other.requires_grad)


class _Div(Node):
    __slots__ = ()
    name_ = "DivBackward0"
    forward = staticmethod(lambda x, y: x / y)

    def backward(self, g):
        a, b = self.inputs
        x, y = a._data, b._data
        return (_unb(g / y, x) if a.requires_grad else None,
                _unb(-g * x / (y * y), y) if b.requires_grad else None)

    def backward_graph(self, g):
        a, b = self.inputs
        return (_unb_t(g / b, a) if a.requires_grad else None,
                _unb_t(-g * a / (b * b), b) if b.requires_grad else None)

    def _saved_inputs(self):
        a, b = self.inputs
        return (b,) if not b.requires_grad else (a, b)


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

    def backward_graph(self, g):
        a, b = self.inputs
        ga = _unb_t(g * b * a ** (b - 1), a) if a.requires_grad else None
        gb = None
        if b.requires_grad:
            pos = a._data > 0
            xp = array_module(device_of(a._data))
            lg = log(where(_const(pos), a, _const(xp.ones_like(a._data))))
            gb = _unb_t(g * (a ** b) * where(_const(pos), lg, _const(xp.zeros_like(a._data))), b)
        return ga, gb


class _PowScalar(Node):
    __slots__ = ()
    name_ = "PowBackward0"

    def backward(self, g):
        x, p = self.saved
        if p == 2:
            return (g * (2 * x),)
        return ((g * (p * x ** (p - 1))).astype(x.dtype, copy=False),)

    def backward_graph(self, g):
        x = self.inputs[0]
        p = self.saved[1]
        if p == 1:
            return (g,)
        if p == 2:
            return (g * (x * 2),)
        return (g * (x ** (p - 1) * p),)


class _Neg(Node):
    __slots__ = ()
    name_ = "NegBackward0"

    def backward(self, g):
        return (-g,)

    def backward_graph(self, g):
        return (-g,)

    def _saved_inputs(self):
        return ()


def _unary(name, fwd, bwd, graph=None, saves_output=False, float_out=True):
    """A unary elementwise op: fwd(xp, x) -> y; bwd(xp, x, y, g) -> dx (arrays);
    graph(x, g) -> dx (Tensors, recorded: the backward of create_graph=True).
    Integer and bool inputs give float32 results when ``float_out`` (as torch's exp, sin, ...)."""

    ns = {"__slots__": (), "name_": name + "Backward0", "_saves_output": saves_output,
          "backward": lambda self, g: (bwd(array_module(device_of(g)), self.saved[0],
                                           self.saved[1], g),)}
    if graph is not None:
        ns["backward_graph"] = lambda self, g: (graph(self.inputs[0], g),)
    if saves_output:
        ns["_saved_inputs"] = lambda self: ()
    cls = type(f"_{name}", (Node,), ns)

    def op(input, *, out=None):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name.lower()}(): argument 'input' (position 1) must be Tensor, not "
                            f"{type(input).__name__}")
        x = input._data
        if float_out and x.dtype.kind != "f":
            x = x.astype(np.float32)
        y = fwd(array_module(input.device), x)
        if type(y) is not type(x) and np.isscalar(y):
            y = np.asarray(y)
        r = _result(y, cls, (input,), x, y)
        return _write_out(r, out)

    op.__name__ = name.lower()
    return op


def _write_out(r, out):
    """``out=``: copy the result into ``out`` (resized as torch does when its shape differs)."""
    if out is None:
        return r
    if not isinstance(out, Tensor):
        raise TypeError(f"argument 'out' must be Tensor, not {type(out).__name__}")
    if GradMode.enabled and (r.requires_grad or out.requires_grad):
        raise RuntimeError("functions with out=... arguments don't support automatic "
                           "differentiation, but one of the arguments requires grad.")
    bump_version(out)
    if out._data.shape != r._data.shape:
        out._data = r._data.astype(out._data.dtype, copy=True)
    else:
        out._data[...] = r._data
    return out


def _zero_grad_graph(x, g):
    return g * _const(array_module(x.device).zeros((), dtype=g._data.dtype))


def _zero_grad(xp, x, y, g):
    return xp.zeros_like(g)


exp = _unary("Exp", lambda xp, x: xp.exp(x), lambda xp, x, y, g: g * y,
             lambda x, g: g * exp(x), saves_output=True)
log = _unary("Log", lambda xp, x: xp.log(x), lambda xp, x, y, g: g / x, lambda x, g: g / x)
log2 = _unary("Log2", lambda xp, x: xp.log2(x), lambda xp, x, y, g: g / (x * np.log(2.0)),
              lambda x, g: g / (x * builtins.float(np.log(2.0))))
log10 = _unary("Log10", lambda xp, x: xp.log10(x), lambda xp, x, y, g: g / (x * np.log(10.0)),
               lambda x, g: g / (x * builtins.float(np.log(10.0))))
log1p = _unary("Log1p", lambda xp, x: xp.log1p(x), lambda xp, x, y, g: g / (1 + x),
               lambda x, g: g / (x + 1))
expm1 = _unary("Expm1", lambda xp, x: xp.expm1(x), lambda xp, x, y, g: g * (y + 1),
               lambda x, g: g * exp(x), saves_output=True)
sqrt = _unary("Sqrt", lambda xp, x: xp.sqrt(x), lambda xp, x, y, g: g / (2 * y),
              lambda x, g: g / (sqrt(x) * 2), saves_output=True)
rsqrt = _unary("Rsqrt", lambda xp, x: (1 / xp.sqrt(x)).astype(x.dtype, copy=False),
               lambda xp, x, y, g: -0.5 * g * y * y * y, lambda x, g: g * (x ** -1.5) * -0.5,
               saves_output=True)
tanh = _unary("Tanh", lambda xp, x: xp.tanh(x), lambda xp, x, y, g: g * (1 - y * y),
              lambda x, g: g * (1 - tanh(x) ** 2), saves_output=True)
sigmoid = _unary("Sigmoid", lambda xp, x: (1 / (1 + xp.exp(-x))).astype(x.dtype, copy=False),
                 lambda xp, x, y, g: g * y * (1 - y),
                 lambda x, g: g * sigmoid(x) * (1 - sigmoid(x)), saves_output=True)
sin = _unary("Sin", lambda xp, x: xp.sin(x), lambda xp, x, y, g: g * xp.cos(x),
             lambda x, g: g * cos(x))
cos = _unary("Cos", lambda xp, x: xp.cos(x), lambda xp, x, y, g: -g * xp.sin(x),
             lambda x, g: -g * sin(x))
tan = _unary("Tan", lambda xp, x: xp.tan(x), lambda xp, x, y, g: g * (1 + y * y),
             lambda x, g: g * (1 + tan(x) ** 2), saves_output=True)
reciprocal = _unary("Reciprocal", lambda xp, x: (1 / x).astype(x.dtype, copy=False),
                    lambda xp, x, y, g: -g * y * y, lambda x, g: -g / (x * x), saves_output=True)
abs = _unary("Abs", lambda xp, x: xp.abs(x), lambda xp, x, y, g: g * xp.sign(x),  # noqa: A001
             lambda x, g: mask_grad(g, array_module(x.device).sign(x._data), (x,)), float_out=False)
sign = _unary("Sign", lambda xp, x: xp.sign(x), _zero_grad, _zero_grad_graph, float_out=False)
floor = _unary("Floor", lambda xp, x: xp.floor(x) if x.dtype.kind == "f" else x.copy(), _zero_grad,
               _zero_grad_graph, float_out=False)
ceil = _unary("Ceil", lambda xp, x: xp.ceil(x) if x.dtype.kind == "f" else x.copy(), _zero_grad,
              _zero_grad_graph, float_out=False)
trunc = _unary("Trunc", lambda xp, x: xp.trunc(x) if x.dtype.kind == "f" else x.copy(), _zero_grad,
               _zero_grad_graph, float_out=False)
_round0 = _unary("Round", lambda xp, x: xp.round(x) if x.dtype.kind == "f" else x.copy(),
                 _zero_grad, _zero_grad_graph, float_out=False)
fix = trunc
absolute = abs
negative = lambda input: -input  # noqa: E731

# tail's recorded-op forms of tanh and sigmoid: what the activation nodes' second-derivative
# (create_graph) backward is written with.
_tanh_graph, _sigmoid_graph = tanh, sigmoid


# ---- activations: the kernels behind nn.functional (imported on first use: nn builds on this
# module). torch.tanh / torch.sigmoid / torch.softmax / torch.log_softmax and the Tensor methods.
def tanh(input):
    from .nn.functional import tanh as f

    return f(input)


def sigmoid(input):
    from .nn.functional import sigmoid as f

    return f(input)


def softmax(input, dim=None, dtype=None):
    from .nn.functional import _softmax

    return _softmax(input, dim, dtype, False)


def log_softmax(input, dim=None, dtype=None):
    from .nn.functional import _softmax

    return _softmax(input, dim, dtype, True)




def round(input, *, decimals=0, out=None):  # noqa: A001
    """Round half to even (as torch); ``decimals`` digits after the point."""
    if decimals == 0 or input._data.dtype.kind != "f":
        return _round0(input, out=out)
    x = input._data
    y = (array_module(input.device).round(x * 10.0 ** decimals) / 10.0 ** decimals).astype(x.dtype)
    return _write_out(_result(y, _RoundNode, (input,), x, y), out)


class _RoundNode(Node):
    __slots__ = ()
    name_ = "RoundBackward1"

    def backward(self, g):
        return (g * 0,)

    def backward_graph(self, g):
        return (g * 0,)


def _norm_dim(d, ndim):
    """A dimension index checked as torch does (IndexError naming the valid range)."""
    if isinstance(d, Tensor):
        d = d.item()
    if not isinstance(d, (builtins.int, np.integer)) or isinstance(d, builtins.bool):
        raise TypeError(f"dim must be an int, got {type(d).__name__}")
    n = builtins.max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but "
                         f"got {d})")
    return builtins.int(d) % n


def _dk(dim, axis, keepdim, keepdims):
    """torch's ``axis=``/``keepdims=`` aliases of ``dim=``/``keepdim=``."""
    if axis is not None:
        if dim is not None:
            raise TypeError("got multiple values for argument 'dim' (dim= and its alias axis=)")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return dim, builtins.bool(keepdim)


class _Clamp(Node):
    __slots__ = ()
    name_ = "ClampBackward1"

    def _mask(self):
        x, lo, hi = self.saved
        m = array_module(device_of(x)).ones(x.shape, bool)
        if lo is not None:
            m &= x >= lo
        if hi is not None:
            m &= x <= hi
        return m

    def backward(self, g):
        return (g * self._mask(),)

    def backward_graph(self, g):
        return (g * _const(self._mask()),)


class _ClampT(Node):
    """clamp with tensor bounds: inputs (input, min, max) where absent bounds are None-saved."""

    __slots__ = ()
    name_ = "ClampBackward0"

    def _masks(self):
        x = self.inputs[0]._data
        has_lo, has_hi = self.saved
        lo = self.inputs[1]._data if has_lo else None
        hi = self.inputs[1 + has_lo]._data if has_hi else None
        m = array_module(device_of(x)).ones(x.shape, bool)
        out = []
        if lo is not None:
            m = m & (x >= lo)
        if hi is not None:
            m = m & (x <= hi)
        if lo is not None:
            out.append(x < lo if hi is None else (x < lo) & (lo <= hi))
        if hi is not None:
            out.append(x > hi if lo is None else (x > hi) | (lo > hi))
        return [m] + out

    def backward(self, g):
        return tuple(None if not t.requires_grad else _unb(g * m, t._data)
                     for t, m in zip(self.inputs, self._masks()))

    def backward_graph(self, g):
        return tuple(None if not t.requires_grad else _unb_t(g * _const(m), t)
                     for t, m in zip(self.inputs, self._masks()))


def clamp(input, min=None, max=None, *, out=None):  # noqa: A002
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        xp = array_module(input.device)
        bounds = [t if isinstance(t, Tensor) else _as_tensor_like(t, input)
                  for t in (min, max) if t is not None]
        y = input._data
        if min is not None:
            y = xp.maximum(y, bounds[0]._data)
        if max is not None:
            y = xp.minimum(y, bounds[-1]._data)
        r = _result(y, _ClampT, (input, *bounds), min is not None, max is not None)
        return _write_out(r, out)
    x = input._data
    y = array_module(input.device).clip(x, min, max)
    if y.dtype != x.dtype and x.dtype.kind == "f":
        y = y.astype(x.dtype)
    return _write_out(_result(y, _Clamp, (input,), x, min, max), out)


clip = clamp


def clamp_min(input, min):  # noqa: A002
    return clamp(input, min=min)


def clamp_max(input, max):  # noqa: A002
    return clamp(input, max=max)


def _axes(dim, ndim):
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        if not dim:
            return None  # torch: dim=() / [] reduces over everything
        return tuple(_norm_dim(d, ndim) for d in dim) if ndim else tuple(dim)
    return (_norm_dim(dim, ndim),) if ndim else (dim,)


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

    def backward_graph(self, g):
        shape, axes, keepdim, scale = self.saved
        if axes is None:
            g = g.reshape((1,) * len(shape))
        elif not keepdim:
            gs = list(shape)
            for a in axes:
                gs[a] = 1
            g = g.reshape(gs)
        g = g.expand(shape)
        if scale != 1:
            g = g * builtins.float(scale)
        return (g,)

    def _saved_inputs(self):
        return ()


def sum(input, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None, out=None):  # noqa: A001
    if not isinstance(input, Tensor):
        raise _not_tensor("sum", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    x = input._data
    axes = _axes(dim, x.ndim)
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)  # torch sums integers and bools in int64
    r = x.sum(axis=axes, keepdims=keepdim)
    if type(r) is not _ndarray and type(x) is _ndarray:
        r = np.asarray(r)
    return _write_out(_result(r, _Sum, (input,), x.shape, axes, keepdim, 1), out)


def mean(input, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None, out=None):
    if not isinstance(input, Tensor):
        raise _not_tensor("mean", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    x = input._data
    if x.dtype.kind != "f" and dtype is None:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {_torch_type(x.dtype)}")
    axes = _axes(dim, x.ndim)
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = x.mean(axis=axes, keepdims=keepdim) if x.size else \
            (x.sum(axis=axes, keepdims=keepdim) / np.asarray(0, x.dtype))
    if type(r) is not _ndarray and type(x) is _ndarray:
        r = np.asarray(r, dtype=x.dtype)
    n = x.size if axes is None else builtins.int(np.prod([x.shape[a] for a in axes]))
    return _write_out(_result(r, _Sum, (input,), x.shape, axes, keepdim, 1.0 / builtins.max(n, 1)),
                      out)


def _torch_type(npdt):
    return {"bool": "Bool", "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char",
            "uint8": "Byte", "float32": "Float", "float64": "Double",
            "float16": "Half"}.get(npdt.name, npdt.name)


def _argreduce(x, dim, keepdim, fn):
    if x.size == 0:
        raise IndexError(f"{fn}(): Expected reduction dim to be specified for input.numel() == 0.")
    if dim is None:
        r = getattr(x, fn)()
        r = np.asarray(r) if type(x) is _ndarray else r
        return r.reshape((1,) * x.ndim) if keepdim else r
    d = _norm_dim(dim, x.ndim)
    if x.ndim == 0:
        return array_module(device_of(x)).zeros((), np.int64)
    r = getattr(x, fn)(axis=d)
    if keepdim:
        r = r.reshape(r.shape[:d] + (1,) + r.shape[d:])
    return r.astype(np.int64, copy=False)


def argmax(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    if not isinstance(input, Tensor):
        raise _not_tensor("argmax", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    return _wrap(_argreduce(input._data, dim, keepdim, "argmax"))


def argmin(input, dim=None, keepdim=False, *, axis=None, keepdims=None):
    if not isinstance(input, Tensor):
        raise _not_tensor("argmin", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    return _wrap(_argreduce(input._data, dim, keepdim, "argmin"))


class _MaxAll(Node):
    """max/min: over everything (the gradient split evenly among ties, as torch), or along
    ``dim`` (to the index returned)."""

    __slots__ = ()
    name_ = "MaxBackward1"

    def _weights(self, dtype):
        x, idx, dim, keepdim = self.saved
        xp = array_module(device_of(x))
        if dim is None:
            m = (x == x.reshape(-1)[idx]) | ((x != x) & (x.reshape(-1)[idx] != x.reshape(-1)[idx]))
            return (m / builtins.max(builtins.int(m.sum()), 1)).astype(dtype)
        out = xp.zeros(x.shape, dtype=dtype)
        xp.put_along_axis(out, xp.expand_dims(idx, dim), 1, axis=dim)
        return out

    def backward(self, g):
        x, idx, dim, keepdim = self.saved
        xp = array_module(device_of(x))
        if dim is not None and not keepdim:
            g = xp.expand_dims(g, dim)
        return (g * self._weights(g.dtype),)

    def backward_graph(self, g):
        x, idx, dim, keepdim = self.saved
        if dim is not None and not keepdim:
            g = g.unsqueeze(dim)
        return (g * _const(self._weights(g._data.dtype)),)

    def _saved_inputs(self):
        return ()


def _maxmin(input, dim, keepdim, fn):
    x = input._data
    argfn = "argmax" if fn == "max" else "argmin"
    if dim is None:
        if x.size == 0:
            raise RuntimeError(f"{fn}(): Expected reduction dim to be specified for input.numel() "
                               "== 0. Specify the reduction dim with the 'dim' argument.")
        idx = builtins.int(getattr(x, argfn)())
        val = x.reshape(-1)[idx:idx + 1].reshape(())
        return _result(val.copy(), _MaxAll, (input,), x, idx, None, False)
    d = _norm_dim(dim, x.ndim)
    xp = array_module(input.device)
    if x.ndim == 0:
        return _MaxResult(_result(x.copy(), _IdentityBackward, (input,)),
                          _wrap(xp.zeros((), np.int64)))
    if x.shape[d] == 0:
        raise IndexError(f"{fn}(): Expected reduction dim {d} to have non-zero size.")
    idx = getattr(x, argfn)(axis=d).astype(np.int64, copy=False)
    vals = xp.take_along_axis(x, xp.expand_dims(idx, d), axis=d)
    if not keepdim:
        vals = vals.squeeze(d)
    v = _result(vals, _MaxAll, (input,), x, idx, d, keepdim)
    return _MaxResult(v, _wrap(idx if not keepdim else xp.expand_dims(idx, d)), fn)


class _MaxResult(tuple):
    """``(values, indices)`` as returned by ``max(dim=...)`` (torch.return_types.max)."""

    def __new__(cls, values, indices, name="max"):
        self = super().__new__(cls, (values, indices))
        self._name = name
        return self

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])

    def __repr__(self):
        return f"torch.return_types.{self._name}(\nvalues={self[0]!r},\nindices={self[1]!r})"

    def __reduce__(self):
        return (_MaxResult, (self[0], self[1], self._name))


def max(input, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None):  # noqa: A001
    if not isinstance(input, Tensor):
        raise _not_tensor("max", input)
    if isinstance(dim, Tensor) and axis is None:
        return maximum(input, dim, out=out)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    return _maxmin(input, dim, keepdim, "max")


def min(input, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None):  # noqa: A001
    if not isinstance(input, Tensor):
        raise _not_tensor("min", input)
    if isinstance(dim, Tensor) and axis is None:
        return minimum(input, dim, out=out)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    return _maxmin(input, dim, keepdim, "min")


class _AMax(Node):
    """amax/amin over ``axes``: the gradient split evenly among the tied extremes (as torch)."""

    __slots__ = ()
    name_ = "AmaxBackward0"

    def _weights(self, dtype):
        x, r, axes = self.saved
        xp = array_module(device_of(x))
        rk = r if axes is None else xp.expand_dims(r, axes) if r.ndim != x.ndim else r
        m = (x == rk)
        return (m / m.sum(axis=axes, keepdims=True)).astype(dtype)

    def _expand(self, g, graph):
        x, r, axes = self.saved
        if r.ndim != x.ndim and axes is not None:
            return g.unsqueeze(axes[0]).reshape(np.expand_dims(r, axes).shape) if graph else \
                array_module(device_of(x)).expand_dims(g, axes)
        return g

    def backward(self, g):
        return (self._expand(g, False) * self._weights(g.dtype),)

    def backward_graph(self, g):
        return (self._expand(g, True) * _const(self._weights(g._data.dtype)),)

    def _saved_inputs(self):
        return ()


def _amaxmin(input, dim, keepdim, fn):
    x = input._data
    axes = _axes(dim, x.ndim)
    if x.size == 0:
        raise IndexError(f"{fn}(): Expected reduction dim to be specified for input.numel() == 0.")
    r = getattr(x, "max" if fn == "amax" else "min")(axis=axes, keepdims=keepdim)
    r = np.asarray(r) if type(x) is _ndarray else r
    return _result(r, _AMax, (input,), x, r, axes)


def amax(input, dim=(), keepdim=False, *, axis=None, keepdims=None, out=None):
    dim, keepdim = _dk(None if dim == () else dim, axis, keepdim, keepdims)
    return _write_out(_amaxmin(input, dim, keepdim, "amax"), out)


def amin(input, dim=(), keepdim=False, *, axis=None, keepdims=None, out=None):
    dim, keepdim = _dk(None if dim == () else dim, axis, keepdim, keepdims)
    return _write_out(_amaxmin(input, dim, keepdim, "amin"), out)


class _Maximum(Node):
    """maximum/minimum: ties split the gradient in half (as torch)."""

    __slots__ = ()
    name_ = "MaximumBackward0"
    _sign = 1

    @staticmethod
    def forward(x, y):
        return array_module(device_of(x)).maximum(x, y)

    def _weights(self):
        a, b = self.inputs
        x, y = a._data, b._data
        if self._sign < 0:
            x, y = y, x
        wa = (x > y) + 0.5 * (x == y)
        return wa, 1.0 - wa

    def backward(self, g):
        a, b = self.inputs
        wa, wb = self._weights()
        return (_unb(g * wa, a._data) if a.requires_grad else None,
                _unb(g * wb, b._data) if b.requires_grad else None)

    def backward_graph(self, g):
        a, b = self.inputs
        wa, wb = self._weights()
        return (_unb_t(g * _const(wa.astype(g._data.dtype)), a) if a.requires_grad else None,
                _unb_t(g * _const(wb.astype(g._data.dtype)), b) if b.requires_grad else None)


class _Minimum(_Maximum):
    __slots__ = ()
    name_ = "MinimumBackward0"
    _sign = -1

    @staticmethod
    def forward(x, y):
        return array_module(device_of(x)).minimum(x, y)


def maximum(input, other, *, out=None):
    return _write_out(_binary(input, other, _Maximum), out)


def minimum(input, other, *, out=None):
    return _write_out(_binary(input, other, _Minimum), out)



class _Reshape(Node):
    __slots__ = ()
    name_ = "ViewBackward0"

    def backward(self, g):
        return (g.reshape(self.saved[0]),)

    def backward_graph(self, g):
        return (g.reshape(self.saved[0]),)

    def _saved_inputs(self):
        return ()


class _Transpose(Node):
    __slots__ = ()
    name_ = "TBackward0"

    def backward(self, g):
        inv = self.saved[0]
        return (g.T if inv is None else g.transpose(inv),)

    def backward_graph(self, g):
        inv = self.saved[0]
        return (g.T if inv is None else g.permute(inv),)

    def _saved_inputs(self):
        return ()


class _Expand(Node):
    __slots__ = ()
    name_ = "ExpandBackward0"

    def backward(self, g):
        return (_unbroadcast(g, self.saved[0]),)

    def backward_graph(self, g):
        return (_unb_t(g, tuple(self.saved[0])),)

    def _saved_inputs(self):
        return ()


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

    def backward_graph(self, g):
        shape, idx = self.saved
        return (_index_put_zeros(g, shape, idx),)

    def _saved_inputs(self):
        return ()


class _IndexPut(Node):
    """``zeros(shape); out[idx] += g`` (the backward of indexing, recorded for create_graph)."""

    __slots__ = ()
    name_ = "IndexPutBackward0"

    def backward(self, g):
        return (g[self.saved[0]],)

    def backward_graph(self, g):
        return (g[self.saved[0]],)

    def _saved_inputs(self):
        return ()


def _index_put_zeros(g, shape, idx):
    xp = array_module(g.device)
    out = xp.zeros(shape, dtype=g._data.dtype)
    (np if type(out) is _ndarray else xp).add.at(out, idx, g._data)
    return _result(out, _IndexPut, (g,), idx)


def reshape(input, shape):
    return input.reshape(shape)


def flatten(input, start_dim=0, end_dim=-1):
    if not isinstance(input, Tensor):
        raise _not_tensor("flatten", input)
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
    if not isinstance(input, Tensor):
        raise _not_tensor("squeeze", input)
    shp = input._data.shape
    if dim is None:
        new = tuple(s for s in shp if s != 1)
    else:
        dims = {d % len(shp) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))} if shp else set()
        new = tuple(s for i, s in enumerate(shp) if not (i in dims and s == 1))
    return input.reshape(new)


def unsqueeze(input, dim):
    if not isinstance(input, Tensor):
        raise _not_tensor("unsqueeze", input)
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

    def _saved_inputs(self):  # as torch's mm: each operand is saved for the other's gradient
        a, b = self.inputs
        return tuple(t for t, other in ((a, b), (b, a)) if other.requires_grad)

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

    def backward_graph(self, g):
        a, b = self.inputs
        x2 = a.unsqueeze(0) if a.ndim == 1 else a
        y2 = b.unsqueeze(1) if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = g2.unsqueeze(-2)
        if b.ndim == 1:
            g2 = g2.unsqueeze(-1)
        ga = gb = None
        if a.requires_grad:
            ga = _unb_t(matmul(g2, y2.transpose(-1, -2)), x2).reshape(a.shape)
        if b.requires_grad:
            gb = _unb_t(matmul(x2.transpose(-1, -2), g2), y2).reshape(b.shape)
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

    def backward_graph(self, g):
        dim, sizes = self.saved
        out, start = [], 0
        for n, t in zip(sizes, self.inputs):
            out.append(g[(slice(None),) * dim + (slice(start, start + n),)] if t.requires_grad
                       else None)
            start += n
        return tuple(out)

    def _saved_inputs(self):
        return ()


def _tensor_list(tensors, fn):
    if isinstance(tensors, Tensor):
        raise TypeError(f"{fn}(): argument 'tensors' (position 1) must be tuple of Tensors, not Tensor")
    tensors = tuple(tensors)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}(): argument 'tensors' (position 1) must be tuple of Tensors, but "
                            f"found element of type {type(t).__name__} at pos {i}")
    return tensors


def _common_dtype(arrays):
    dts = [a.dtype for a in arrays]
    if builtins.all(d == dts[0] for d in dts):
        return dts[0]
    fl = [d for d in dts if d.kind == "f"]
    return np.result_type(*fl) if fl else np.result_type(*dts)


def cat(tensors, dim=0, *, axis=None, out=None):
    if axis is not None:
        dim = axis
    tensors = _tensor_list(tensors, "cat")
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    # torch skips legacy empty 1-D tensors (shape (0,)) when the others have more dimensions
    use = [t for t in tensors if not (t._data.ndim == 1 and t._data.size == 0)] or list(tensors)
    first = use[0]
    for t in use[1:]:
        _same_device(first._data, t._data)
    nd = first._data.ndim
    if nd == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = _norm_dim(dim, nd)
    for i, t in enumerate(use):
        sh = t._data.shape
        if len(sh) != nd:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {nd} and {len(sh)}")
        for k in range(nd):
            if k != d and sh[k] != first._data.shape[k]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected "
                                   f"size {first._data.shape[k]} but got size {sh[k]} for tensor "
                                   f"number {i} in the list.")
    xp = array_module(first.device)
    dt = _common_dtype([t._data for t in use])
    r = xp.concatenate([t._data if t._data.dtype == dt else t._data.astype(dt) for t in use], axis=d)
    return _write_out(_result(r, _Cat, tuple(use), d, [t._data.shape[d] for t in use]), out)


concatenate = cat
concat = cat


def stack(tensors, dim=0, *, out=None):
    tensors = _tensor_list(tensors, "stack")
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shp = tensors[0]._data.shape
    for i, t in enumerate(tensors):
        if t._data.shape != shp:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(shp)} at entry 0 and {list(t._data.shape)} at entry {i}")
    d = _norm_dim(dim, len(shp) + 1)
    return _write_out(cat([t.unsqueeze(d) for t in tensors], d), out)


def hstack(tensors):
    tensors = _tensor_list(tensors, "hstack")
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    tensors = _tensor_list(tensors, "vstack")
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


class _Where(Node):
    __slots__ = ()
    name_ = "WhereBackward0"

    def backward(self, g):
        a, b = self.inputs
        c = self.saved[0]
        return (_unbroadcast(g * c, a._data.shape) if a.requires_grad else None,
                _unbroadcast(g * ~c, b._data.shape) if b.requires_grad else None)

    def backward_graph(self, g):
        a, b = self.inputs
        c = self.saved[0]
        return (_unb_t(g * _const(c), a) if a.requires_grad else None,
                _unb_t(g * _const(~c), b) if b.requires_grad else None)

    def _saved_inputs(self):
        return ()


def where(condition, input=None, other=None, *, out=None):
    """``where(cond, a, b)`` (a where cond else b, broadcasting; scalars allowed) or
    ``where(cond)`` (= ``nonzero(cond, as_tuple=True)``)."""
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    if not isinstance(condition, Tensor):
        raise TypeError(f"where(): argument 'condition' (position 1) must be Tensor, not "
                        f"{type(condition).__name__}")
    c = condition._data
    if c.dtype.kind != "b":
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {_torch_type(c.dtype)}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = _wrap(array_module(condition.device).asarray(
            input, dtype=np.float32 if isinstance(input, builtins.float) or
            isinstance(other, builtins.float) else np.int64))
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    if not isinstance(other, Tensor):
        other = _as_tensor_like(other, input)
    _same_device(c, input._data)
    _same_device(c, other._data)
    x, y = input._data, other._data
    if x.dtype != y.dtype:
        dt = _promote(x, y, _Add)
        x, y = x.astype(dt, copy=False), y.astype(dt, copy=False)
    xp = array_module(input.device)
    return _write_out(_result(xp.where(c, x, y), _Where, (input, other), c), out)


def nonzero(input, *, as_tuple=False):
    x = input._data
    if as_tuple:
        if x.ndim == 0:
            return (_wrap(array_module(input.device).asarray(
                [0] if builtins.bool(x) else [], dtype=np.int64)),)
        return tuple(_wrap(i.astype(np.int64)) for i in x.nonzero())
    xp = array_module(input.device)
    return _wrap(xp.argwhere(x).astype(np.int64))


def argwhere(input):
    return nonzero(input)


def count_nonzero(input, dim=None):
    return _wrap(array_module(input.device).asarray(
        (input._data != 0).sum(axis=_axes(dim, input.ndim)), dtype=np.int64))


# ---- masks, gathers, scatters --------------------------------------------------------------
def _bool_mask(mask, fn):
    if not isinstance(mask, Tensor):
        raise TypeError(f"{fn}(): argument 'mask' (position 1) must be Tensor, not "
                        f"{type(mask).__name__}")
    if mask._data.dtype.kind != "b":
        raise RuntimeError(f"{fn} only supports boolean masks, but got mask with dtype "
                           f"{_torch_type(mask._data.dtype)}")
    return mask._data


class _MaskedFill(Node):
    __slots__ = ()
    name_ = "MaskedFillBackward0"

    def backward(self, g):
        x_t = self.inputs[0]
        m = self.saved[0]
        gx = _unb(g * ~m, x_t._data) if x_t.requires_grad else None
        if len(self.inputs) == 2:
            v = self.inputs[1]
            return gx, (g * m).sum().reshape(v._data.shape) if v.requires_grad else None
        return (gx,)

    def backward_graph(self, g):
        x_t = self.inputs[0]
        m = self.saved[0]
        gx = _unb_t(g * _const(~m), x_t) if x_t.requires_grad else None
        if len(self.inputs) == 2:
            v = self.inputs[1]
            return gx, (g * _const(m)).sum().reshape(v.shape) if v.requires_grad else None
        return (gx,)

    def _saved_inputs(self):
        return ()


def masked_fill(input, mask, value):
    m = _bool_mask(mask, "masked_fill")
    _same_device(input._data, m)
    x = input._data
    shape = np.broadcast_shapes(x.shape, m.shape)
    if shape != x.shape:
        raise RuntimeError(f"masked_fill: the mask of shape {list(m.shape)} must be broadcastable "
                           f"to the input of shape {list(x.shape)}")
    xp = array_module(input.device)
    if isinstance(value, Tensor):
        if value._data.ndim != 0:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got "
                               f"tensor with {value._data.ndim} dimension(s).")
        r = xp.where(m, value._data.astype(x.dtype), x)
        return _result(r, _MaskedFill, (input, value), xp.broadcast_to(m, x.shape))
    if x.dtype.kind in "iub" and isinstance(value, builtins.float) and not builtins.float(value).is_integer():
        pass  # torch casts the value to the tensor's dtype
    r = xp.where(m, xp.asarray(value).astype(x.dtype), x)
    return _result(r, _MaskedFill, (input,), xp.broadcast_to(m, x.shape))


def masked_select(input, mask):
    m = _bool_mask(mask, "masked_select")
    shape = np.broadcast_shapes(input._data.shape, m.shape)
    xp = array_module(input.device)
    x = input.expand(shape) if input._data.shape != shape else input
    return x[_wrap(xp.broadcast_to(m, shape))]


def _index_grid(idx, dim):
    """The fancy index that addresses ``a[..., idx[...], ...]`` along ``dim`` (gather/scatter)."""
    xp = array_module(device_of(idx))
    grid = list(xp.indices(idx.shape, sparse=True))
    grid[dim] = idx
    return tuple(grid)


def _check_index(index, input, dim, fn):
    if not isinstance(index, Tensor):
        raise TypeError(f"{fn}(): argument 'index' must be Tensor, not {type(index).__name__}")
    ix = index._data
    if ix.dtype != np.int64:
        raise RuntimeError(f"{fn}(): Expected dtype int64 for index")
    x = input._data
    if ix.ndim != x.ndim and not (ix.ndim <= 1 and x.ndim <= 1):
        raise RuntimeError(f"Index tensor must have the same number of dimensions as input tensor")
    d = _norm_dim(dim, x.ndim)
    if ix.size:
        n = x.shape[d] if x.ndim else 1
        lo, hi = builtins.int(ix.min()), builtins.int(ix.max())
        if lo < -n or hi >= n or lo < 0:
            bad = hi if hi >= n else lo
            raise RuntimeError(f"index {bad} is out of bounds for dimension {d} with size {n}")
        for k in range(ix.ndim):
            if k != d and ix.shape[k] > x.shape[k]:
                raise RuntimeError(f"Size does not match at dimension {k} expected index "
                                   f"{list(ix.shape)} to be no larger than self {list(x.shape)} "
                                   f"apart from dimension {d}")
    return ix, d


class _Gather(Node):
    __slots__ = ()
    name_ = "GatherBackward0"

    def backward(self, g):
        shape, grid = self.saved
        xp = array_module(device_of(g))
        out = xp.zeros(shape, dtype=g.dtype)
        (np if type(out) is _ndarray else xp).add.at(out, grid, g)
        return (out,)

    def backward_graph(self, g):
        shape, grid = self.saved
        return (_index_put_zeros(g, shape, grid),)

    def _saved_inputs(self):
        return ()


def gather(input, dim, index, *, sparse_grad=False, out=None):
    ix, d = _check_index(index, input, dim, "gather")
    x = input._data
    if x.ndim == 0:
        return _write_out(_result(x.reshape(ix.shape).copy(), _IdentityBackward, (input,)), out)
    grid = _index_grid(ix, d)
    return _write_out(_result(x[grid], _Gather, (input,), x.shape, grid), out)


def take_along_dim(input, indices, dim=None):
    if dim is None:
        return input.reshape(-1)[indices.reshape(-1)]
    return gather(input, dim, indices)


class _Scatter(Node):
    """scatter (``src`` written at ``index``) / scatter_add (added): gradients for self and src."""

    __slots__ = ()
    name_ = "ScatterBackward0"

    def backward(self, g):
        grid, add, src_shape = self.saved
        x_t = self.inputs[0]
        gx = gs = None
        if x_t.requires_grad:
            gx = g.copy()
            if not add:
                gx[grid] = 0
        if len(self.inputs) == 2 and self.inputs[1].requires_grad:
            xp = array_module(device_of(g))
            gs = xp.zeros(src_shape, dtype=g.dtype)
            gs[tuple(slice(0, n) for n in _grid_shape(grid))] = g[grid]
        return (gx, gs) if len(self.inputs) == 2 else (gx,)

    def _saved_inputs(self):
        return ()


def _grid_shape(grid):
    return np.broadcast_shapes(*(a.shape for a in grid))


def _scatter(input, dim, index, src, value, reduce, add, inplace):
    ix, d = _check_index(index, input, dim, "scatter_add" if add else "scatter")
    x = input._data
    grid = _index_grid(ix, d)
    gshape = ix.shape
    if src is not None:
        if not isinstance(src, Tensor):
            value, src = src, None
    if src is not None:
        _same_device(x, src._data)
        s = src._data
        if s.ndim != ix.ndim and ix.size:
            raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
        for k in range(ix.ndim):
            if ix.shape[k] > s.shape[k]:
                raise RuntimeError(f"Size does not match at dimension {k} expected index "
                                   f"{list(ix.shape)} to be no larger than src {list(s.shape)}")
        vals = s[tuple(slice(0, n) for n in gshape)].astype(x.dtype, copy=False)
    else:
        vals = array_module(input.device).asarray(value).astype(x.dtype)
        vals = array_module(input.device).broadcast_to(vals, gshape)
    if reduce is not None and reduce not in ("add", "multiply"):
        raise RuntimeError(f"reduce argument must be either add or multiply. Got {reduce}")
    target = x if inplace else x.copy()
    xp_at = np if type(target) is _ndarray else array_module(input.device)
    if add or reduce == "add":
        xp_at.add.at(target, grid, vals)
    elif reduce == "multiply":
        xp_at.multiply.at(target, grid, vals)
    else:
        target[grid] = vals
    if inplace:
        return input
    inputs = (input,) if src is None else (input, src)
    return _result(target, _Scatter, inputs, grid, builtins.bool(add or reduce == "add"),
                   None if src is None else src._data.shape)


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    if src is None and value is None:
        raise TypeError("scatter() missing 1 required argument: 'src' or 'value'")
    return _scatter(input, dim, index, src, value, reduce, False, False)


def scatter_add(input, dim, index, src):
    return _scatter(input, dim, index, src, None, None, True, False)


def index_select(input, dim, index):
    d = _norm_dim(dim, input.ndim)
    if index._data.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    return input[(slice(None),) * d + (index.reshape(-1),)]


class _TopkResult(_MaxResult):
    pass


def _sort_indices(x, d, descending, stable=True):
    xp = array_module(device_of(x))
    if x.dtype.kind == "b":
        x = x.astype(np.int8)
    if descending:
        # NaN counts as the largest (torch); negate through a key that keeps the order stable
        key = -x if x.dtype.kind == "f" else (-(x.astype(np.int64)) if x.dtype.kind == "u" else -x)
        if x.dtype.kind == "f":
            key = xp.where(x != x, -np.inf, key)
        return xp.argsort(key, axis=d, kind="stable")
    return xp.argsort(x, axis=d, kind="stable")


def sort(input, dim=-1, descending=False, stable=False, *, out=None):
    x = input._data
    if x.ndim == 0:
        return _TopkResult(input.clone(), _wrap(array_module(input.device).zeros((), np.int64)))
    d = _norm_dim(dim, x.ndim)
    idx = _sort_indices(x, d, descending).astype(np.int64)
    ti = _wrap(idx)
    return _TopkResult(gather(input, d, ti), ti, "sort")


def argsort(input, dim=-1, descending=False, stable=False):
    x = input._data
    if x.ndim == 0:
        return _wrap(array_module(input.device).zeros((), np.int64))
    return _wrap(_sort_indices(x, _norm_dim(dim, x.ndim), descending).astype(np.int64))


def topk(input, k, dim=-1, largest=True, sorted=True, *, out=None):  # noqa: A002
    x = input._data
    d = _norm_dim(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    k = builtins.int(k)
    if not 0 <= k <= n:
        raise RuntimeError("selected index k out of range")
    if x.ndim == 0:
        return _TopkResult(input.clone(), _wrap(array_module(input.device).zeros((), np.int64)))
    idx = _sort_indices(x, d, largest).astype(np.int64)
    idx = idx[(slice(None),) * d + (slice(0, k),)]
    ti = _wrap(np.ascontiguousarray(idx) if type(idx) is _ndarray else idx)
    return _TopkResult(gather(input, d, ti), ti, "topk")


def kthvalue(input, k, dim=-1, keepdim=False):
    x = input._data
    d = _norm_dim(dim, x.ndim)
    idx = _sort_indices(x, d, False).astype(np.int64)
    ix = idx[(slice(None),) * d + (slice(k - 1, k),)]
    v = gather(input, d, _wrap(ix))
    ix_t = _wrap(ix)
    if not keepdim:
        v, ix_t = v.squeeze(d), ix_t.squeeze(d)
    return _TopkResult(v, ix_t, "kthvalue")


def median(input, dim=None, keepdim=False):
    """The lower median (as torch); with ``dim``, ``(values, indices)``."""
    if dim is None:
        flat = input.reshape(-1)
        n = flat.shape[0]
        return sort(flat).values[(n - 1) // 2]
    d = _norm_dim(dim, input.ndim)
    return kthvalue(input, (input.shape[d] + 1) // 2, d, keepdim)


# ---- splitting, flipping, products -------------------------------------------------------
def split(tensor, split_size_or_sections, dim=0):
    d = _norm_dim(dim, tensor.ndim)
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, (builtins.int, np.integer)):
        step = builtins.int(split_size_or_sections)
        if step <= 0 and not (step == 0 and n == 0):
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got "
                               f"dimension size of {n}" if step == 0 else
                               f"split expects split_size be non-negative, but got split_size={step}")
        bounds = [(i, builtins.min(i + step, n)) for i in range(0, n, step)] or [(0, 0)]
    else:
        sizes = [builtins.int(v) for v in split_size_or_sections]
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got split_sizes={sizes}")
        bounds, start = [], 0
        for v in sizes:
            bounds.append((start, start + v))
            start += v
    return tuple(tensor[(slice(None),) * d + (slice(a, b),)] for a, b in bounds)


def chunk(input, chunks, dim=0):
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0, got: " + str(chunks))
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    step = -(-n // chunks) if n else 1
    return split(input, builtins.max(step, 1), d) if n else (input,)


def tensor_split(input, indices_or_sections, dim=0):
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(indices_or_sections, (builtins.int, np.integer)):
        k = builtins.int(indices_or_sections)
        q, r = divmod(n, k)
        sizes = [q + 1] * r + [q] * (k - r)
    else:
        pts = [0] + [builtins.int(i) for i in indices_or_sections] + [n]
        sizes = [builtins.max(b - a, 0) for a, b in zip(pts[:-1], pts[1:])]
    return split(input, sizes, d)


def unbind(input, dim=0):
    d = _norm_dim(dim, input.ndim)
    return tuple(input[(slice(None),) * d + (i,)] for i in range(input.shape[d]))


class _Flip(Node):
    __slots__ = ()
    name_ = "FlipBackward0"

    def backward(self, g):
        return (array_module(device_of(g)).flip(g, self.saved[0]),)

    def backward_graph(self, g):
        return (flip(g, self.saved[0]),)

    def _saved_inputs(self):
        return ()


def flip(input, dims):
    if isinstance(dims, (builtins.int, np.integer)):
        dims = (dims,)
    axes = tuple(_norm_dim(d, input.ndim) for d in dims)
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"dims has duplicates, original flip dims size={len(axes)}, but unique "
                           f"flip dims size={len(set(axes))}")
    xp = array_module(input.device)
    r = xp.flip(input._data, axes).copy() if axes else input._data.copy()
    return _result(r, _Flip, (input,), axes)


def fliplr(input):
    return flip(input, (1,))


def flipud(input):
    return flip(input, (0,))


def roll(input, shifts, dims=None):
    if dims is None:
        return roll(input.reshape(-1), shifts, 0).reshape(input.shape)
    if isinstance(shifts, builtins.int):
        shifts, dims = (shifts,), (dims,) if isinstance(dims, builtins.int) else dims
    out = input
    for sh, d in zip(shifts, dims):
        d = _norm_dim(d, input.ndim)
        n = input.shape[d]
        if n == 0:
            continue
        sh %= n
        if sh:
            out = cat([out[(slice(None),) * d + (slice(n - sh, n),)],
                       out[(slice(None),) * d + (slice(0, n - sh),)]], d)
    return out


def outer(input, vec2):
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"outer: Expected 1-D argument self, but got {input.ndim}-D"
                           if input.ndim != 1 else
                           f"outer: Expected 1-D argument vec2, but got {vec2.ndim}-D")
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


ger = outer


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    if input.shape[0] != other.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{input.shape[0]}] and src "
                           f"[{other.shape[0]}] to have the same number of elements, but got "
                           f"{input.shape[0]} and {other.shape[0]} elements respectively")
    return sum(input * other)


inner = dot


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor" if input.ndim != 3 else
                           "batch2 must be a 3D tensor")
    return matmul(input, mat2)


class _Einsum(Node):
    __slots__ = ()
    name_ = "EinsumBackward0"

    def backward(self, g):
        ins, out_sub, sizes = self.saved
        xp = array_module(device_of(g))
        grads = []
        arrays = [t._data for t in self.inputs]
        for i, t in enumerate(self.inputs):
            if not t.requires_grad:
                grads.append(None)
                continue
            sub_i = ins[i]
            ops_, subs = [g], [out_sub]
            for j, a in enumerate(arrays):
                if j != i:
                    ops_.append(a)
                    subs.append(ins[j])
            have = set("".join(subs))
            for c in sub_i:
                if c not in have:  # summed out of operand i only: broadcast back with ones
                    ops_.append(xp.ones(sizes[c], dtype=g.dtype))
                    subs.append(c)
                    have.add(c)
            grads.append(xp.einsum(",".join(subs) + "->" + sub_i, *ops_).astype(
                t._data.dtype, copy=False))
        return tuple(grads)


def einsum(equation, *operands):
    """numpy's einsum; gradients for equations without ``...`` or repeated indices in an operand."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    arrays = [t._data for t in operands]
    eq = equation.replace(" ", "")
    xp = array_module(operands[0].device)
    r = xp.einsum(eq, *arrays)
    r = xp.asarray(r)
    lhs, _, rhs = eq.partition("->")
    ins = lhs.split(",")
    if "->" not in eq:
        rhs = "".join(sorted(c for c in set(lhs.replace(",", "")) if lhs.count(c) == 1))
    needs = GradMode.enabled and builtins.any(t.requires_grad for t in operands)
    if needs and ("." in eq or builtins.any(len(set(s)) != len(s) for s in ins)):
        raise NotImplementedError("fastmlp.einsum: gradients of equations with '...' or a repeated "
                                  "index within one operand are not supported")
    sizes = {}
    for s, a in zip(ins, arrays):
        for c, n in zip(s, a.shape):
            sizes[c] = n
    return _result(r, _Einsum, tuple(operands), ins, rhs, sizes)


# ---- cumulative ops -----------------------------------------------------------------------
class _Cumsum(Node):
    __slots__ = ()
    name_ = "CumsumBackward0"

    def backward(self, g):
        d = self.saved[0]
        xp = array_module(device_of(g))
        return (xp.flip(xp.cumsum(xp.flip(g, d), axis=d), d),)

    def backward_graph(self, g):
        d = self.saved[0]
        return (flip(cumsum(flip(g, d), d), d),)

    def _saved_inputs(self):
        return ()


def cumsum(input, dim, *, dtype=None, out=None):
    x = input._data
    d = _norm_dim(dim, x.ndim)
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)
    xp = array_module(input.device)
    r = xp.cumsum(x, axis=d) if x.ndim else x.copy()
    return _write_out(_result(r, _Cumsum, (input,), d), out)


class _Cumprod(Node):
    __slots__ = ()
    name_ = "CumprodBackward0"

    def backward(self, g):
        x, y, d = self.saved
        xp = array_module(device_of(g))
        n = x.shape[d] if x.ndim else 1
        if x.ndim == 0:
            return (g,)
        if not (x == 0).any():
            return (xp.flip(xp.cumsum(xp.flip(g * y, d), axis=d), d) / x,)
        # exact with zeros: dy_k/dx_i = prod_{j<=k, j!=i} x_j for k >= i
        xm = xp.moveaxis(x, d, -1)
        gm = xp.moveaxis(g, d, -1)
        out = xp.zeros_like(xm)
        for i in range(n):
            p = xp.ones(xm.shape[:-1], dtype=x.dtype)
            acc = xp.zeros(xm.shape[:-1], dtype=x.dtype)
            for j in range(i):
                p = p * xm[..., j]
            for k in range(i, n):
                if k > i:
                    p = p * xm[..., k]
                acc = acc + gm[..., k] * p
            out[..., i] = acc
        return (xp.moveaxis(out, -1, d),)


def cumprod(input, dim, *, dtype=None, out=None):
    x = input._data
    d = _norm_dim(dim, x.ndim)
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)
    xp = array_module(input.device)
    r = xp.cumprod(x, axis=d) if x.ndim else x.copy()
    return _write_out(_result(r, _Cumprod, (input,), x, r, d), out)


class _Prod(Node):
    __slots__ = ()
    name_ = "ProdBackward0"

    def backward(self, g):
        x, axis, keepdim = self.saved
        xp = array_module(device_of(g))
        if axis is None:
            flat = x.reshape(-1)
            return ((_excl_prod(flat, 0) * g).reshape(x.shape),)
        if not keepdim:
            g = xp.expand_dims(g, axis)
        return (_excl_prod(x, axis) * g,)


def _excl_prod(x, axis):
    """prod over ``axis`` of all elements but the one at each position (exact with zeros)."""
    xp = array_module(device_of(x))
    xm = xp.moveaxis(x, axis, -1)
    ones = xp.ones(xm.shape[:-1] + (1,), dtype=x.dtype)
    left = xp.concatenate([ones, xp.cumprod(xm[..., :-1], axis=-1)], axis=-1)
    rev = xm[..., ::-1]
    right = xp.concatenate([ones, xp.cumprod(rev[..., :-1], axis=-1)], axis=-1)[..., ::-1]
    return xp.moveaxis(left * right, -1, axis)


def prod(input, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    if not isinstance(input, Tensor):
        raise _not_tensor("prod", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    x = input._data
    if dtype is not None:
        x = x.astype(_dt.to_numpy_dtype(dtype))
    elif x.dtype.kind in "biu":
        x = x.astype(np.int64)
    if dim is None:
        r = np.asarray(x.prod()) if type(x) is _ndarray else x.prod()
        return _result(r, _Prod, (input,), x, None, False)
    d = _norm_dim(dim, x.ndim)
    if x.ndim == 0:
        return _result(x.copy(), _IdentityBackward, (input,))
    return _result(x.prod(axis=d, keepdims=keepdim), _Prod, (input,), x, d, keepdim)


# ---- statistics and norms (compositions of recorded ops: gradients of every order) ---------
def _var_args(dim, unbiased, correction, fn):
    if isinstance(dim, builtins.bool):  # var(x, False): the legacy positional `unbiased`
        unbiased, dim = dim, None
    if correction is not None and unbiased is not None:
        raise RuntimeError(f"{fn}: can't specify both correction and unbiased arguments")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None, out=None):
    if not isinstance(input, Tensor):
        raise _not_tensor("var", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    dim, correction = _var_args(dim, unbiased, correction, "var")
    if not input.is_floating_point():
        raise RuntimeError(f"std and var only support floating point and complex dtypes")
    x = input
    axes = _axes(dim, x.ndim)
    n = x.numel() if axes is None else builtins.int(np.prod([x.shape[a] for a in axes]))
    mu = mean(x, axes, keepdim=True)
    dev = x - mu
    with np.errstate(divide="ignore", invalid="ignore"):
        if n - correction <= 0:
            import warnings

            warnings.warn(f"{'var'}(): degrees of freedom is <= 0. Correction should be strictly "
                          "less than the reduction factor (input numel divided by output numel).",
                          UserWarning, stacklevel=2)
        r = sum(dev * dev, axes, keepdim) / builtins.float(builtins.max(n - correction, 0))
    return _write_out(r, out)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None, out=None):
    if not isinstance(input, Tensor):
        raise _not_tensor("std", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    dim, correction = _var_args(dim, unbiased, correction, "std")
    return _write_out(sqrt(var(input, dim, keepdim=keepdim, correction=correction)), out)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dim, correction = _var_args(dim, unbiased, correction, "var_mean")
    return var(input, dim, keepdim=keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dim, correction = _var_args(dim, unbiased, correction, "std_mean")
    return std(input, dim, keepdim=keepdim, correction=correction), mean(input, dim, keepdim)


class _Norm2(Node):
    """The 2-norm over ``axes``; its gradient ``x / norm`` is 0 where the norm is 0 (as torch)."""

    __slots__ = ()
    name_ = "NormBackward1"

    def backward(self, g):
        x, r, axes, keepdim = self.saved
        xp = array_module(device_of(g))
        rk, gk = r, g
        if axes is not None and not keepdim:
            rk, gk = xp.expand_dims(r, axes), xp.expand_dims(g, axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = xp.where(rk == 0, 0, gk / xp.where(rk == 0, 1, rk))
        return ((x * scale).astype(x.dtype, copy=False),)

    def backward_graph(self, g):
        x_t = self.inputs[0]
        x, r, axes, keepdim = self.saved
        nr = vector_norm(x_t, 2, None if axes is None else list(axes), True)
        gk = g if keepdim or axes is None else g.reshape(nr.shape)
        safe = where(_const(nr._data == 0), _const(np.ones((), x.dtype)), nr)
        return (where(_const(nr._data == 0), _const(np.zeros((), x.dtype)), x_t * (gk / safe)),)


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    if not isinstance(x, Tensor):
        raise TypeError(f"linalg.vector_norm(): argument 'input' must be Tensor, not {type(x).__name__}")
    if not x.is_floating_point():
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as "
                           f"input. Got {_torch_type(x._data.dtype)}")
    if dtype is not None:
        x = x.to(dtype)
    if isinstance(dim, builtins.int):
        dim = (dim,)
    axes = _axes(dim, x.ndim)
    p = builtins.float(ord)
    if p == 2:
        a = x._data
        r = np.sqrt((a * a).sum(axis=axes, keepdims=keepdim)) if type(a) is _ndarray else \
            array_module(x.device).sqrt((a * a).sum(axis=axes, keepdims=keepdim))
        r = np.asarray(r, dtype=a.dtype) if type(a) is _ndarray else r.astype(a.dtype)
        return _result(r, _Norm2, (x,), a, r, axes, keepdim)
    if p == np.inf:
        return amax(abs(x), dim=axes, keepdim=keepdim) if axes is not None else amax(abs(x))
    if p == -np.inf:
        return amin(abs(x), dim=axes, keepdim=keepdim) if axes is not None else amin(abs(x))
    if p == 0:
        return sum((x != 0).to(x.dtype), axes, keepdim)
    if p == 1:
        return sum(abs(x), axes, keepdim)
    a = x._data
    xp = array_module(x.device)
    r = ((xp.abs(a) ** p).sum(axis=axes, keepdims=keepdim) ** (1.0 / p))
    r = np.asarray(r, dtype=a.dtype) if type(a) is _ndarray else r.astype(a.dtype)
    return _result(r, _NormP, (x,), a, r, axes, keepdim, p)


class _NormP(Node):
    """The p-norm (p not 0, 1, 2, inf): d/dx = x |x|^(p-2) / norm^(p-1); 0 where the norm is 0."""

    __slots__ = ()
    name_ = "NormBackward1"

    def backward(self, g):
        x, r, axes, keepdim, p = self.saved
        xp = array_module(device_of(g))
        rk, gk = r, g
        if axes is not None and not keepdim:
            rk, gk = xp.expand_dims(r, axes), xp.expand_dims(g, axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = x * xp.abs(x) ** (p - 2) * gk / xp.where(rk == 0, 1, rk) ** (p - 1)
        return (xp.where((rk == 0) | (x == 0), 0, d).astype(x.dtype, copy=False),)

    def backward_graph(self, g):
        x_t = self.inputs[0]
        x, r, axes, keepdim, p = self.saved
        xp = array_module(device_of(x))
        rt = vector_norm(x_t, p, None if axes is None else list(axes), True)
        gk = g if keepdim or axes is None else g.reshape(rt.shape)
        zero = _const((rt._data == 0) | (x == 0))
        safe_r = where(_const(rt._data == 0), _const(np.ones((), x.dtype)), rt)
        safe_x = where(_const(x == 0), _const(np.ones((), x.dtype)), x_t)
        d = safe_x * abs(safe_x) ** (p - 2) * gk / safe_r ** (p - 1)
        return (where(zero, _const(xp.zeros((), x.dtype)), d),)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None, *, out=None):
    """torch.norm: ``p`` a number, ``'fro'`` or ``inf``; over ``dim`` (int or tuple) or all."""
    if isinstance(p, str):
        if p == "fro":
            p = 2
        elif p == "nuc":
            raise NotImplementedError("fastmlp.norm: the nuclear norm (p='nuc') is not supported")
        else:
            raise RuntimeError(f"norm(): unsupported p={p!r}")
    if p is None:
        p = 2
    return _write_out(vector_norm(input, p, dim, keepdim, dtype=dtype), out)


def dist(input, other, p=2):
    return vector_norm(input - other, p)


def logsumexp(input, dim, keepdim=False, *, out=None):
    if not input.is_floating_point():
        input = input.float()
    axes = _axes(dim, input.ndim)
    if input.ndim == 0:
        return input.clone()
    m = amax(input, list(axes), True).detach()
    xp = array_module(input.device)
    m = _wrap(xp.where(xp.isfinite(m._data), m._data, 0).astype(m._data.dtype))
    r = log(sum(exp(input - m), axes, True)) + m
    if not keepdim:
        r = r.reshape(tuple(s for i, s in enumerate(r.shape) if i not in axes))
    return _write_out(r, out)


# ---- predicates and cleaning ----------------------------------------------------------------
def isnan(input):
    return _wrap(array_module(input.device).isnan(input._data))


def isinf(input):
    return _wrap(array_module(input.device).isinf(input._data))


def isposinf(input):
    return _wrap(array_module(input.device).isposinf(input._data))


def isneginf(input):
    return _wrap(array_module(input.device).isneginf(input._data))


def isfinite(input):
    return _wrap(array_module(input.device).isfinite(input._data))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    o = other._data if isinstance(other, Tensor) else other
    return _wrap(array_module(input.device).isclose(input._data, o, rtol=rtol, atol=atol,
                                                    equal_nan=equal_nan))


class _NanToNum(Node):
    __slots__ = ()
    name_ = "NanToNumBackward0"

    def backward(self, g):
        x = self.saved[0]
        return (g * array_module(device_of(x)).isfinite(x),)

    def backward_graph(self, g):
        x = self.saved[0]
        return (g * _const(array_module(device_of(x)).isfinite(x)),)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    x = input._data
    if x.dtype.kind != "f":
        return _write_out(input.clone(), out)
    fi = np.finfo(x.dtype)
    xp = array_module(input.device)
    r = xp.nan_to_num(x, nan=nan, posinf=fi.max if posinf is None else posinf,
                      neginf=fi.min if neginf is None else neginf)
    return _write_out(_result(r.astype(x.dtype, copy=False), _NanToNum, (input,), x), out)


def _reduce_bool(input, dim, keepdim, fn):
    x = input._data
    axes = _axes(dim, x.ndim)
    r = getattr(x.astype(bool, copy=False), fn)(axis=axes, keepdims=keepdim)
    r = np.asarray(r) if type(x) is _ndarray else r
    if x.dtype == np.uint8:
        r = r.astype(np.uint8)  # torch keeps uint8 for any/all of a uint8 tensor
    return _wrap(r)


def any(input, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None):  # noqa: A001
    if not isinstance(input, Tensor):
        raise _not_tensor("any", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    return _write_out(_reduce_bool(input, dim, keepdim, "any"), out)


def all(input, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None):  # noqa: A001
    if not isinstance(input, Tensor):
        raise _not_tensor("all", input)
    dim, keepdim = _dk(dim, axis, keepdim, keepdims)
    return _write_out(_reduce_bool(input, dim, keepdim, "all"), out)


# ---- grids and buckets ----------------------------------------------------------------------
def meshgrid(*tensors, indexing=None):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        import warnings

        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the "
                      "indexing argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but "
                           f"received: {indexing}")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but "
                               f"got: {t!r}")
    ts = [t.reshape(-1) for t in tensors]
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    shape = tuple(t.shape[0] for t in ts)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[i] = shape[i]
        out.append(t.reshape(view).expand(shape))
    if swap:
        out[0], out[1] = out[1], out[0]
    return tuple(out)


def bucketize(input, boundaries, *, out_int32=False, right=False, out=None):
    b = boundaries._data if isinstance(boundaries, Tensor) else np.asarray(boundaries)
    if b.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({b.ndim})")
    xp = array_module(boundaries.device if isinstance(boundaries, Tensor) else CPU)
    x = input._data if isinstance(input, Tensor) else xp.asarray(input)
    r = xp.searchsorted(b, x, side="right" if right else "left")
    return _write_out(_wrap(xp.asarray(r).astype(np.int32 if out_int32 else np.int64)), out)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None):
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but got "
                               f"{side}")
        right = side == "right"
    s = sorted_sequence._data
    x = input._data if isinstance(input, Tensor) else np.asarray(input)
    sd = "right" if right else "left"
    if s.ndim == 1:
        r = np.searchsorted(s, x, side=sd)
    else:
        r = np.stack([np.searchsorted(row, xs, side=sd) for row, xs in
                      zip(s.reshape(-1, s.shape[-1]), x.reshape(-1, x.shape[-1]))]).reshape(x.shape)
    return _wrap(np.asarray(r).astype(np.int32 if out_int32 else np.int64))


# ---- element-wise arithmetic with torch's keyword forms ----------------------------------
def add(input, other, *, alpha=1, out=None):
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    return _write_out(input + (other if alpha == 1 else other * alpha), out)


def sub(input, other, *, alpha=1, out=None):
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    return _write_out(input - (other if alpha == 1 else other * alpha), out)


subtract = sub


def mul(input, other, *, out=None):
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    return _write_out(input * other, out)


multiply = mul


def div(input, other, *, rounding_mode=None, out=None):
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    if rounding_mode is None:
        return _write_out(input / other, out)
    if rounding_mode == "floor":
        return _write_out(floor_divide(input, other), out)
    if rounding_mode == "trunc":
        o = other._data if isinstance(other, Tensor) else other
        x = input._data
        with np.errstate(divide="ignore", invalid="ignore"):
            q = array_module(input.device).trunc(x / o)
        if x.dtype.kind in "iu" and (not isinstance(other, builtins.float)) and \
                (not isinstance(other, Tensor) or other._data.dtype.kind in "iu"):
            q = q.astype(np.result_type(x, o if isinstance(o, _ndarray) else x.dtype))
        else:
            q = q.astype(np.float32) if q.dtype == np.float64 and x.dtype != np.float64 else q
        return _write_out(_wrap(q), out)
    raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
                       f"found '{rounding_mode}'")


divide = div
true_divide = lambda input, other, *, out=None: div(input, other, out=out)  # noqa: E731


def _int_only(x, fn):
    if x.dtype.kind == "f":
        raise RuntimeError(f"\"{fn}_cpu\" not implemented for '{_torch_type(x.dtype)}'")


def _int_binary(a, b, ufunc, fn):
    """An op without a gradient (bitwise, floor division, remainder) with torch's dtype rule."""
    if not isinstance(a, Tensor):
        a = _as_tensor_like(a, b)
    if not isinstance(b, Tensor):
        b = _as_tensor_like(b, a)
    _same_device(a._data, b._data)
    x, y = a._data, b._data
    with np.errstate(divide="ignore", invalid="ignore"):
        r = ufunc(x, y)
    if r.dtype != x.dtype and r.dtype != y.dtype or (r.dtype.kind == "f" and x.dtype != y.dtype):
        r = r.astype(_promote(x, y, _Add), copy=False)
    return _wrap(r if type(r) is not np.generic else np.asarray(r))


def bitwise_and(input, other):
    _int_only(input._data, "bitwise_and")
    return _int_binary(input, other, np.bitwise_and, "bitwise_and")


def bitwise_or(input, other):
    _int_only(input._data, "bitwise_or")
    return _int_binary(input, other, np.bitwise_or, "bitwise_or")


def bitwise_xor(input, other):
    _int_only(input._data, "bitwise_xor")
    return _int_binary(input, other, np.bitwise_xor, "bitwise_xor")


def bitwise_not(input):
    _int_only(input._data, "bitwise_not")
    return _wrap(array_module(input.device).invert(input._data))


def logical_and(input, other):
    return _wrap(np.logical_and(input._data, other._data if isinstance(other, Tensor) else other))


def logical_or(input, other):
    return _wrap(np.logical_or(input._data, other._data if isinstance(other, Tensor) else other))


def logical_xor(input, other):
    return _wrap(np.logical_xor(input._data, other._data if isinstance(other, Tensor) else other))


def logical_not(input):
    return _wrap(np.logical_not(input._data))


class _Remainder(Node):
    __slots__ = ()
    name_ = "RemainderBackward0"
    _quotient = "floor"  # remainder = a - floor(a / b) * b; fmod's quotient is truncated instead

    def backward(self, g):
        a, b = self.inputs
        gb = None
        if b.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                q = getattr(array_module(device_of(g)), self._quotient)(a._data / b._data)
                gb = _unb(-g * q, b._data)
        return (_unb(g, a._data) if a.requires_grad else None, gb)


class _Fmod(_Remainder):
    __slots__ = ()
    name_ = "FmodBackward1"
    _quotient = "trunc"


def _mod(input, other, ufunc, fn, node_cls):
    if not isinstance(input, Tensor):
        input = _as_tensor_like(input, other)
    r = _int_binary(input, other, ufunc, fn)
    o = other if isinstance(other, Tensor) else _as_tensor_like(other, input)
    if r._data.dtype.kind == "f" and (input.requires_grad or o.requires_grad) and GradMode.enabled:
        return _wrap(r._data, node_cls((input, o), ()), True)
    return r


def remainder(input, other):
    """Python's ``%``: the sign of the divisor (torch.remainder)."""
    return _mod(input, other, np.mod, "remainder", _Remainder)


def fmod(input, other):
    """C's fmod: the sign of the dividend (torch.fmod)."""
    return _mod(input, other, np.fmod, "fmod", _Fmod)


def floor_divide(input, other):
    r = _int_binary(input, other, np.floor_divide, "floor_divide")
    return r


# ---- random sampling ----------------------------------------------------------------------
def normal(mean=0.0, std=1.0, size=None, *, generator=None, out=None, dtype=None, device=None,
           requires_grad=False):
    """torch.normal: (Tensor, Tensor), (Tensor, float), (float, Tensor) broadcast; or (float,
    float, size). ``std`` must be >= 0."""
    from .generator import rng_of

    rng = rng_of(generator)
    mt, st = isinstance(mean, Tensor), isinstance(std, Tensor)
    if not mt and not st:
        if size is None:
            raise TypeError("normal() received an invalid combination of arguments: with float "
                            "mean and std, size is required: normal(mean, std, size)")
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
        arr = (mean + std * rng.standard_normal(_shape_arg((size,)))).astype(np.float32)
        return _write_out(_finish(arr, dtype, device, requires_grad), out)
    if size is not None:
        raise TypeError("normal(): size is only allowed with float mean and std")
    m = mean._data if mt else mean
    s = std._data if st else std
    if st and (s.dtype.kind != "f"):
        raise RuntimeError("normal expects std to be a floating point tensor")
    if mt and m.dtype.kind != "f":
        raise RuntimeError("normal expects mean to be a floating point tensor")
    if (np.asarray(s.get() if hasattr(s, "get") else s) < 0).any():
        raise RuntimeError(f"normal expects all elements of std >= 0.0")
    shape = np.broadcast_shapes(np.shape(m), np.shape(s))
    like = mean if mt else std
    dt = like._data.dtype
    z = rng.standard_normal(shape).astype(dt)
    arr = asarray(z, dev=like.device) * s + m
    return _write_out(_wrap(arr.astype(dt, copy=False)), out)


def bernoulli(input, p=None, *, generator=None):
    from .generator import rng_of

    probs = input._data if p is None else np.full(input._data.shape, p)
    r = rng_of(generator).random(input._data.shape) < np.asarray(probs)
    return _wrap(r.astype(input._data.dtype))


def multinomial(input, num_samples, replacement=False, *, generator=None):
    from .generator import rng_of

    rng = rng_of(generator)
    p = np.asarray(input.cpu()._data, dtype=np.float64)
    rows = p.reshape(-1, p.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all():
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    out = []
    for row in rows:
        tot = row.sum()
        if tot <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if not replacement and num_samples > np.count_nonzero(row):
            raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without "
                               "replacement")
        out.append(rng.choice(row.shape[0], size=num_samples, replace=replacement, p=row / tot))
    r = np.asarray(out, dtype=np.int64)
    return _wrap(r.reshape(p.shape[:-1] + (num_samples,)))


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
    if isinstance(data, (list, tuple)) and data and builtins.any(isinstance(d, (Tensor, list, tuple)) for d in data):
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
    is_float = builtins.any(isinstance(v, builtins.float) for v in (start, end, step))
    arr = np.arange(start, end, step, dtype=np.float32 if is_float else np.int64)
    return _finish(arr, dtype, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _finish(np.linspace(start, end, steps, dtype=np.float32), dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _finish(np.eye(n, m, dtype=np.float32), dtype, device, requires_grad)


def one_hot(tensor, num_classes=-1):
    """``F.one_hot``: int64 class indices → an int64 tensor with a trailing one-hot dimension;
    ``num_classes=-1`` means ``max + 1``."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"one_hot(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(tensor).__name__}")
    x = tensor._data
    if x.dtype != np.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    xp = array_module(tensor.device)
    if x.size == 0:
        if num_classes < 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        return _wrap(xp.zeros(x.shape + (num_classes,), dtype=np.int64))
    lo, hi = builtins.int(x.min()), builtins.int(x.max())
    if lo < 0:
        raise RuntimeError("Class values must be non-negative.")
    if num_classes == -1:
        num_classes = hi + 1
    elif hi >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    out = (x[..., None] == xp.arange(num_classes)).astype(np.int64)
    return _wrap(out)


def pow(input, exponent, *, out=None):  # noqa: A001
    if not isinstance(input, Tensor):
        return _write_out(_as_tensor_like(input, exponent) ** exponent, out)
    return _write_out(input ** exponent, out)


def square(input):
    return input * input


def neg(input):
    return -input


def t(input):
    return input.t()


def permute(input, dims):
    return input.permute(dims)


# ---- Tensor methods that are the module function with `self` as `input` -------------------------
# One table instead of a `def name(self, ...): return name(self, ...)` per method: each function
# below takes the method's arguments in the method's order (extra ones are keyword-only: out=,
# axis=, ...), so binding it directly keeps every call and saves a Python call on each.
# Methods whose signature differs from the function's (round, split, cumsum, clamp_min, ...) stay
# written out in the class.
_METHODS = {n: n for n in """
    div sum mean max min argmax argmin amax amin prod std var norm logsumexp any all topk sort
    argsort kthvalue median gather scatter scatter_add index_select masked_fill masked_select chunk
    tensor_split unbind roll outer dot isnan isinf isfinite nan_to_num nonzero count_nonzero maximum
    minimum sin cos tan log1p log2 log10 expm1 rsqrt reciprocal sign floor ceil trunc remainder fmod
    floor_divide bitwise_and bitwise_or bitwise_xor bitwise_not logical_and logical_or logical_not
    logical_xor isclose allclose equal bernoulli multinomial flatten squeeze unsqueeze transpose
    matmul exp log sqrt tanh sigmoid softmax log_softmax abs clamp""".split()}
_METHODS.update(divide="div", mm="matmul", clip="clamp", __matmul__="matmul", __abs__="abs",
                __and__="bitwise_and", __rand__="bitwise_and", __or__="bitwise_or",
                __ror__="bitwise_or", __xor__="bitwise_xor", __rxor__="bitwise_xor",
                __invert__="bitwise_not", __mod__="remainder", __floordiv__="floor_divide")

# in-place forms: `t.exp_()` is `t._inplace_from(exp(t.detach()))`, `t &= o` the same with bitwise_and
_INPLACE = {n + "_": n for n in "exp log sqrt abs floor ceil sign tanh sigmoid nan_to_num".split()}
_INPLACE.update(__iand__="bitwise_and", __ior__="bitwise_or", __ixor__="bitwise_xor")


def _inplace_method(name, fn):
    def method(self, *args):
        return self._inplace_from(fn(self.detach(), *args))

    method.__name__ = method.__qualname__ = name
    return method


for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, globals()[_fn])
for _name, _fn in _INPLACE.items():
    setattr(Tensor, _name, _inplace_method(_name, globals()[_fn]))
del _name, _fn
