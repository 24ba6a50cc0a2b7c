"""``fastmlp.nn.functional``: linear, relu and the other activations, softmax, mse_loss — the hot
ops, on the compiled kernels.

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
* Every other element-wise activation (tanh, sigmoid, gelu, silu, leaky_relu, elu, softplus,
  hardtanh, relu6) fuses the same way: ``Sequential(Linear, GELU())`` puts it in the GEMM epilogue
  (which also keeps the pre-activation z when the gradient needs it), ``F.gelu(fc(x))`` applies it
  to the fresh Linear output and records it on the Linear's node; the backward is one
  ``linear_backward`` call whose first step is the activation's gradient.

CPU float32 goes to ``fastmlp._C``; float64 tensors use numpy; CUDA tensors go through
:mod:`fastmlp.ops` (which dispatches on ``__cuda_array_interface__``).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

from .. import ops
from ..ops import cpu as _kernels
from ..autograd import GradMode, Node, _post_acc_hooks, _run_post_acc_hooks, _seq
from ..devices import array_module, device_of
from ..tensor import _ONE_F32 as _ONE
from ..tensor import Size, Tensor, _as_tensor_like, _same_device, _unb_t, _unbroadcast, _wrap
from ..tensor import mask_grad, one_hot  # noqa: F401  (F.one_hot lives with the index ops)

__all__ = ["linear", "relu", "relu_", "mse_loss", "ShapeError", "DtypeError",
           "tanh", "sigmoid", "gelu", "silu", "leaky_relu", "leaky_relu_", "elu", "elu_", "softplus",
           "hardtanh", "hardtanh_", "relu6", "softmax", "log_softmax"]

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_getrefcount = sys.getrefcount
_lin_fwd = _kernels.linear_forward
_lin_bwd = _kernels.linear_backward
_relu_fwd = _kernels.relu_forward
_relu_bwd = _kernels.relu_backward
_mse_fwd = _kernels.mse_forward
_mse_bwd = _kernels.mse_backward
_mse_fb = _kernels.mse_forward_backward
_act_fwd = ops.act_forward
_act_bwd = ops.act_backward
_NEEDS_Z = ops.ACT_NEEDS_INPUT
_new = object.__new__


class ShapeError(RuntimeError, ValueError):
    """A shape mismatch (a RuntimeError as in PyTorch, and a ValueError)."""


class DtypeError(TypeError, RuntimeError):
    """A dtype mismatch (a TypeError, and a RuntimeError as in PyTorch)."""


def _type_name(value):
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def not_tensor_error(fn, args):
    """PyTorch's TypeError for the first of ``args`` ((name, value) in position order) that is not
    a Tensor: "relu(): argument 'input' (position 1) must be Tensor, not numpy.ndarray". Built only
    on the failing path (after an AttributeError), so the hot path pays nothing."""
    for pos, (name, value) in enumerate(args, start=1):
        if value is not None and not isinstance(value, Tensor):
            return TypeError(f"{fn}(): argument '{name}' (position {pos}) must be Tensor, not "
                             f"{_type_name(value)}")
    return None


# ---- Linear -------------------------------------------------------------------------------
class _LinearNode(Node):
    """Backward of ``x @ w.T + b`` and of the activation fused after it: ``act`` its kind (0: none,
    1: ReLU, ...; ``act_p`` its parameters), ``y`` the activation's output (kinds whose gradient
    reads y) or ``z`` its input (the others)."""

    __slots__ = ("x2", "y", "z", "act", "act_p", "in_shape")

    def __init__(self, inputs, x2, in_shape):
        self.inputs = inputs
        self.saved = True
        self.seq = next(_seq)
        self.gacc = None
        self.x2 = x2
        self.y = self.z = None
        self.act = 0
        self.act_p = None
        self.in_shape = in_shape

    def name(self):
        if self.act == 0:
            return "ReluBackward0" if self.y is not None else "AddmmBackward0"
        return _ACT_NODE_NAMES[self.act]

    def release(self):
        self.saved = None
        self.x2 = self.y = self.z = None

    # the version-counter check (autograd.py): torch's addmm saves the input and the weight
    _saves_output = property(lambda self: self.y is not None)

    def _saved_inputs(self):  # as torch's addmm: input and weight, each for the other's grad
        x_t, w_t = self.inputs[0], self.inputs[1]
        out = (x_t,) if w_t.requires_grad else ()
        return out + ((w_t, w_t._data.shape[::-1]),) if x_t.requires_grad else out

    def backward_graph(self, g):
        """The same backward as recorded Tensor ops (create_graph=True; autograd.py)."""
        inputs = self.inputs
        x_t, w_t = inputs[0], inputs[1]
        b_t = inputs[2] if len(inputs) == 3 else None
        if g.ndim != 2:
            g = g.reshape(-1, w_t.shape[0])
        x2 = x_t if x_t.ndim == 2 else x_t.reshape(-1, x_t.shape[-1])
        if self.act > 1:  # a fused activation: its derivative at z = x W^T + b, recomputed
            z = x2.matmul(w_t.t())
            if b_t is not None:
                z = z + b_t
            p = self.act_p or (0.0, 0.0)
            g = _act_grad_graph(g, z, self.act, p[0], p[1])
        elif self.y is not None:
            g = mask_grad(g, self.y > 0, inputs)
        dx = g.matmul(w_t).reshape(self.in_shape) if x_t.requires_grad else None
        dw = g.t().matmul(x2) if w_t.requires_grad else None
        db = g.sum(0) if b_t is not None and b_t.requires_grad else None
        return (dx, dw, db) if b_t is not None else (dx, dw)

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
            if self.act <= 1:
                dx, dw, db = _lin_bwd(g, x, w, self.y, None, dw_buf, db_buf, want_x, want_w,
                                      want_b, acc_w, acc_b)
            else:
                p = self.act_p
                dx, dw, db = _lin_bwd(g, x, w, self.y, None, dw_buf, db_buf, want_x, want_w,
                                      want_b, acc_w, acc_b, self.act, p[0], p[1], self.z)
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
            if self.act > 1:  # the activation's gradient first, then the plain Linear backward
                p = self.act_p
                g = _act_backward_any(g, self.z, self.y, self.act, p[0], p[1])
                y = None
            else:
                y = self.y
            dx, dw, db = _linear_backward_generic(g, x, w, y, x_t.requires_grad,
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
    """The one Linear implementation (Linear.forward, F.linear, Sequential's fused Linear+act).

    ``relu`` is False (no activation), True (ReLU) or an activation ``(kind, p0, p1)`` applied in
    the same kernel's epilogue.
    """
    if relu is not False and relu is not True:
        return _linear_act(input, weight, bias, relu, module)
    try:
        x = input._data
        w = weight._data
        b = None if bias is None else bias._data
    except AttributeError:
        err = not_tensor_error("linear", (("input", input), ("weight", weight), ("bias", bias)))
        if err is None:
            raise
        raise err from None
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


def _linear_act(input, weight, bias, act, module):
    """Linear + a (non-ReLU) activation ``act = (kind, p0, p1)``: one GEMM whose epilogue applies
    it (and stores the pre-activation z from the same pass when the gradient will read it)."""
    kind, p0, p1 = act
    x = input._data
    w = weight._data
    b = None if bias is None else bias._data
    in_shape = x.shape
    need_grad = GradMode.enabled and (input.requires_grad or weight.requires_grad
                                      or (bias is not None and bias.requires_grad))
    z = None
    if type(x) is _ndarray and x.dtype is _F32 and w.dtype is _F32 and type(w) is _ndarray:
        if x.ndim != 2:
            if x.ndim == 0:
                raise _shape_error(x, w, module)
            x = x.reshape(-1, x.shape[-1])
        if x.shape[1] != w.shape[1]:
            raise _shape_error(input._data, w, module)
        if need_grad and kind in _NEEDS_Z:
            out, z = _lin_fwd(x, w, b, False, None, kind, p0, p1, True)
        else:
            out = _lin_fwd(x, w, b, False, None, kind, p0, p1)
    elif (x.dtype == _F32 and w.dtype == _F32 and type(x) is not _ndarray and type(w) is type(x)
          and x.ndim >= 1 and x.shape[-1] == w.shape[1]):  # CUDA: one GEMM with the act epilogue
        x = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        out, z = ops.linear_act(x, w, b, kind, p0, p1, want_input=True)
    else:
        x, z = _linear_forward_generic(input, weight, bias, False, module)
        out = _act_forward_any(z, kind, p0, p1)
    if len(in_shape) != 2:
        out = out.reshape(in_shape[:-1] + (w.shape[0],))
    if need_grad:
        node = _LinearNode((input, weight) if bias is None else (input, weight, bias), x, in_shape)
        node.act = kind
        node.act_p = (p0, p1)
        if kind in _NEEDS_Z:
            node.z = z
        else:
            node.y = out if out.ndim == 2 else out.reshape(-1, w.shape[0])
        return _wrap(out, node, True)
    return _wrap(out)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` with PyTorch's weight layout ``[out_features, in_features]``."""
    return _linear(input, weight, bias, False, None)


# ---- ReLU ---------------------------------------------------------------------------------
class _ReluNode(Node):
    __slots__ = ()
    name_ = "ReluBackward0"
    _saves_output = True

    def _saved_inputs(self):
        return ()

    def backward_graph(self, g):
        return (mask_grad(g, self.saved > 0, self.inputs),)

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
    try:
        node = input._node
    except AttributeError:
        raise _relu_type_error(input) from None
    if node is not None and _fuse_relu(input):
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


def _relu_type_error(input):
    return not_tensor_error("relu", (("input", input),)) or AttributeError(
        f"relu: {_type_name(input)} has no '_node'")


def _relu_inplace_generic(a):
    a[a < 0] = 0


def relu_(input):
    return relu(input, inplace=True)


# ---- MSE ----------------------------------------------------------------------------------
class _MseNode(Node):
    __slots__ = ()
    name_ = "MseLossBackward0"

    def backward_graph(self, g):
        a, t = self.inputs
        reduction = self.saved[2]
        d = (a - t) * 2.0
        if reduction == "mean":
            d = d * (1.0 / max(d.numel(), 1))
        d = d * g
        return (_unb_t(d, a) if a.requires_grad else None, _unb_t(-d, t) if t.requires_grad else None)

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
    try:
        x = input._data
    except AttributeError:
        err = not_tensor_error("mse_loss", (("input", input),))
        if err is None:
            raise
        raise err from None
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
    if not isinstance(target, Tensor):  # as PyTorch: no silent conversion of the target
        raise not_tensor_error("mse_loss", (("input", input), ("target", target)))
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


# ---- element-wise activations and softmax -------------------------------------------------
# One Node per activation (forward and backward side by side below); the numeric rules are the
# C++ ones (fastmlp.ops.act_forward/act_backward) for float32, numpy/CuPy formulas of the same
# functions for other dtypes. An activation is (kind, p0, p1) with kind an index of
# fastmlp.ops.ACT_KINDS.
_K = {name: i for i, name in enumerate(ops.ACT_KINDS)}
_K_TANH, _K_SIGMOID, _K_GELU, _K_GELU_TANH = _K["tanh"], _K["sigmoid"], _K["gelu"], _K["gelu_tanh"]
_K_SILU, _K_LEAKY, _K_ELU, _K_SOFTPLUS, _K_HARDTANH = (_K["silu"], _K["leaky_relu"], _K["elu"],
                                                        _K["softplus"], _K["hardtanh"])
_ACT_NODE_NAMES = {_K["relu"]: "ReluBackward0", _K_TANH: "TanhBackward0",
                   _K_SIGMOID: "SigmoidBackward0", _K_GELU: "GeluBackward0",
                   _K_GELU_TANH: "GeluBackward0", _K_SILU: "SiluBackward0",
                   _K_LEAKY: "LeakyReluBackward0", _K_ELU: "EluBackward0",
                   _K_SOFTPLUS: "SoftplusBackward0", _K_HARDTANH: "HardtanhBackward0"}


class ArgumentError(RuntimeError, ValueError):
    """A bad argument value (a RuntimeError as in PyTorch, and a ValueError)."""


def _erfc(xp, x):
    if xp is np:
        try:
            from scipy.special import erfc
        except ImportError:  # pragma: no cover - scipy is optional
            import math

            return np.vectorize(math.erfc, otypes=[x.dtype])(x)
        return erfc(x)
    from cupyx.scipy.special import erfc  # pragma: no cover - GPU only

    return erfc(x)


def _sigmoid_xp(xp, x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _act_forward_xp(xp, z, kind, p0, p1):
    """The activation rules of activation.h in array form (float64 and other non-kernel dtypes)."""
    with np.errstate(all="ignore"):
        if kind == _K_TANH:
            return xp.tanh(z)
        if kind == _K_SIGMOID:
            return _sigmoid_xp(xp, z)
        if kind == _K_GELU:
            return z * (0.5 * _erfc(xp, -z * 0.70710678118654752440))
        if kind == _K_GELU_TANH:
            return z * _sigmoid_xp(xp, (z + 0.044715 * z * z * z) * (2 * 0.79788456080286536))
        if kind == _K_SILU:
            return z * _sigmoid_xp(xp, z)
        if kind == _K_LEAKY:
            return xp.where(z > 0, z, z * p0)
        if kind == _K_ELU:
            return xp.where(z > 0, z, p0 * xp.expm1(xp.minimum(z, 0)))
        if kind == _K_SOFTPLUS:
            bz = z * p0
            return xp.where(bz > p1, z, (xp.maximum(bz, 0) + xp.log1p(xp.exp(-xp.abs(bz)))) / p0)
        if kind == _K_HARDTANH:
            return xp.where(z < p0, p0, xp.where(z > p1, p1, z)).astype(z.dtype, copy=False)
        if kind == _K["relu"]:
            return xp.where(z < 0, 0, z).astype(z.dtype, copy=False)
    return z


def _act_backward_xp(xp, g, z, y, kind, p0, p1):
    with np.errstate(all="ignore"):
        if kind == _K_TANH:
            return g * (1 - y * y)
        if kind == _K_SIGMOID:
            return g * (1 - y) * y
        if kind == _K_GELU:
            cdf = 0.5 * _erfc(xp, -z * 0.70710678118654752440)
            return g * (cdf + z * (xp.exp(-0.5 * z * z) * 0.39894228040143268))
        if kind == _K_GELU_TANH:
            k0, k1 = 0.79788456080286536, 0.044715
            s = _sigmoid_xp(xp, (z + k1 * z * z * z) * (2 * k0))
            return g * (s + 2 * z * s * (1 - s) * (k0 * (1 + 3 * k1 * z * z)))
        if kind == _K_SILU:
            s = _sigmoid_xp(xp, z)
            return g * (s * (1 + z * (1 - s)))
        if kind == _K_LEAKY:
            return xp.where(z > 0, g, g * p0)
        if kind == _K_ELU:
            return xp.where(z > 0, g, g * p0 * xp.exp(z))
        if kind == _K_SOFTPLUS:
            bz = z * p0
            return xp.where(bz > p1, g, g * _sigmoid_xp(xp, bz))
        if kind == _K_HARDTANH:
            return xp.where((z > p0) & (z < p1), g, 0).astype(g.dtype, copy=False)
        if kind == _K["relu"]:
            return g * (y > 0)
    return g


def _act_forward_any(z, kind, p0, p1):
    """f(z) for any array: the kernels for float32 (CPU or CUDA), array formulas otherwise."""
    if z.dtype == _F32:
        if type(z) is _ndarray and not z.flags.c_contiguous:
            z = np.ascontiguousarray(z)
        return _act_fwd(z, kind, p0, p1)
    return _act_forward_xp(array_module(device_of(z)), z, kind, p0, p1)


def _act_backward_any(g, z, y, kind, p0, p1):
    if g.dtype == _F32 and (z if kind in _NEEDS_Z else y).dtype == _F32:
        if type(g) is _ndarray:
            g = np.ascontiguousarray(g)
        return _act_bwd(g, z, y, kind, p0, p1)
    out = _act_backward_xp(array_module(device_of(g)), g, z, y, kind, p0, p1)
    return out.astype(g.dtype, copy=False) if out.dtype != g.dtype else out


def _act_grad_graph(g, z, kind, p0, p1):
    """``g * f'(z)`` as recorded Tensor ops (create_graph=True): ``z`` is the pre-activation as a
    Tensor connected to the graph, so the result can be differentiated again."""
    from ..tensor import _const, _sigmoid_graph, _tanh_graph, exp

    xp = array_module(device_of(z._data))
    zd = z._data
    if kind == _K["relu"]:
        return mask_grad(g, zd > 0, (z,))
    if kind == _K["identity"]:
        return g
    if kind == _K_TANH:
        y = _tanh_graph(z)
        return g * (1 - y * y)
    if kind == _K_SIGMOID:
        s = _sigmoid_graph(z)
        return g * (s * (1 - s))
    if kind == _K_SILU:
        s = _sigmoid_graph(z)
        return g * (s * (1 + z * (1 - s)))
    if kind == _K_GELU_TANH:
        k, c = 0.79788456080286536, 0.044715
        t = _tanh_graph((z + z * z * z * c) * k)
        return g * ((1 + t) * 0.5 + z * (1 - t * t) * ((1 + z * z * (3 * c)) * (0.5 * k)))
    if kind == _K_LEAKY:
        return mask_grad(g, xp.where(zd > 0, 1.0, p0).astype(zd.dtype), (z,))
    if kind == _K_HARDTANH:
        return mask_grad(g, ((zd > p0) & (zd < p1)), (z,))
    if kind == _K_ELU:
        pos = _const((zd > 0).astype(zd.dtype))
        return g * (pos + (1 - pos) * (exp(z) * p0))
    if kind == _K_SOFTPLUS:
        lin = _const((zd * p0 > p1).astype(zd.dtype))
        return g * (lin + (1 - lin) * _sigmoid_graph(z * p0))
    raise NotImplementedError(f"create_graph=True (a second derivative) through "
                              f"{_ACT_NODE_NAMES.get(kind, 'this activation')} is not supported")


class _ActNode(Node):
    """Backward of an unfused element-wise activation; saved = (z or y, kind, p0, p1)."""

    __slots__ = ()

    def name(self):
        return _ACT_NODE_NAMES[self.saved[1]] if self.saved else "ActBackward0"

    def backward_graph(self, g):
        _, kind, p0, p1 = self.saved
        return (_act_grad_graph(g, self.inputs[0], kind, p0, p1),)

    # the version-counter check (autograd.py): the kinds whose gradient reads the output save
    # it (as torch's tanh/sigmoid); the others save their input
    _saves_output = property(lambda self: self.saved is not None and self.saved[1] not in _NEEDS_Z)

    def _saved_inputs(self):
        return (self.inputs[0],) if self.saved is not None and self.saved[1] in _NEEDS_Z else ()

    def backward(self, g):
        v, kind, p0, p1 = self.saved
        if kind in _NEEDS_Z:
            return (_act_backward_any(g, v, None, kind, p0, p1),)
        return (_act_backward_any(g, None, v, kind, p0, p1),)


def _act(fname, input, kind, p0, p1, inplace):
    """Every element-wise activation (functional and module): refuse a non-Tensor naming
    ``fname``, else fuse into a fresh Linear output or fall back to ``_act_unfused``.

    Fusing applies the activation to the Linear output and records it on the Linear's node (what
    ``_fuse_relu`` does for ReLU): in place for the kinds whose gradient reads the output; for the
    others the output is a new array and the Linear output is kept as z. Called from exactly one
    frame holding ``input`` (the refcount test is calibrated for relu() -> _fuse_relu(), the same
    depth); fuses only if nothing else references it."""
    try:
        node = input._node
    except AttributeError:
        raise not_tensor_error(fname, (("input", input),)) from None
    if (node is None or type(node) is not _LinearNode or node.act or node.y is not None
            or not _FUSE or node.saved is None or _getrefcount(input) > _TEMP_REFS
            or _getrefcount(input._data) > _ARRAY_REFS):
        return _act_unfused(input, kind, p0, p1, inplace)
    data = input._data
    if kind in _NEEDS_Z:
        node.z = data if data.ndim == 2 else data.reshape(-1, data.shape[-1])
        input._data = _act_forward_any(data, kind, p0, p1)
    else:
        if data.dtype == _F32:
            _act_fwd(data, kind, p0, p1, out=data)
        else:
            data[...] = _act_forward_xp(array_module(device_of(data)), data, kind, p0, p1)
        node.y = data if data.ndim == 2 else data.reshape(-1, data.shape[-1])
    node.act = kind
    node.act_p = (p0, p1)
    return input


def _act_unfused(input, kind, p0, p1, inplace):
    if not isinstance(input, Tensor):
        raise TypeError(f"expected a Tensor as input, got {type(input).__name__}")
    x = input._data
    if x.dtype.kind != "f":
        raise DtypeError(f"{ops.ACT_KINDS[kind]}: input has dtype {x.dtype}; this activation needs "
                         f"floating point input (use x.float())")
    need_grad = GradMode.enabled and input.requires_grad
    if inplace and not need_grad:
        if x.dtype == _F32 and x.flags.c_contiguous:
            _act_fwd(x, kind, p0, p1, out=x)
        else:
            x[...] = _act_forward_xp(array_module(device_of(x)), x, kind, p0, p1)
        return input
    y = _act_forward_any(x, kind, p0, p1)
    if need_grad:
        return _wrap(y, _ActNode((input,), (x if kind in _NEEDS_Z else y, kind, p0, p1)), True)
    return _wrap(y)


def tanh(input):
    """``tanh(input)`` (``torch.tanh``)."""
    return _act("tanh", input, _K_TANH, 0.0, 0.0, False)


def sigmoid(input):
    """``1 / (1 + exp(-input))`` (``torch.sigmoid``), stable for large ``|input|``."""
    return _act("sigmoid", input, _K_SIGMOID, 0.0, 0.0, False)


def _gelu_kind(approximate):
    if approximate == "none":
        return _K_GELU
    if approximate == "tanh":
        return _K_GELU_TANH
    raise ArgumentError(f"gelu: argument 'approximate' must be 'none' or 'tanh', got {approximate!r} "
                        f"(approximate argument must be either none or tanh.)")


def gelu(input, approximate="none"):
    """``input * Phi(input)`` (``approximate="none"``) or its tanh approximation."""
    kind = _gelu_kind(approximate)
    return _act("gelu", input, kind, 0.0, 0.0, False)


def silu(input, inplace=False):
    """``input * sigmoid(input)``."""
    return _act("silu", input, _K_SILU, 0.0, 0.0, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``input`` where positive, ``negative_slope * input`` elsewhere."""
    p0 = float(negative_slope)
    return _act("leaky_relu", input, _K_LEAKY, p0, 0.0, inplace)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, True)


def elu(input, alpha=1.0, inplace=False):
    """``input`` where positive, ``alpha * (exp(input) - 1)`` elsewhere."""
    p0 = float(alpha)
    return _act("elu", input, _K_ELU, p0, 0.0, inplace)


def elu_(input, alpha=1.0):
    return elu(input, alpha, True)


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta * input)) / beta``, linear where ``beta * input > threshold``."""
    p0, p1 = float(beta), float(threshold)
    return _act("softplus", input, _K_SOFTPLUS, p0, p1, False)


def _hardtanh_params(min_val, max_val):
    if min_val > max_val:
        raise ValueError(f"min_val cannot be greater than max_val (hardtanh got min_val={min_val}, "
                         f"max_val={max_val})")
    return float(min_val), float(max_val)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``input`` clamped to ``[min_val, max_val]``."""
    p0, p1 = _hardtanh_params(min_val, max_val)
    return _act("hardtanh", input, _K_HARDTANH, p0, p1, inplace)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, True)


def relu6(input, inplace=False):
    """``min(max(input, 0), 6)`` (hardtanh on [0, 6])."""
    return _act("relu6", input, _K_HARDTANH, 0.0, 6.0, inplace)


# ---- softmax / log_softmax ------------------------------------------------------------------
def _softmax_dim(name, ndim, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                      f"to include dim=X as an argument.", UserWarning, stacklevel=3)
        return 0 if ndim in (0, 1, 3) else 1
    try:
        d = dim.__index__()
    except AttributeError:
        raise TypeError(f"{name}(): argument 'dim' must be int, not {type(dim).__name__}") from None
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but "
                         f"got {d})")
    return d % n


def _softmax_xp(xp, x, log):
    with np.errstate(all="ignore"):
        m = x.max(axis=-1, keepdims=True) if x.shape[-1] else x
        e = x - m
        if log:
            return e - xp.log(xp.exp(e).sum(axis=-1, keepdims=True))
        p = xp.exp(e)
        return p / p.sum(axis=-1, keepdims=True)


def _softmax_last(x, log):
    """softmax over the last axis of any array (kernels for float32, array formulas otherwise)."""
    if x.dtype == _F32:
        if type(x) is _ndarray and not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return ops.softmax(x, log=log)
    return _softmax_xp(array_module(device_of(x)), x, log)


def _softmax_backward_last(g, y, log):
    if g.dtype == _F32 and y.dtype == _F32:
        if type(g) is _ndarray:
            g = np.ascontiguousarray(g)
        return ops.softmax_backward(g, y, log=log)
    xp = array_module(device_of(g))
    if log:
        return g - xp.exp(y) * g.sum(axis=-1, keepdims=True)
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


class _SoftmaxNode(Node):
    """saved = (y, dim, log): y the output with `dim` moved last."""

    __slots__ = ()

    def name(self):
        return "LogSoftmaxBackward0" if self.saved and self.saved[2] else "SoftmaxBackward0"

    def backward(self, g):
        y, dim, log = self.saved
        if g.ndim == 0:
            return (_softmax_backward_last(g.reshape(1), y, log).reshape(()),)
        moved = dim != g.ndim - 1
        if moved:
            g = array_module(device_of(g)).moveaxis(g, dim, -1)
        d = _softmax_backward_last(g, y, log)
        if moved:
            d = array_module(device_of(d)).moveaxis(d, -1, dim)
        return (d,)


def _softmax(input, dim, dtype, log):
    name = "log_softmax" if log else "softmax"
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
    x = input._data
    if dtype is not None:
        from ..dtypes import to_numpy_dtype

        x = x.astype(to_numpy_dtype(dtype), copy=False)
    if x.dtype.kind != "f":
        raise DtypeError(f"{name}: input has dtype {x.dtype}; it needs floating point input (use "
                         f"x.float() or dtype=torch.float32)")
    d = _softmax_dim(name, x.ndim, dim)
    xp = array_module(device_of(x))
    moved = x.ndim > 1 and d != x.ndim - 1
    xl = xp.moveaxis(x, d, -1) if moved else (x.reshape(1) if x.ndim == 0 else x)
    yl = _softmax_last(xl, log)
    y = xp.moveaxis(yl, -1, d) if moved else (yl.reshape(()) if x.ndim == 0 else yl)
    if GradMode.enabled and input.requires_grad:
        return _wrap(y, _SoftmaxNode((input,), (yl, d if x.ndim else 0, log)), True)
    return _wrap(y)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim`` (max-subtracted)."""
    return _softmax(input, dim, dtype, False)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``x - log(sum(exp(x)))`` along ``dim`` (max-subtracted)."""
    return _softmax(input, dim, dtype, True)


from ._losses import *  # noqa: E402,F401,F403  (the losses: cross_entropy, l1_loss, ...)
from ._layer_ops import *  # noqa: E402,F401,F403  (dropout, layer_norm, batch_norm, embedding)
