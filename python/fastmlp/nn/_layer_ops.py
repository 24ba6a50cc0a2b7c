"""The functional forms of the non-linear-algebra layers: ``dropout``, ``layer_norm``,
``batch_norm``, ``embedding`` (imported into :mod:`fastmlp.nn.functional`).

Each records one Node with its backward beside its forward. They run on array operations
(numpy, or CuPy for CUDA tensors): none of them is a GEMM-sized hot spot of an MLP step.
Dropout's masks come from fastmlp's generator (``fastmlp.manual_seed``); the stream differs from
PyTorch's, the statistics are the same (kept elements scaled by ``1 / (1 - p)``).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import generator as _gen
from ..autograd import GradMode, Node
from ..devices import array_module, asarray, device_of
from ..tensor import Size, Tensor, _wrap

__all__ = ["dropout", "layer_norm", "batch_norm", "embedding"]

_ndarray = np.ndarray


def _xp(a):
    return array_module(device_of(a))


def _check_p(p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


# ---- dropout ---------------------------------------------------------------------------------
class _DropoutNode(Node):
    __slots__ = ()
    name_ = "NativeDropoutBackward0"

    def backward(self, g):
        scaled_mask = self.saved[0]
        return ((g * scaled_mask).astype(g.dtype, copy=False),)


def _dropout_mask(x, p):
    """The kept elements' factor: 0 where dropped, 1 / (1 - p) where kept (x's dtype)."""
    keep = _gen.default_generator.rng.random(x.shape, dtype=np.float32) >= np.float32(p)
    if p < 1.0:
        m = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    else:
        m = np.zeros(x.shape, x.dtype)
    return m if type(x) is _ndarray else asarray(m, dev=device_of(x))


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training);
    the identity when ``training`` is False or ``p == 0``."""
    p = _check_p(p)
    if not training or p == 0.0:
        return input
    x = input._data
    if x.dtype.kind != "f":
        raise TypeError(f"dropout: input must be floating point, got dtype {x.dtype}")
    mask = _dropout_mask(x, p)
    record = GradMode.enabled and input.requires_grad
    if inplace:
        if record and input._node is None:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation.")
        x *= mask
        if record:  # input now stands for the dropout's output; its old self feeds the node
            prev = _wrap(x, input._node, True)
            input._node = _DropoutNode((prev,), (mask, p))
        return input
    y = x * mask
    if record:
        return _wrap(y, _DropoutNode((input,), (mask, p)), True)
    return _wrap(y)


# ---- the normalisations' shared pieces (layer norm, batch norm) ------------------------------
def _normalized_grad(dxhat, xhat, rstd, axes, n):
    """dL/dx through xhat = (x - mean) * rstd, the mean and the biased variance taken over
    ``axes`` (n elements each), given dL/dxhat."""
    s1 = dxhat.sum(axis=axes, keepdims=True)
    s2 = (dxhat * xhat).sum(axis=axes, keepdims=True)
    return (rstd / n) * (n * dxhat - s1 - xhat * s2)


def _norm_grads(dx, g, xhat, sum_axes, has_w, has_b):
    """The backward's outputs in the input's dtype: dx, then those of weight and bias (of
    ``xhat * weight + bias``, summed over ``sum_axes``) where they are inputs."""
    out = [dx.astype(xhat.dtype, copy=False)]
    if has_w:
        out.append((g * xhat).sum(axis=sum_axes).astype(xhat.dtype, copy=False))
    if has_b:
        out.append(g.sum(axis=sum_axes).astype(xhat.dtype, copy=False))
    return tuple(out)


def _norm_result(y, node_cls, input, weight, bias, saved):
    """y as a tensor; with a node_cls(input[, weight][, bias]) holding ``saved`` when one of
    those needs a gradient."""
    inputs = [input]
    if weight is not None:
        inputs.append(weight)
    if bias is not None:
        inputs.append(bias)
    if GradMode.enabled and any(t.requires_grad for t in inputs):
        return _wrap(y, node_cls(tuple(inputs), saved), True)
    return _wrap(y)


# ---- layer norm ------------------------------------------------------------------------------
def _normalized_shape(ns):
    if isinstance(ns, numbers.Integral):
        return (int(ns),)
    return tuple(int(s) for s in ns)


class _LayerNormNode(Node):
    __slots__ = ()
    name_ = "NativeLayerNormBackward0"

    def backward(self, g):
        xhat, rstd, w, axes, has_w, has_b = self.saved[:6]  # [6]: eps (read by fastmlp.tracing)
        n = 1
        for a in axes:
            n *= xhat.shape[a]
        lead = tuple(range(xhat.ndim - len(axes)))
        dxhat = g * w if w is not None else g
        dx = _normalized_grad(dxhat, xhat, rstd, axes, n)
        return _norm_grads(dx, g, xhat, lead, has_w, has_b)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` dimensions (biased variance), then
    ``* weight + bias``, as ``torch.nn.functional.layer_norm``."""
    ns = _normalized_shape(normalized_shape)
    x = input._data
    k = len(ns)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != ns:
        raise ValueError(f"layer_norm: given normalized_shape={list(ns)}, expected input with "
                         f"shape [*, {', '.join(map(str, ns))}], but got input of size {Size(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != ns:
            raise ValueError(f"layer_norm: '{name}' must have shape {Size(ns)} (normalized_shape), "
                             f"got {Size(t.shape)}")
    xp = _xp(x)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    rstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    xhat = xc * rstd
    w = None if weight is None else weight._data
    b = None if bias is None else bias._data
    y = xhat * w if w is not None else xhat
    if b is not None:
        y = y + b
    y = y.astype(x.dtype, copy=False)
    return _norm_result(y, _LayerNormNode, input, weight, bias,
                        (xhat, rstd, w, axes, weight is not None, bias is not None, eps))


# ---- batch norm ------------------------------------------------------------------------------
class _BatchNormNode(Node):
    __slots__ = ()
    name_ = "NativeBatchNormBackward0"

    def backward(self, g):
        # [7:]: eps, running_mean, running_var, momentum (read by fastmlp.tracing)
        xhat, rstd, w, axes, batch_stats, has_w, has_b = self.saved[:7]
        shape = [1] * xhat.ndim
        shape[1] = xhat.shape[1]
        wb = 1 if w is None else w.reshape(shape)
        dxhat = g * wb
        if batch_stats:
            dx = _normalized_grad(dxhat, xhat, rstd, axes, xhat.size // xhat.shape[1])
        else:
            dx = dxhat * rstd
        return _norm_grads(dx, g, xhat, axes, has_w, has_b)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over dim 1 of an (N, C) or (N, C, L) input, as
    ``torch.nn.functional.batch_norm``: with ``training`` the batch's statistics normalise (biased
    variance) and the running ones are updated in place
    (``running = (1 - momentum) * running + momentum * batch``, the variance unbiased);
    otherwise the running statistics normalise."""
    x = input._data
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected 2D or 3D input (got {x.ndim}D input): the "
                         f"channels are dim 1 of (N, C) or (N, C, L), got shape {Size(x.shape)}")
    C = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"batch_norm: '{name}' must have shape ({C},) (one per channel of "
                             f"input {Size(x.shape)}), got {Size(t.shape)}")
    xp = _xp(x)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1] * x.ndim
    shape[1] = C
    n = x.size // C if C else 0
    if training:
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input "
                             f"size {Size(x.shape)}")
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(shape)
        var = (xc * xc).mean(axis=axes)
        if running_mean is not None:
            rm = running_mean._data
            rm[...] = (1 - momentum) * rm + momentum * mean
        if running_var is not None:
            rv = running_var._data
            rv[...] = (1 - momentum) * rv + momentum * var * (n / (n - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training is "
                             "False")
        mean = running_mean._data.astype(x.dtype, copy=False)
        var = running_var._data.astype(x.dtype, copy=False)
        xc = x - mean.reshape(shape)
    rstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False).reshape(shape)
    xhat = xc * rstd
    w = None if weight is None else weight._data
    y = xhat * w.reshape(shape) if w is not None else xhat
    if bias is not None:
        y = y + bias._data.reshape(shape)
    y = y.astype(x.dtype, copy=False)
    return _norm_result(y, _BatchNormNode, input, weight, bias,
                        (xhat, rstd, w, axes, bool(training), weight is not None, bias is not None,
                         eps, running_mean, running_var, momentum))


# ---- embedding -------------------------------------------------------------------------------
class _EmbeddingNode(Node):
    __slots__ = ()
    name_ = "EmbeddingBackward0"

    def backward(self, g):
        idx, num, padding_idx, scale_by_freq = self.saved
        D = g.shape[-1]
        flat = idx.reshape(-1)
        g2 = g.reshape(-1, D)
        xp = _xp(g)
        if scale_by_freq:
            counts = xp.bincount(flat, minlength=num)
            g2 = g2 / counts[flat][:, None].astype(g.dtype)
        dw = xp.zeros((num, D), dtype=g.dtype)
        if xp is np:
            np.add.at(dw, flat, g2)
        else:  # CuPy
            import cupyx

            cupyx.scatter_add(dw, flat, g2)
        if padding_idx is not None:
            dw[padding_idx] = 0
        return (None, dw)


def _indices(input, num, what):
    t = input._data if isinstance(input, Tensor) else np.asarray(input)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected indices of dtype int64 (or int32), got {t.dtype} "
                        f"(use input.long())")
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num:
            bad = lo if lo < 0 else hi
            raise IndexError(f"index out of range in self: {what} got index {bad}, but the table "
                             f"has {num} rows (indices must be in [0, {num}))")
    return t.astype(np.int64, copy=False)


def _padding(padding_idx, num):
    if padding_idx is None:
        return None
    p = int(padding_idx)
    if not -num <= p < num:
        raise ValueError(f"Padding_idx must be within num_embeddings, got padding_idx={p} for "
                         f"num_embeddings={num}")
    return p + num if p < 0 else p


def _renorm_(w, idx, max_norm, norm_type):
    """torch.embedding_renorm_: rows used by idx whose norm exceeds max_norm scaled to max_norm."""
    xp = _xp(w)
    rows = xp.unique(idx.reshape(-1))
    sub = w[rows]
    norms = (xp.abs(sub) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
    w[rows] = sub * scale[:, None]


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` (num_embeddings, embedding_dim) at integer ``input``; the gradient is
    accumulated into the rows used (none into ``padding_idx``)."""
    if sparse:
        raise ValueError("embedding: sparse=True (sparse gradients) is not supported by fastmlp; "
                         "use sparse=False (dense gradients)")
    w = weight._data
    if w.ndim != 2:
        raise ValueError(f"embedding: 'weight' must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {Size(w.shape)}")
    num = w.shape[0]
    idx = _indices(input, num, "embedding")
    if type(w) is not _ndarray:
        idx = asarray(idx, dev=device_of(w))
    pad = _padding(padding_idx, num)
    if max_norm is not None:
        _renorm_(w, idx, float(max_norm), float(norm_type))
    out = w[idx]
    if GradMode.enabled and weight.requires_grad:
        src = input if isinstance(input, Tensor) else _wrap(idx)
        return _wrap(out, _EmbeddingNode((src, weight), (idx, num, pad, bool(scale_grad_by_freq))),
                     True)
    return _wrap(out)
