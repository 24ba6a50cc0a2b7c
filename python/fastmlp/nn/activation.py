"""The activation modules of ``torch.nn`` (``Tanh``, ``GELU``, ``Softmax``, ...), over
:mod:`fastmlp.nn.functional`.

Each element-wise module describes itself to the fusion machinery by ``_act_spec()``, its
``(kind, p0, p1)``: ``Sequential(Linear, GELU())`` runs the pair as one GEMM with the activation
in its epilogue, and a module called on a fresh Linear output fuses into that Linear's tape node
(as ReLU does). Adding an activation here is one class with its ``_act_spec``.
"""
from __future__ import annotations

from . import functional as F
from .modules import Module

__all__ = ["Tanh", "Sigmoid", "GELU", "SiLU", "LeakyReLU", "ELU", "Softplus", "Hardtanh", "ReLU6",
           "Softmax", "LogSoftmax"]


class _ElementwiseAct(Module):
    """An element-wise activation: ``_act_spec()`` gives (kind, p0, p1); ``_inplace`` its flag."""

    _inplace = False

    def _act_spec(self):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __call__(self, input):
        kind, p0, p1 = self._act_spec()
        return F._act(type(self).__name__.lower(), input, kind, p0, p1, self._inplace)

    def forward(self, input):
        kind, p0, p1 = self._act_spec()
        return F._act_unfused(input, kind, p0, p1, self._inplace)


class Tanh(_ElementwiseAct):
    def _act_spec(self):
        return F._K_TANH, 0.0, 0.0


class Sigmoid(_ElementwiseAct):
    def _act_spec(self):
        return F._K_SIGMOID, 0.0, 0.0


class GELU(_ElementwiseAct):
    def __init__(self, approximate="none"):
        super().__init__()
        F._gelu_kind(approximate)
        self.approximate = approximate

    def _act_spec(self):
        return F._gelu_kind(self.approximate), 0.0, 0.0

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(_ElementwiseAct):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    @property
    def _inplace(self):
        return self.inplace

    def _act_spec(self):
        return F._K_SILU, 0.0, 0.0

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(_ElementwiseAct):
    def __init__(self, negative_slope=1e-2, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    @property
    def _inplace(self):
        return self.inplace

    def _act_spec(self):
        return F._K_LEAKY, float(self.negative_slope), 0.0

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(_ElementwiseAct):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    @property
    def _inplace(self):
        return self.inplace

    def _act_spec(self):
        return F._K_ELU, float(self.alpha), 0.0

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Softplus(_ElementwiseAct):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def _act_spec(self):
        return F._K_SOFTPLUS, float(self.beta), float(self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(_ElementwiseAct):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        F._hardtanh_params(min_val, max_val)
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    @property
    def _inplace(self):
        return self.inplace

    def _act_spec(self):
        p0, p1 = F._hardtanh_params(self.min_val, self.max_val)
        return F._K_HARDTANH, p0, p1

    def extra_repr(self):
        return (f"min_val={self.min_val}, max_val={self.max_val}"
                + (", inplace=True" if self.inplace else ""))


class ReLU6(Hardtanh):
    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F._softmax(input, self.dim, None, False)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F._softmax(input, self.dim, None, True)

    def extra_repr(self):
        return f"dim={self.dim}"
