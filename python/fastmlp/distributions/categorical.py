"""``Categorical(probs=|logits=)``: sample, log_prob, entropy, probs/logits (normalised over the
last dimension), mean/variance (NaN, as torch), enumerate_support."""
from __future__ import annotations

import numpy as np

from ..devices import asarray, device_of
from ..generator import rng_of
from ..tensor import Tensor, _wrap
from .distribution import Distribution, as_param

_INT64 = np.dtype(np.int64)


def _host(a):
    return a if type(a) is np.ndarray else a.get()


def _logsumexp_last(x):
    """log(sum(exp(x), -1, keepdim=True)) on the tape, shifted by the (constant) row maximum."""
    a = x._data
    xp = np if type(a) is np.ndarray else __import__("cupy")
    m = xp.max(a, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0).astype(a.dtype, copy=False)
    mt = _wrap(m)
    return (x - mt).exp().sum(-1, keepdim=True).log() + mt


class Categorical(Distribution):
    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        if probs is not None:
            probs = as_param(probs)
            if probs.dim() < 1:
                raise ValueError("`probs` parameter must be at least one-dimensional.")
            self._from_probs, self._raw_shape = True, tuple(probs.shape)
            p = _host(probs._data)
            self._validate_args = True if validate_args is None else validate_args
            self._check("probs", p, np.all(p >= 0) & np.all(np.isfinite(p)),
                        "Simplex() (non-negative and finite)")
            self.probs = probs / probs.sum(-1, keepdim=True)
            self._param = self.probs
        else:
            logits = as_param(logits)
            if logits.dim() < 1:
                raise ValueError("`logits` parameter must be at least one-dimensional.")
            self._from_probs, self._raw_shape = False, tuple(logits.shape)
            lg = _host(logits._data)
            self._validate_args = True if validate_args is None else validate_args
            self._check("logits", lg, ~np.isnan(lg), "IndependentConstraint(Real(), 1)")
            self.logits = logits - _logsumexp_last(logits)
            self._param = self.logits
        shape = tuple(self._param.shape)
        self._num_events = shape[-1]
        super().__init__(shape[:-1], (), validate_args)

    def __getattr__(self, name):
        # probs from logits and logits from probs are computed on first use (torch's lazy
        # properties), on the tape so gradients reach the parameter given
        if "_param" not in self.__dict__:
            raise AttributeError(name)
        if name == "probs":
            p = self.logits.exp()
            self.__dict__["probs"] = p
            return p
        if name == "logits":
            eps = float(np.finfo(self.probs._data.dtype).eps)
            lg = self.probs.clamp(eps, 1 - eps).log()
            self.__dict__["logits"] = lg
            return lg
        raise AttributeError(name)

    def __repr__(self):
        name = "probs" if self._from_probs else "logits"
        return f"Categorical({name}: torch.Size({list(self._raw_shape)}))"

    @property
    def param_shape(self):
        return self._param.shape

    @property
    def mean(self):
        return _wrap(np.full(tuple(self.batch_shape), np.nan, dtype=self._param._data.dtype))

    @property
    def mode(self):
        return self.probs.argmax(-1)

    @property
    def variance(self):
        return self.mean

    def sample(self, sample_shape=(), generator=None):
        """Category indices (int64) of shape ``sample_shape + batch_shape``, drawn by inverting the
        cumulative probabilities with uniforms from fastmlp's generator."""
        shape = tuple(self._extended_shape(sample_shape))
        p = _host(self.probs._data).astype(np.float64)
        cdf = np.cumsum(p, axis=-1)
        cdf /= cdf[..., -1:]
        u = rng_of(generator).random(shape + (1,))
        idx = (u >= np.broadcast_to(cdf, shape + (self._num_events,))).sum(-1)
        idx = np.minimum(idx, self._num_events - 1).astype(np.int64)
        a = self._param._data
        return _wrap(idx if type(a) is np.ndarray else asarray(idx, dev=device_of(a)))

    def log_prob(self, value):
        if not isinstance(value, Tensor):
            value = _wrap(np.asarray(value, dtype=np.int64))
        v = value._data
        if v.dtype.kind not in "iub" and self._validate_args:
            vh = _host(v)
            if not np.all(vh == np.round(vh)):
                raise ValueError("Categorical.log_prob: value must hold category indices "
                                 f"(integers), got dtype {v.dtype}")
        v = v.astype(np.int64, copy=False)
        vh = _host(v)
        if self._validate_args and (np.any(vh < 0) or np.any(vh >= self._num_events)):
            bad = vh[(vh < 0) | (vh >= self._num_events)].reshape(-1)[0]
            raise ValueError(f"Categorical.log_prob: value {int(bad)} is out of range for "
                             f"{self._num_events} categories (0 to {self._num_events - 1})")
        logits = self.logits
        batch = tuple(self.batch_shape)
        shape = np.broadcast_shapes(v.shape, batch)
        lg = logits if batch == shape else logits.expand(shape + (self._num_events,))
        vb = np.broadcast_to(v, shape) if type(v) is np.ndarray else v
        flat = lg.reshape(-1, self._num_events)
        rows = np.arange(flat.shape[0])
        cols = np.ascontiguousarray(vb).reshape(-1) if type(vb) is np.ndarray else vb.reshape(-1)
        return flat[rows, cols].reshape(shape)

    def entropy(self):
        min_real = float(np.finfo(self.logits._data.dtype).min)
        logits = self.logits.clamp(min=min_real)
        return -(logits * self.probs).sum(-1)

    def enumerate_support(self, expand=True):
        k = self._num_events
        vals = np.arange(k, dtype=np.int64).reshape((k,) + (1,) * len(self.batch_shape))
        if expand:
            vals = np.broadcast_to(vals, (k,) + tuple(self.batch_shape)).copy()
        return _wrap(vals)
