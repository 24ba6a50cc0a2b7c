"""Tensor element types (``fastmlp.float32`` …), like ``torch.float32``, mapped onto numpy dtypes.

Only float32 is computed by the compiled kernels; the other types exist so that data, indices and
masks can be held and converted (``t.float()``), with numpy doing the arithmetic.
"""
from __future__ import annotations

import builtins

import numpy as np

__all__ = ["dtype", "float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool_",
           "float", "double", "half", "long", "int", "to_numpy_dtype", "from_numpy_dtype"]


class dtype:
    """An element type. Compares equal to itself and to the numpy dtype it stands for."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize")

    def __init__(self, name: str, np_dtype):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.itemsize = self.np.itemsize

    def __repr__(self):
        return f"fastmlp.{self.name}"

    def __eq__(self, other):
        if isinstance(other, dtype):
            return self is other
        try:
            return self.np == np.dtype(other)
        except TypeError:
            return False

    def __hash__(self):
        return hash(self.np)

    def __reduce__(self):  # pickles by name (e.g. in a multiprocessing queue)
        return (_by_name, (self.name,))


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
float16 = dtype("float16", np.float16)
int64 = dtype("int64", np.int64)
int32 = dtype("int32", np.int32)
int16 = dtype("int16", np.int16)
int8 = dtype("int8", np.int8)
uint8 = dtype("uint8", np.uint8)
bool_ = dtype("bool", np.bool_)
float = float32  # noqa: A001  (torch.float is float32)
double = float64
half = float16
long = int64
int = int32  # noqa: A001  (torch.int is int32)

_ALL = (float32, float64, float16, int64, int32, int16, int8, uint8, bool_)
_FROM_NP = {d.np: d for d in _ALL}
_NAMES = {d.name: d for d in _ALL}


def _by_name(name):
    return _NAMES[name]


def from_numpy_dtype(np_dtype) -> dtype:
    d = _FROM_NP.get(np_dtype)
    if d is None:
        d = _FROM_NP.get(np.dtype(np_dtype))
        if d is None:
            raise TypeError(f"fastmlp tensors cannot hold numpy dtype {np.dtype(np_dtype)}; "
                            f"supported: {', '.join(x.name for x in _ALL)}")
    return d


def to_numpy_dtype(d) -> np.dtype:
    """A fastmlp dtype, numpy dtype, or type such as ``float`` → the numpy dtype."""
    if isinstance(d, dtype):
        return d.np
    if d is builtins.float:
        return np.dtype(np.float32)  # as torch: python float means the default float32
    if d is builtins.int:
        return np.dtype(np.int64)
    if d is builtins.bool:
        return np.dtype(np.bool_)
    nd = np.dtype(d)
    from_numpy_dtype(nd)  # raises for unsupported types
    return nd
