"""``fastmlp.nn.functional``: linear, relu, mse_loss — the hot ops, on the compiled kernels.

Fusion without asking:

* ``Sequential(Linear, ReLU)`` calls :func:`_linear` with ``relu=True``: one GEMM whose epilogue
  adds the bias and applies the ReLU.
* ``relu(linear(x))`` / ``torch.relu(self.fc1(x))``: the Linear output is a fresh tensor that nothing
  else references (checked with ``sys.getrefcount`` on the tensor and on its array, with thresholds
  calibrated at import, so the check stays correct on Python versions that count differently, or
  switches itself off). The ReLU is then applied in place on that output and recorded on the
  Linear's own tape node, which becomes a fused Linear+ReLU node. If anything else holds the
  Linear output (``h = fc1(x); relu(h)``), a separate ReLU op runs, as in PyTorch.
* The backward of a (fused) Linear is one ``_C.linear_backward`` call: ReLU mask, bias gradient,
  weight gradient (accumulated straight into ``weight.grad``) and input gradient.

CPU float32 goes to ``fastmlp._C``; float64 tensors use numpy; CUDA tensors go through
:mod:`fastmlp.ops` (which dispatches on ``__cuda_array_interface__``).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

from .. import _C, ops
from ..autograd import GradMode, Node, _post_acc_hooks, _run_post_acc_hooks, _seq
from ..devices import array_module, device_of
from ..tensor import _ONE_F32 as _ONE
from ..tensor import Size, Tensor, _as_tensor_like, _same_device, _unbroadcast, _wrap

__all__ = ["linear", "relu", "relu_", "mse_loss", "ShapeError", "DtypeError"]

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_getrefcount = sys.getrefcount
_lin_fwd = _C.linear_forward
_lin_bwd = _C.linear_backward
_relu_fwd = _C.relu_forward
_relu_bwd = _C.relu_backward
_mse_fwd = _C.mse_forward
_mse_bwd = _C.mse_backward
_mse_fb = _C.mse_forward_backward
_new = object.__new__


class ShapeError(RuntimeError, ValueError):
    """A shape mismatch (a RuntimeError as in PyTorch, and a ValueError)."""


class DtypeError(TypeError, RuntimeError):
    """A dtype mismatch (a TypeError, and a RuntimeError as in PyTorch)."""


# ---- Linear -------------------------------------------------------------------------------
class _LinearNode(Node):
    """Backward of ``x @ w.T + b`` (and of its ReLU when fused: ``y`` is then the ReLU output)."""

    __slots__ = ("x2", "y", "in_shape")

    def __init__(self, inputs, x2, in_shape):
        self.inputs = inputs
        self.saved = True
        self.seq = next(_seq)
        self.gacc = None
        self.x2 = x2
        self.y = None
        self.in_shape = in_shape

    def name(self):
        return "AddmmBackward0" if self.y is None else "ReluBackward0"

    def release(self):
        self.saved = None
        self.x2 = self.y = None

    def backward(self, g):
        inputs = self.inputs
        x_t = inputs[0]
        w_t = inputs[1]
        b_t = inputs[2] if len(inputs) == 3 else None
        x = self.x2
        w = w_t._data
        if g.ndim != 2:
            g = g.reshape(-1, w.shape[0])
        if type(g) is _ndarray and g.dtype is _F32 and x.dtype is _F32 and w.dtype is _F32:
            want_x = x_t.requires_grad
            dw_buf = db_buf = None
            want_w = want_b = acc_w = acc_b = leaf_w = leaf_b = False
            if w_t.requires_grad:
                if w_t._node is None:
                    leaf_w = True
                    gr = w_t.grad
                    if gr is None or not _writable_f32(gr._data):
                        want_w = True
                    else:
                        dw_buf = gr._data
                        acc_w = True
                else:
                    want_w = True
            if b_t is not None and b_t.requires_grad:
                if b_t._node is None:
                    leaf_b = True
                    gr = b_t.grad
                    if gr is None or not _writable_f32(gr._data):
                        want_b = True
                    else:
                        db_buf = gr._data
                        acc_b = True
                else:
                    want_b = True
            dx, dw, db = _lin_bwd(g, x, w, self.y, None, dw_buf, db_buf, want_x, want_w, want_b,
                                  acc_w, acc_b)
            if leaf_w:
                if not acc_w:
                    if w_t.grad is None:
                        t = _new(Tensor)
                        t._data = dw
                        t.grad = t._node = None
                        t.requires_grad = False
                        w_t.grad = t
                    else:
                        _set_leaf_grad(w_t, dw)
                dw = None
            if leaf_b:
                if not acc_b:
                    if b_t.grad is None:
                        t = _new(Tensor)
                        t._data = db
                        t.grad = t._node = None
                        t.requires_grad = False
                        b_t.grad = t
                    else:
                        _set_leaf_grad(b_t, db)
                db = None
            if _post_acc_hooks:  # Tensor.register_post_accumulate_grad_hook (DDP's buckets)
                if leaf_w:
                    _run_post_acc_hooks(w_t)
                if leaf_b:
                    _run_post_acc_hooks(b_t)
        else:
            dx, dw, db = _linear_backward_generic(g, x, w, self.y, x_t.requires_grad,
                                                  w_t.requires_grad,
                                                  b_t is not None and b_t.requires_grad)
        if dx is not None and dx.shape != self.in_shape:
            dx = dx.reshape(self.in_shape)
        return (dx, dw, db) if b_t is not None else (dx, dw)


def _writable_f32(a):
    return type(a) is _ndarray and a.dtype is _F32 and a.flags.c_contiguous and a.flags.writeable


def _set_leaf_grad(t, g):
    """t.grad = g, or t.grad += g when a (user-set, odd-layout) gradient is already there."""
    cur = t.grad
    if cur is None:
        t.grad = _wrap(g)
    else:
        cur._data += g


def _linear_backward_generic(g, x, w, y, want_x, want_w, want_b):
    """The same backward with array ops (float64 on numpy, or CUDA through fastmlp.ops)."""
    if g.dtype == _F32 and x.dtype == _F32 and w.dtype == _F32:  # CUDA (or odd CPU layouts)
        if type(g) is _ndarray:
            g, x, w = (np.ascontiguousarray(a) for a in (g, x, w))
            y = None if y is None else np.ascontiguousarray(y)
        return ops.linear_backward(g, x, w, relu_out=y, need_input_grad=want_x,
                                   need_weight_grad=want_w, need_bias_grad=want_b)
    if y is not None:
        g = g * (y > 0)
    db = g.sum(axis=0) if want_b else None
    dw = g.T @ x if want_w else None
    dx = g @ w if want_x else None
    return dx, dw, db


def _shape_error(x, w, module):
    if module is not None:
        return ShapeError(f"{_short(module)} expected input with {w.shape[1]} features, got shape "
                          f"{tuple(x.shape)}")
    return ShapeError(f"linear: weight of shape {tuple(w.shape)} expects input with {w.shape[1]} "
                      f"features, got shape {tuple(x.shape)} (mat1 and mat2 shapes cannot be "
                      f"multiplied ({'x'.join(map(str, x.shape))} and {w.shape[1]}x{w.shape[0]}))")


def _short(module):
    w = module.weight
    return f"{type(module).__name__}({w.shape[1]}, {w.shape[0]})" if w is not None \
        else type(module).__name__


def _dtype_error(x, w, module):
    who = _short(module) if module is not None else "linear"
    return DtypeError(
        f"{who}: mat1 and mat2 must have the same dtype, but got input of dtype {x.dtype} and "
        f"weight of dtype {w.dtype}. Convert the input with x.float() (or x.to(torch.float32)); "
        f"for numpy data use torch.from_numpy(a.astype(np.float32)). fastmlp computes in float32.")


def _linear(input, weight, bias, relu, module):
    """The one Linear implementation (Linear.forward, F.linear, Sequential's fused Linear+ReLU)."""
    x = input._data
    w = weight._data
    b = None if bias is None else bias._data
    in_shape = x.shape
    if type(x) is _ndarray and x.dtype is _F32 and w.dtype is _F32 and type(w) is _ndarray:
        if x.ndim != 2:
            if x.ndim == 0:
                raise _shape_error(x, w, module)
            x = x.reshape(-1, x.shape[-1])
        if x.shape[1] != w.shape[1]:
            raise _shape_error(input._data, w, module)
        out = _lin_fwd(x, w, b, relu, None)
    else:
        x, out = _linear_forward_generic(input, weight, bias, relu, module)
    if len(in_shape) != 2:
        out = out.reshape(in_shape[:-1] + (w.shape[0],))
    if GradMode.enabled and (input.requires_grad or weight.requires_grad
                             or (bias is not None and bias.requires_grad)):
        node = _LinearNode((input, weight) if bias is None else (input, weight, bias), x, in_shape)
        if relu:
            node.y = out if out.ndim == 2 else out.reshape(-1, w.shape[0])
        t = _new(Tensor)
        t._data = out
        t.grad = None
        t.requires_grad = True
        t._node = node
        return t
    t = _new(Tensor)
    t._data = out
    t.grad = None
    t.requires_grad = False
    t._node = None
    return t



def _linear_forward_generic(input, weight, bias, relu, module):
    x, w = input._data, weight._data
    _same_device(x, w)
    if bias is not None:
        _same_device(x, bias._data)
    if x.dtype != w.dtype:
        raise _dtype_error(x, w, module)
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise _shape_error(x, w, module)
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    b = None if bias is None else bias._data
    if x.dtype == _F32:  # CUDA float32 (fastmlp.ops dispatches), or a non-native layout on the CPU
        if type(x) is _ndarray:
            x2 = np.ascontiguousarray(x2, dtype=_F32)
        out = ops.linear(x2, w, b, relu=relu)
    else:
        if x.dtype.kind != "f":
            raise DtypeError(f"{_short(module) if module is not None else 'linear'}: input has "
                             f"dtype {x.dtype}; Linear needs floating point input (use x.float())")
        out = x2 @ w.T
        if b is not None:
            out = out + b
        if relu:
            out = array_module(device_of(out)).where(out < 0, 0, out).astype(out.dtype, copy=False)
    return x2, out


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` with PyTorch's weight layout ``[out_features, in_features]``."""
    return _linear(input, weight, bias, False, None)


# ---- ReLU ---------------------------------------------------------------------------------
class _ReluNode(Node):
    __slots__ = ()
    name_ = "ReluBackward0"

    def backward(self, g):
        y = self.saved
        if type(g) is _ndarray and g.dtype is _F32 and y.dtype is _F32:
            return (_relu_bwd(g, y, None),)
        if g.dtype == _F32 and type(g) is not _ndarray:
            return (ops.relu_backward(g, y),)
        return (g * (y > 0),)


def _fuse_relu(input):
    """Apply ReLU in place on a fresh Linear output and fuse it into the Linear's node.

    Called from exactly one frame that holds ``input`` (``relu`` or ``ReLU.__call__``). Returns
    False (doing nothing) unless ``input`` is a Linear output that nothing else references.
    """
    node = input._node
    if (type(node) is not _LinearNode or node.y is not None or not _FUSE
            or node.saved is None or _getrefcount(input) > _TEMP_REFS
            or _getrefcount(input._data) > _ARRAY_REFS):
        return False
    data = input._data
    if type(data) is _ndarray and data.dtype is _F32:
        _relu_fwd(data, data)
    elif data.dtype == _F32:
        ops.relu(data, out=data)
    else:
        _relu_inplace_generic(data)
    node.y = data if data.ndim == 2 else data.reshape(-1, data.shape[-1])
    return True


def _probe_refs(input):
    return _getrefcount(input), _getrefcount(input._data)


def _probe_caller(input):  # the same frame structure as relu() -> _fuse_relu()
    return _probe_refs(input)


def _calibrate():
    """Refcounts _fuse_relu sees for an unreferenced temporary; (None, None) if it can't tell."""
    def make():
        return _wrap(np.zeros(1, np.float32))

    temp, arr_alone = _probe_caller(make())
    held = make()
    view = held._data[:]  # noqa: F841  (a second reference to the array must be visible)
    held_refs, held_arr = _probe_caller(held)
    if held_refs <= temp or held_arr <= arr_alone:
        return None, None
    return temp, arr_alone


_TEMP_REFS, _ARRAY_REFS = _calibrate()
_FUSE = _TEMP_REFS is not None


def relu(input, inplace=False):
    """``max(input, 0)``; fused into the preceding Linear when its output is an unshared temporary."""
    if input._node is not None and _fuse_relu(input):
        return input
    x = input._data
    if inplace and not (input.requires_grad and GradMode.enabled):
        if type(x) is _ndarray and x.dtype is _F32:
            _relu_fwd(x, x)
        else:
            _relu_inplace_generic(x)
        return input
    if type(x) is _ndarray and x.dtype is _F32:
        y = _relu_fwd(x, None)
    elif x.dtype == _F32:
        y = ops.relu(x)
    else:
        y = array_module(device_of(x)).where(x < 0, 0, x).astype(x.dtype, copy=False)
    if GradMode.enabled and input.requires_grad:
        return _wrap(y, _ReluNode((input,), y), True)
    return _wrap(y)


def _relu_inplace_generic(a):
    a[a < 0] = 0


def relu_(input):
    return relu(input, inplace=True)


# ---- MSE ----------------------------------------------------------------------------------
class _MseNode(Node):
    __slots__ = ()
    name_ = "MseLossBackward0"

    def backward(self, g):
        a, t = self.inputs
        x, y, reduction, d = self.saved
        if d is not None:  # computed with the loss; g is the seed 1.0 unless chained further
            if g is not _ONE:
                d = d * g.item() if g.item() != 1.0 else d
            return (d if a.requires_grad else None, -d if t.requires_grad else None)
        if reduction == "none":
            d = 2 * (x - y) * g
            da = _unbroadcast(d, x.shape) if a.requires_grad else None
            dt = _unbroadcast(-d, y.shape) if t.requires_grad else None
            return da, dt
        n = x.size if reduction == "mean" else 1
        if type(x) is _ndarray and x.dtype is _F32 and x.shape == y.shape:
            d = _mse_bwd(x, y, 2.0 * g.item() / (n if n else 1), None)
        elif x.shape == y.shape and x.dtype == _F32:
            d = ops.mse_loss_backward(x, y, grad_output=g.item(), reduction=reduction)
        else:
            d = (x - y) * (2.0 * g.item() / (n if n else 1))
            d = d.astype(np.result_type(x, y), copy=False)
        da = _unbroadcast(d, x.shape) if a.requires_grad else None
        dt = _unbroadcast(-d, y.shape) if t.requires_grad else None
        return da, dt


_REDUCTIONS = ("mean", "sum", "none")


def _legacy_reduction(size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return ("mean" if size_average else "sum") if reduce else "none"


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean (or sum, or elementwise) squared error, as ``torch.nn.functional.mse_loss``."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction)
    return _mse(input, target, reduction)


def _mse(input, target, reduction):
    """The training-step case first (CPU float32, same shapes, a backward to follow): one call
    gives the loss and its gradient; everything else goes through :func:`_mse_general`."""
    x = input._data
    if isinstance(target, Tensor):
        y = target._data
        if (type(x) is _ndarray and type(y) is _ndarray and x.dtype is _F32 and y.dtype is _F32
                and x.shape == y.shape and x.size and GradMode.enabled
                and (input.requires_grad or target.requires_grad)
                and (reduction == "mean" or reduction == "sum")):
            n = x.size
            if reduction == "mean":
                v, d = _mse_fb(x, y, 2.0 / n)
            else:
                v, d = _mse_fb(x, y, 2.0)
                v *= n
            t = _new(Tensor)
            t._data = np.array(v, dtype=_F32)
            t.grad = None
            t.requires_grad = True
            t._node = _MseNode((input, target), (x, y, reduction, d))
            return t
    return _mse_general(input, target, reduction)


def _mse_general(input, target, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if not isinstance(target, Tensor):
        target = _as_tensor_like(target, input)
    x = input._data
    y = target._data
    if type(x) is not type(y):
        _same_device(x, y)
    if x.dtype != y.dtype:
        raise DtypeError(f"mse_loss: input has dtype {x.dtype} but target has dtype {y.dtype}; "
                         f"convert the target with target.to(input.dtype) (e.g. target.float())")
    if x.shape != y.shape:
        warnings.warn(f"Using a target size ({Size(y.shape)}) that is different to the input size "
                      f"({Size(x.shape)}). This will likely lead to incorrect results due to "
                      f"broadcasting. Please ensure they have the same size.", UserWarning,
                      stacklevel=2)
        try:
            np.broadcast_shapes(x.shape, y.shape)
        except ValueError:
            raise ShapeError(f"mse_loss: the size of input {Size(x.shape)} and target "
                             f"{Size(y.shape)} cannot be broadcast together") from None
    d = None
    need_grad = GradMode.enabled and (input.requires_grad or target.requires_grad)
    if reduction != "none" and type(x) is _ndarray and x.dtype is _F32 and x.shape == y.shape:
        if need_grad:  # the gradient comes out of the same call (scaled for a seed of 1.0)
            n = x.size
            v, d = _mse_fb(x, y, 2.0 / n if reduction == "mean" and n else 2.0)
        else:
            v = _mse_fwd(x, y)
        if reduction == "sum":
            v *= x.size
        out = np.array(v, dtype=_F32)
    elif reduction != "none" and x.dtype == _F32 and x.shape == y.shape:
        v = ops.mse_loss(x, y)
        out = array_module(device_of(x)).asarray(v * (x.size if reduction == "sum" else 1), dtype=_F32)
    else:
        diff = x - y
        sq = diff * diff
        out = sq if reduction == "none" else (sq.mean() if reduction == "mean" else sq.sum())
        if type(x) is _ndarray:
            out = np.asarray(out, dtype=np.result_type(x, y))
    if need_grad:
        return _wrap(out, _MseNode((input, target), (x, y, reduction, d)), True)
    return _wrap(out)
