"""``nn.Parameter``: a leaf Tensor that a Module registers as one of its parameters."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """``Parameter(data, requires_grad=True)``; shares ``data``'s array (no copy)."""

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        return object.__new__(cls)

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            arr = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            arr = data._data
        elif isinstance(data, np.ndarray):
            arr = data
        else:
            raise TypeError(f"Parameter(): data must be a Tensor, got {type(data).__name__}")
        self._data = arr
        self.grad = None
        self._node = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (np.asarray(self.detach().cpu()._data), self.requires_grad))


def _rebuild_parameter(arr, requires_grad):
    return Parameter(arr, requires_grad)
