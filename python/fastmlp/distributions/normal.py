"""``Normal(loc, scale)``: sample/rsample, log_prob, entropy, mean/mode/stddev/variance."""
from __future__ import annotations

import math

import numpy as np

from ..devices import asarray, device_of
from ..generator import rng_of
from ..tensor import Tensor, _wrap
from .distribution import Distribution, as_param, shape_of

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


class Normal(Distribution):
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        like = loc if isinstance(loc, Tensor) else scale
        loc = as_param(loc, like)
        scale = as_param(scale, like)
        shape = np.broadcast_shapes(tuple(loc.shape), tuple(scale.shape))
        self.loc = loc if tuple(loc.shape) == shape else loc.expand(shape)
        self.scale = scale if tuple(scale.shape) == shape else scale.expand(shape)
        super().__init__(shape, (), validate_args)
        s = _host(self.scale._data)
        self._check("scale", s, s > 0, "GreaterThan(lower_bound=0.0)")
        lo = _host(self.loc._data)
        self._check("loc", lo, ~np.isnan(lo), "Real()")

    def __repr__(self):
        return f"Normal(loc: {_brief(self.loc)}, scale: {_brief(self.scale)})"

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def stddev(self):
        return self.scale

    @property
    def variance(self):
        return self.scale ** 2

    def _eps(self, sample_shape, generator=None):
        shape = self._extended_shape(sample_shape)
        a = self.loc._data
        draw = rng_of(generator).standard_normal(tuple(shape)).astype(a.dtype, copy=False)
        return asarray(draw, dtype=a.dtype, dev=device_of(a)) if type(a) is not np.ndarray else draw

    def sample(self, sample_shape=(), generator=None):
        """Draws of shape ``sample_shape + batch_shape``, without gradient."""
        eps = self._eps(sample_shape, generator)
        return _wrap(self.loc._data + eps * self.scale._data)

    def rsample(self, sample_shape=(), generator=None):
        """Reparameterised draws loc + eps * scale: gradients flow to loc and scale."""
        eps = _wrap(self._eps(sample_shape, generator))
        return self.loc + eps * self.scale

    def log_prob(self, value):
        value = as_param(value, self.loc)
        var = self.scale ** 2
        return -((value - self.loc) ** 2) / (2 * var) - self.scale.log() - _LOG_SQRT_2PI

    def entropy(self):
        return 0.5 + 0.5 * math.log(2 * math.pi) + self.scale.log()


def _host(a):
    return a if type(a) is np.ndarray else a.get()


def _brief(t):
    return f"torch.Size({list(t.shape)})" if t.numel() > 1 else f"{float(t._data.reshape(-1)[0])}"
