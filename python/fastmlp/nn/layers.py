"""Layers besides Linear and the activations: Dropout, LayerNorm, BatchNorm1d, Unflatten,
Embedding, with PyTorch's constructor arguments, parameters, buffers and state_dict names."""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes as _dt
from ..tensor import Size, Tensor, _wrap
from . import _layer_ops
from . import init
from .modules import Module
from .parameter import Parameter

__all__ = ["Dropout", "LayerNorm", "BatchNorm1d", "Unflatten", "Embedding"]


def _np_dtype(dtype):
    return np.dtype(np.float32) if dtype is None else _dt.to_numpy_dtype(dtype)


def _to_device(module, device):
    if device is not None and str(device) != "cpu":
        module.to(device)


class Dropout(Module):
    """Zeroes elements with probability ``p`` in training mode (the rest scaled by 1/(1-p))."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p = _layer_ops._check_p(p)
        self.inplace = inplace

    def forward(self, input):
        return _layer_ops.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None,
                 dtype=None):
        super().__init__()
        self.normalized_shape = _layer_ops._normalized_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dt = _np_dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dt))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        _to_device(self, device)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        return _layer_ops.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class BatchNorm1d(Module):
    """Batch normalisation of (N, C) or (N, C, L) inputs. Buffers ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` (PyTorch's state_dict names); ``momentum=None``
    is the cumulative average."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral) \
                or num_features <= 0:
            raise ValueError(f"BatchNorm1d: num_features must be a positive int, got "
                             f"{num_features!r}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = _np_dtype(dtype)
        C = self.num_features
        if affine:
            self.weight = Parameter(np.ones(C, dtype=dt))
            if bias:
                self.bias = Parameter(np.zeros(C, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", _wrap(np.zeros(C, dtype=dt)))
            self.register_buffer("running_var", _wrap(np.ones(C, dtype=dt)))
            self.register_buffer("num_batches_tracked", _wrap(np.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        _to_device(self, device)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean._data[...] = 0
            self.running_var._data[...] = 1
            self.num_batches_tracked._data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        x = input._data
        if x.ndim not in (2, 3):  # PyTorch's words, then the shape
            raise ValueError(f"expected 2D or 3D input (got {x.ndim}D input): "
                             f"BatchNorm1d({self.num_features}) normalises (N, C) or (N, C, L) "
                             f"inputs with C = {self.num_features}, got shape {Size(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}) expected input with "
                             f"{self.num_features} channels (dim 1), got shape {Size(x.shape)}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked._data[...] += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked._data)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return _layer_ops.batch_norm(input, self.running_mean if track else None,
                                     self.running_var if track else None, self.weight, self.bias,
                                     use_batch, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class Unflatten(Module):
    """Unflattens dimension ``dim`` into ``unflattened_size`` (one entry may be -1)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if not isinstance(dim, numbers.Integral):
            raise TypeError(f"Unflatten: dim must be an int, got {type(dim).__name__}")
        if not isinstance(unflattened_size, (tuple, list)) or not all(
                isinstance(s, numbers.Integral) for s in unflattened_size):
            raise TypeError(f"unflattened_size must be tuple of ints, but found type "
                            f"{type(unflattened_size).__name__}")
        self.dim = int(dim)
        self.unflattened_size = tuple(int(s) for s in unflattened_size)

    def forward(self, input):
        shape = tuple(input.shape)
        d = self.dim + len(shape) if self.dim < 0 else self.dim
        if not 0 <= d < len(shape):
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-len(shape)}, {len(shape) - 1}], but got {self.dim})")
        sizes = list(self.unflattened_size)
        known = 1
        for s in sizes:
            if s != -1:
                known *= s
        if sizes.count(-1) > 1 or (sizes.count(-1) == 0 and known != shape[d]) or \
                (sizes.count(-1) == 1 and (known == 0 or shape[d] % known)):
            raise ValueError(f"unflatten: Provided sizes {self.unflattened_size} don't multiply up "
                             f"to the size of dim {self.dim} ({shape[d]}) in the input tensor")
        return input.reshape(shape[:d] + tuple(sizes) + shape[d + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` rows of size ``embedding_dim``, initialised N(0, 1)
    (the ``padding_idx`` row zero, and kept out of the gradient)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 _freeze=False, device=None, dtype=None):
        super().__init__()
        for n, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"Embedding: {n} must be a non-negative int, got {v!r}")
        if sparse:
            raise ValueError("Embedding: sparse=True (sparse gradients) is not supported by "
                             "fastmlp; use sparse=False")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = _layer_ops._padding(padding_idx, self.num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim),
                                             dtype=_np_dtype(dtype)), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            w = _weight._data if isinstance(_weight, Tensor) else np.asarray(_weight)
            if tuple(w.shape) != (self.num_embeddings, self.embedding_dim):
                raise ValueError(f"Embedding: _weight must have shape "
                                 f"({self.num_embeddings}, {self.embedding_dim}), got {w.shape}")
            self.weight = Parameter(w, requires_grad=not _freeze)
        _to_device(self, device)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight._data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None,
                        norm_type=2.0, scale_grad_by_freq=False, sparse=False):
        if embeddings.ndim != 2:
            raise ValueError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings, _freeze=freeze)

    def forward(self, input):
        return _layer_ops.embedding(input, self.weight, self.padding_idx, self.max_norm,
                                    self.norm_type, self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        return s
