"""The loss functions of ``torch.nn.functional``: cross_entropy, nll_loss, binary_cross_entropy,
binary_cross_entropy_with_logits, l1_loss, smooth_l1_loss, huber_loss (mse_loss lives in
:mod:`fastmlp.nn.functional`).

Each loss records one Node, its backward beside its forward. float32 (CPU and CUDA) runs the loss
kernels through :mod:`fastmlp.ops` (numeric rules: csrc/include/fastmlp/loss.h); on the training
path (CPU float32, a gradient to follow, reduction 'mean' or 'sum') the loss and its gradient come
out of one kernel call. float64 uses numpy with the same rules. Semantics, defaults and error
messages are PyTorch's.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import ops
from ..autograd import GradMode, Node
from ..devices import array_module, device_of
from ..tensor import Size, Tensor, _as_tensor_like, _unbroadcast, _wrap

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "l1_loss", "smooth_l1_loss", "huber_loss"]

_ndarray = np.ndarray
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_REDUCTIONS = ("mean", "sum", "none")
_KIND = ops.LOSS_KINDS
_ce_fb = ops.cross_entropy_forward_backward_cpu


def _shape_error(msg):
    from .functional import ShapeError

    return ShapeError(msg)


def _dtype_error(msg):
    from .functional import DtypeError

    return DtypeError(msg)


def _reduction(size_average, reduce, reduction):
    """The reduction, from PyTorch's legacy ``size_average``/``reduce`` when either is given."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _xp(a):
    return array_module(device_of(a))


def _tensor(x, like, name):
    if x is None or isinstance(x, Tensor):
        return x
    try:
        return _as_tensor_like(x, like)
    except TypeError:
        raise TypeError(f"argument '{name}' must be a Tensor, got {type(x).__name__}") from None


def _kernel_ok(*arrays):
    """float32 everywhere: the kernels run (CPU ndarray or CUDA array)."""
    return all(a is None or a.dtype == _F32 for a in arrays)


def _contig(a):
    if a is None:
        return None
    if type(a) is _ndarray:
        return np.ascontiguousarray(a)
    return _xp(a).ascontiguousarray(a)


def _scalar(v, like):
    """A reduced loss value (Python float or 0-d device array) as a 0-d array of like's dtype."""
    return _xp(like).asarray(v, dtype=like.dtype)


def _reduce_rows(rows_sum, denom, reduction, like):
    if reduction == "sum":
        return _scalar(rows_sum, like)
    return _scalar(rows_sum / denom if denom != 0 else rows_sum * float("nan"), like)


def _class_weight(weight, x, C, what):
    if weight is None:
        return None
    w = weight._data if isinstance(weight, Tensor) else _as_tensor_like(weight, _wrap(x))._data
    if w.ndim != 1 or w.shape[0] != C:
        raise _shape_error(f"{what}: weight tensor should be defined either for all {C} classes or "
                           f"no classes but got weight tensor of shape: {Size(w.shape)}")
    return _contig(w.astype(x.dtype, copy=False))


def _seed_value(g):
    v = g.item() if hasattr(g, "item") else float(g)
    return float(v)


# ---- cross-entropy and NLL ------------------------------------------------------------------
def _split_shape(x):
    """(N, C, D) of an (N, C, d1, ...) input; a 1-D input (C,) is one row."""
    if x.ndim == 1:
        return 1, x.shape[0], 1
    D = 1
    for s in x.shape[2:]:
        D *= s
    return x.shape[0], x.shape[1], D


def _index_target(t, x, what, ignore_index, check_range=True):
    """Class-index targets as an int64 array shaped (N, D), checked as PyTorch does (the range
    check is left to the kernels' bindings, which word it the same, when check_range is False)."""
    if t.dtype == np.uint8:
        t = t.astype(_I64)
    if t.dtype != _I64:
        raise _dtype_error(f"{what}: expected target dtype to be Long or Byte, but got "
                           f"{_torch_name(t.dtype)}: class-index targets must be int64 "
                           f"(target.long()); class probabilities must be a float tensor shaped "
                           f"like the input {Size(x.shape)}")
    want = x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ()
    if tuple(t.shape) != tuple(want):
        raise _shape_error(f"{what}: class-index target must have shape {Size(want)} for input of "
                           f"shape {Size(x.shape)}, got target of shape {Size(t.shape)}")
    N, C, D = _split_shape(x)
    t2 = t.reshape(N, D)
    if not check_range:
        return t2
    bad = ((t2 < 0) | (t2 >= C)) & (t2 != ignore_index)
    if bool(bad.any()):
        v = int(t2[bad].ravel()[0])
        raise IndexError(f"Target {v} is out of bounds. ({what}: class indices must be in "
                         f"[0, {C}) for input with {C} classes, or equal ignore_index="
                         f"{ignore_index})")
    return t2


def _torch_name(dt):
    return {"int32": "Int", "int16": "Short", "int8": "Char", "float32": "Float",
            "float64": "Double", "float16": "Half", "bool": "Bool"}.get(str(dt), str(dt))


def _ce_index_generic(x3, t2, w, ignore_index, ls, need_grad):
    """(rows (N, D), weight_sum, coef) in x3's dtype with array ops (numpy float64, or any)."""
    xp = _xp(x3)
    N, C, D = x3.shape
    m = x3.max(axis=1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    lse = m + xp.log(xp.exp(x3 - m).sum(axis=1, keepdims=True))
    logp = x3 - lse
    valid = t2 != ignore_index
    tc = xp.where(valid, t2, 0)
    wv = xp.ones(C, dtype=x3.dtype) if w is None else w
    wy = wv[tc] * valid
    picked = xp.take_along_axis(logp, tc[:, None, :], axis=1)[:, 0, :]
    rows = -picked * wy
    if ls:
        smooth = -(logp * wv[None, :, None]).sum(axis=1) * valid
        rows = (1 - ls) * rows + (ls / C) * smooth
    rows = xp.where(valid, rows, 0).astype(x3.dtype, copy=False)
    grad_parts = None
    if need_grad:
        a = (ls / C) * wv[None, :, None] * valid[:, None, :] if ls else xp.zeros_like(x3)
        a = a + xp.zeros_like(x3)
        onehot = xp.arange(C)[None, :, None] == tc[:, None, :]
        a = a + onehot * ((1 - ls) * wy)[:, None, :]
        grad_parts = (xp.exp(logp), a)
    return rows, wy.sum(), grad_parts


def _ce_prob_generic(x3, p3, w, ls, need_grad):
    xp = _xp(x3)
    N, C, D = x3.shape
    m = x3.max(axis=1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    lse = m + xp.log(xp.exp(x3 - m).sum(axis=1, keepdims=True))
    logp = x3 - lse
    wv = xp.ones(C, dtype=x3.dtype) if w is None else w
    a = wv[None, :, None] * ((1 - ls) * p3 + ls / C)
    rows = -(a * logp).sum(axis=1)
    return rows.astype(x3.dtype, copy=False), (xp.exp(logp), a) if need_grad else None


class _CrossEntropyNode(Node):
    """Backward of softmax cross-entropy (class indices or probabilities) w.r.t. the logits."""

    __slots__ = ()
    name_ = "NllLossBackward0"

    def backward(self, g):
        (x3, t, w, ii, ls, reduction, denom, d, parts, in_shape, prob) = self.saved
        gv = None
        if reduction != "none":
            gv = _seed_value(g)
        if d is not None:  # from the forward's kernel call (seed 1.0 unless chained further)
            dx = d if gv == 1.0 else d * gv
        elif parts is not None:  # array-op path: (softmax, coefficients)
            p, a = parts
            A = a.sum(axis=1, keepdims=True)
            if reduction == "none":
                gr = g.reshape(x3.shape[0], 1, x3.shape[2])
            else:
                gr = gv / denom if reduction == "mean" else gv
            dx = ((A * p - a) * gr).astype(x3.dtype, copy=False)
        else:  # float32 kernels
            if reduction == "none":
                grows, scale = _contig(g.astype(_F32, copy=False).reshape(-1)), 1.0
            else:
                grows, scale = None, (gv / denom if reduction == "mean" else gv)
            if prob:
                dx = ops.cross_entropy_prob_backward(x3, t, w, grows, scale=scale,
                                                     label_smoothing=ls)
            else:
                dx = ops.cross_entropy_backward(x3, t, w, grows, scale=scale, ignore_index=ii,
                                                label_smoothing=ls)
        return (dx.reshape(in_shape),)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits ``input`` (N, C) / (N, C, d1, ...) / (C,) against class
    indices (int64, shaped like input without dim 1) or class probabilities (shaped like input),
    as ``torch.nn.functional.cross_entropy``."""
    reduction = _reduction(size_average, reduce, reduction)
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {ls}")
    if not isinstance(input, Tensor):
        raise TypeError(f"cross_entropy(): argument 'input' must be Tensor, not "
                        f"{type(input).__name__}")
    target = _tensor(target, input, "target")
    x = input._data
    t = target._data
    if x.ndim == 0:
        raise _shape_error("cross_entropy: input must have at least one dimension (C,) or (N, C), "
                           "got a 0-d tensor")
    if x.dtype.kind != "f":
        raise _dtype_error(f"cross_entropy: input must be floating point logits, got dtype "
                           f"{x.dtype}")
    if type(x) is not type(t) and device_of(x) != device_of(t):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                           f"devices, {device_of(x)} and {device_of(t)}!")
    ignore_index = int(ignore_index)
    N, C, D = _split_shape(x)
    prob = t.dtype.kind == "f"
    w = _class_weight(weight, x, C, "cross_entropy")
    rows_shape = x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ()
    x3 = x.reshape(N, C, D)
    need_grad = GradMode.enabled and input.requires_grad
    d = parts = None
    if prob:
        if t.shape != x.shape:
            raise _shape_error(f"cross_entropy: a target of class probabilities must have the "
                               f"input's shape {Size(x.shape)}, got target of shape "
                               f"{Size(t.shape)} (class indices need dtype int64)")
        p3 = t.astype(x.dtype, copy=False).reshape(N, C, D)
        denom = N * D
        if _kernel_ok(x):
            x3, p3 = _contig(x3), _contig(p3)
            s, rows = ops.cross_entropy_prob_forward(x3, p3, w, label_smoothing=ls,
                                                     want_rows=reduction == "none")
        else:
            rows, parts = _ce_prob_generic(x3, p3, w, ls, need_grad)
            s = rows.sum()
        tt = p3
    else:
        kernels = _kernel_ok(x)
        t2 = _index_target(t, x, "cross_entropy", ignore_index, not kernels)
        if kernels:
            x3, t2 = _contig(x3), _contig(t2)
            if need_grad and reduction != "none" and type(x3) is _ndarray:
                s, denom, d, rows = _ce_fb(x3, t2, w, ignore_index, ls, reduction, False)
            else:
                s, denom, rows = ops.cross_entropy_forward(x3, t2, w, ignore_index=ignore_index,
                                                           label_smoothing=ls,
                                                           want_rows=reduction == "none")
        else:
            rows, denom, parts = _ce_index_generic(x3, t2, w, ignore_index, ls, need_grad)
            s = rows.sum()
        tt = t2
    if reduction == "none":
        out = rows.reshape(rows_shape).astype(x.dtype, copy=False)
    else:
        out = _reduce_rows(s, denom, reduction, x)
    if need_grad:
        node = _CrossEntropyNode((input,), (x3, tt, w, ignore_index, ls, reduction, denom, d,
                                            parts, x.shape, prob))
        return _wrap(out, node, True)
    return _wrap(out)


class _NllNode(Node):
    __slots__ = ()
    name_ = "NllLossBackward0"

    def backward(self, g):
        x3, tc, wy, reduction, denom, in_shape = self.saved
        xp = _xp(x3)
        if reduction == "none":
            gr = g.reshape(wy.shape)
        else:
            gr = _seed_value(g) / (denom if reduction == "mean" else 1.0)
        dx = xp.zeros_like(x3)
        xp.put_along_axis(dx, tc[:, None, :], (-(wy * gr))[:, None, :].astype(x3.dtype), axis=1) \
            if xp is np else _scatter_cupy(dx, tc, -(wy * gr))
        return (dx.reshape(in_shape),)


def _scatter_cupy(dx, tc, vals):
    N, C, D = dx.shape
    xp = _xp(dx)
    n = xp.arange(N)[:, None]
    d = xp.arange(D)[None, :]
    dx[n, tc, d] = vals.astype(dx.dtype)
    return dx


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` (N, C, ...) at class indices
    ``target`` (int64), as ``torch.nn.functional.nll_loss``."""
    reduction = _reduction(size_average, reduce, reduction)
    target = _tensor(target, input, "target")
    x, t = input._data, target._data
    if x.ndim == 0:
        raise _shape_error("nll_loss: input must have at least one dimension (C,) or (N, C)")
    ignore_index = int(ignore_index)
    N, C, D = _split_shape(x)
    t2 = _index_target(t, x, "nll_loss", ignore_index)
    w = _class_weight(weight, x, C, "nll_loss")
    xp = _xp(x)
    x3 = x.reshape(N, C, D)
    valid = t2 != ignore_index
    tc = xp.where(valid, t2, 0)
    wv = xp.ones(C, dtype=x.dtype) if w is None else w
    wy = (wv[tc] * valid).astype(x.dtype, copy=False)
    rows = -xp.take_along_axis(x3, tc[:, None, :], axis=1)[:, 0, :] * wy
    rows = xp.where(valid, rows, 0).astype(x.dtype, copy=False)
    denom = float(wy.sum(dtype=np.float64))
    if reduction == "none":
        out = rows.reshape(x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ())
    else:
        out = _reduce_rows(float(rows.sum(dtype=np.float64)), denom, reduction, x)
    if GradMode.enabled and input.requires_grad:
        return _wrap(out, _NllNode((input,), (x3, tc, wy, reduction, denom, x.shape)), True)
    return _wrap(out)


# ---- binary cross-entropy -------------------------------------------------------------------
def _same_size(x, t, what):
    if x.shape != t.shape:
        if what == "binary_cross_entropy":
            raise ValueError(f"Using a target size ({Size(t.shape)}) that is different to the "
                             f"input size ({Size(x.shape)}) is deprecated. Please ensure they "
                             f"have the same size.")
        raise ValueError(f"Target size ({Size(t.shape)}) must be the same as input size "
                         f"({Size(x.shape)})")


def _broadcast_weight(w, shape, name, what):
    if w is None:
        return None
    xp = _xp(w)
    try:
        return _contig(xp.broadcast_to(w, shape))
    except ValueError:
        raise _shape_error(f"{what}: '{name}' of shape {Size(w.shape)} cannot be broadcast to the "
                           f"input's shape {Size(shape)}") from None


def _float_target(target, input, what):
    target = _tensor(target, input, "target")
    t = target._data
    x = input._data
    if x.dtype.kind != "f":
        raise _dtype_error(f"{what}: input must be floating point, got dtype {x.dtype}")
    if type(x) is not type(t) and device_of(x) != device_of(t):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                           f"devices, {device_of(x)} and {device_of(t)}!")
    return target, t.astype(x.dtype, copy=False)


class _BceNode(Node):
    __slots__ = ()
    name_ = "BinaryCrossEntropyBackward0"

    def backward(self, g):
        x, t, w, reduction, n = self.saved
        xp = _xp(x)
        if reduction == "none":
            gr = g
        else:
            gr = _seed_value(g) / (n if reduction == "mean" else 1)
        ww = gr if w is None else w * gr
        a, b = self.inputs
        dx = dt = None
        if a.requires_grad:
            dx = (ww * (x - t) / xp.maximum((1 - x) * x, 1e-12)).astype(x.dtype, copy=False)
        if b.requires_grad:
            lx = xp.maximum(xp.log(x), -100)
            l1x = xp.maximum(xp.log1p(-x), -100)
            dt = (-ww * (lx - l1x)).astype(x.dtype, copy=False)
        return dx, dt


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """``-w (t log x + (1 - t) log(1 - x))`` with the logs clamped at -100 (as PyTorch)."""
    reduction = _reduction(size_average, reduce, reduction)
    target, t = _float_target(target, input, "binary_cross_entropy")
    x = input._data
    _same_size(x, t, "binary_cross_entropy")
    xp = _xp(x)
    if x.size and bool(((x < 0) | (x > 1)).any()):
        raise RuntimeError("all elements of input should be between 0 and 1")
    w = None if weight is None else _broadcast_weight(
        _tensor(weight, input, "weight")._data.astype(x.dtype, copy=False), x.shape, "weight",
        "binary_cross_entropy")
    with np.errstate(divide="ignore"):
        lx = xp.maximum(xp.log(x), -100)
        l1x = xp.maximum(xp.log1p(-x), -100)
    el = -(t * lx + (1 - t) * l1x)
    if w is not None:
        el = el * w
    el = el.astype(x.dtype, copy=False)
    n = x.size
    if reduction == "none":
        out = el
    else:
        s = el.sum(dtype=np.float64)
        out = _reduce_rows(s, n, reduction, x)
    if GradMode.enabled and (input.requires_grad or target.requires_grad):
        return _wrap(out, _BceNode((input, target), (x, t, w, reduction, n)), True)
    return _wrap(out)


# ---- element-wise losses on the kernels: l1, smooth_l1, huber, bce_with_logits ---------------
def _elem_generic(kind, x, t, p0, pw):
    """(value, dvalue/dx) per element with array ops, the rules of loss.h (float64 path)."""
    xp = _xp(x)
    d = x - t
    if kind == _KIND["mse"]:
        return d * d, 2 * d
    if kind == _KIND["l1"] or (kind == _KIND["smooth_l1"] and p0 == 0):
        return xp.abs(d), xp.sign(d)
    if kind == _KIND["smooth_l1"]:
        ad = xp.abs(d)
        small = ad < p0
        return (xp.where(small, 0.5 * d * d / p0, ad - 0.5 * p0),
                xp.where(small, d / p0, xp.sign(d)))
    if kind == _KIND["huber"]:
        ad = xp.abs(d)
        small = ad <= p0
        return (xp.where(small, 0.5 * d * d, p0 * (ad - 0.5 * p0)), xp.clip(d, -p0, p0))
    # bce_with_logits
    lw = 1 if pw is None else 1 + (pw - 1) * t
    sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)  # -log(sigmoid(x))
    sig = 1 / (1 + xp.exp(-x))
    return (1 - t) * x + lw * sp, lw * sig - (t if pw is None else pw * t)


class _ElementwiseLossNode(Node):
    __slots__ = ()

    def name(self):
        return self.saved[-1] if self.saved else "LossBackward0"

    def backward(self, g):
        (kind, x, t, w, pw, p0, reduction, d, generic, in_shape, t_shape, _name) = self.saved
        n = x.size
        if reduction != "none":
            gv = _seed_value(g)
            scale = gv / n if reduction == "mean" and n else gv
        if d is not None:  # from the forward's kernel call
            dx = d if gv == 1.0 else d * gv
        elif generic is not None:
            gr = g if reduction == "none" else scale
            dx = generic * (gr if w is None else w * gr)
            dx = dx.astype(x.dtype, copy=False)
        elif reduction == "none":
            dx = ops.loss_elementwise_backward(kind, x, t, w, pw, _contig(g.astype(_F32)),
                                               p0=p0, scale=1.0)
        else:
            dx = ops.loss_elementwise_backward(kind, x, t, w, pw, None, p0=p0, scale=scale)
        a, b = self.inputs
        da = _unbroadcast(dx, in_shape) if a.requires_grad else None
        db = None
        if b.requires_grad:
            if kind == _KIND["bce_with_logits"]:
                xp = _xp(x)
                gr = g if reduction == "none" else scale
                logsig = -(xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0))
                dt = -x - (0 if pw is None else (pw - 1) * logsig)
                dt = dt * (gr if w is None else w * gr)
                db = _unbroadcast(dt.astype(x.dtype, copy=False), t_shape)
            else:
                db = _unbroadcast(-dx, t_shape)
        return da, db


def _elementwise(what, node_name, kind, input, target, reduction, p0=1.0, weight=None,
                 pos_weight=None, strict_shape=False):
    target, t = _float_target(target, input, what)
    x = input._data
    in_shape, t_shape = x.shape, t.shape
    if strict_shape:
        _same_size(x, t, what)
    elif x.shape != t.shape:
        warnings.warn(f"Using a target size ({Size(t.shape)}) that is different to the input size "
                      f"({Size(x.shape)}). This will likely lead to incorrect results due to "
                      f"broadcasting. Please ensure they have the same size.", UserWarning,
                      stacklevel=3)
        try:
            shape = np.broadcast_shapes(x.shape, t.shape)
        except ValueError:
            raise _shape_error(f"{what}: the size of input {Size(x.shape)} and target "
                               f"{Size(t.shape)} cannot be broadcast together") from None
        xp = _xp(x)
        x, t = xp.broadcast_to(x, shape), xp.broadcast_to(t, shape)
    w = None if weight is None else _broadcast_weight(
        _tensor(weight, input, "weight")._data.astype(x.dtype, copy=False), x.shape, "weight", what)
    pw = None
    if pos_weight is not None:
        pwa = _tensor(pos_weight, input, "pos_weight")._data.astype(x.dtype, copy=False)
        last = x.shape[-1] if x.ndim else 1
        if not (pwa.ndim == 1 and pwa.shape[0] == last):
            pwa = _broadcast_weight(pwa, x.shape, "pos_weight", what)
        pw = _contig(pwa)
    need_grad = GradMode.enabled and (input.requires_grad or target.requires_grad)
    n = x.size
    d = generic = None
    if _kernel_ok(x):
        x, t = _contig(x), _contig(t)
        if need_grad and reduction != "none" and type(x) is _ndarray and n:
            s, d = ops.loss_elementwise_forward_backward(
                kind, x, t, w, pw, p0=p0, scale=1.0 / n if reduction == "mean" else 1.0)
            el = None
        else:
            s, el = ops.loss_elementwise_forward(kind, x, t, w, pw, p0=p0,
                                                 want_out=reduction == "none")
    else:
        el, generic = _elem_generic(kind, x, t, p0, pw)
        if w is not None:
            el = el * w
        el = el.astype(x.dtype, copy=False)
        s = el.sum(dtype=np.float64) if reduction != "none" else None
        if not need_grad:
            generic = None
    if reduction == "none":
        out = el
    else:
        out = _reduce_rows(s, n, reduction, x)
    if need_grad:
        node = _ElementwiseLossNode((input, target), (kind, x, t, w, pw, p0, reduction, d, generic,
                                                      in_shape, t_shape, node_name))
        return _wrap(out, node, True)
    return _wrap(out)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean (or sum, or element-wise) absolute error, as ``torch.nn.functional.l1_loss``."""
    reduction = _reduction(size_average, reduce, reduction)
    return _elementwise("l1_loss", "L1LossBackward0", _KIND["l1"], input, target, reduction,
                        weight=weight)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (beta=0 is l1_loss)."""
    reduction = _reduction(size_average, reduce, reduction)
    beta = float(beta)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    return _elementwise("smooth_l1_loss", "SmoothL1LossBackward0", _KIND["smooth_l1"], input,
                        target, reduction, p0=beta)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``0.5 d^2`` where ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``."""
    reduction = _reduction(None, None, reduction)
    delta = float(delta)
    if not delta > 0:
        raise ValueError(f"huber_loss does not support non-positive values for delta, got {delta}")
    return _elementwise("huber_loss", "HuberLossBackward0", _KIND["huber"], input, target,
                        reduction, p0=delta, weight=weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in the stable form
    ``(1 - t) x + (1 + (pw - 1) t) (log1p(exp(-|x|)) + max(-x, 0))``, times ``weight``."""
    reduction = _reduction(size_average, reduce, reduction)
    return _elementwise("binary_cross_entropy_with_logits",
                        "BinaryCrossEntropyWithLogitsBackward0", _KIND["bce_with_logits"], input,
                        target, reduction, weight=weight, pos_weight=pos_weight, strict_shape=True)
