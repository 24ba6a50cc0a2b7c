"""``Distribution``: batch/event shapes, the argument checks and the shared helpers."""
from __future__ import annotations

import numpy as np

from ..tensor import Size, Tensor, _wrap


def as_param(x, like=None):
    """A parameter as a Tensor: Tensors stay (their tape is kept), numbers become tensors of the
    dtype of ``like`` (float32 by default, as torch's default dtype)."""
    if isinstance(x, Tensor):
        return x
    dt = like._data.dtype if isinstance(like, Tensor) and like._data.dtype.kind == "f" else np.float32
    return _wrap(np.asarray(x, dtype=dt))


def shape_of(sample_shape):
    if isinstance(sample_shape, int):
        return (sample_shape,)
    return tuple(int(s) for s in sample_shape)


def constant(arr):
    """A constant (no-grad) Tensor around ``arr``."""
    return _wrap(arr)


class Distribution:
    """Base class: ``batch_shape``, ``event_shape``, ``sample``/``rsample``, ``log_prob``,
    ``entropy``, ``mean``/``stddev``/``variance``."""

    has_rsample = False
    _validate_default = True

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None):
        self._batch_shape = Size(batch_shape)
        self._event_shape = Size(event_shape)
        self._validate_args = self._validate_default if validate_args is None else validate_args

    @property
    def batch_shape(self):
        return self._batch_shape

    @property
    def event_shape(self):
        return self._event_shape

    def _extended_shape(self, sample_shape=()):
        return Size(shape_of(sample_shape) + tuple(self._batch_shape) + tuple(self._event_shape))

    def sample(self, sample_shape=()):
        raise NotImplementedError(f"{type(self).__name__} does not implement sample")

    def rsample(self, sample_shape=()):
        raise NotImplementedError(f"{type(self).__name__} does not support rsample (it is not "
                                  f"reparameterizable); use sample() and a score-function "
                                  f"estimator (log_prob)")

    def sample_n(self, n):
        return self.sample((n,))

    @property
    def stddev(self):
        return self.variance.sqrt()

    def _check(self, name, value, ok, constraint):
        if not self._validate_args:
            return
        if not bool(np.all(ok)):
            shape = tuple(value.shape) if hasattr(value, "shape") else ()
            raise ValueError(f"Expected parameter {name} (Tensor of shape {shape}) of distribution "
                             f"{self!r} to satisfy the constraint {constraint}, but found invalid "
                             f"values:\n{value}")
