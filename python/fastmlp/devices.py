"""``fastmlp.device`` and the one place that picks the array library for a device.

A CPU tensor holds a numpy array; a CUDA tensor holds a CuPy array (CuPy is imported lazily, only
when a tensor is moved to "cuda"). Everything in the Tensor code that creates arrays goes through
:func:`array_module` / :func:`asarray`, so the CUDA path needs no second copy of that code.
"""
from __future__ import annotations

import numpy as np

__all__ = ["device", "CPU", "array_module", "device_of", "asarray", "check_cuda_available"]


class device:
    """``device("cpu")``, ``device("cuda")`` (= ``cuda:0``), ``device("cuda", 1)``."""

    __slots__ = ("type", "index")

    def __init__(self, type_or_str="cpu", index=None):
        if isinstance(type_or_str, device):
            self.type, self.index = type_or_str.type, type_or_str.index
            return
        if not isinstance(type_or_str, str):
            raise TypeError(f"device() expects a string such as 'cpu' or 'cuda:0', got "
                            f"{type(type_or_str).__name__}")
        s = type_or_str.strip()
        if ":" in s:
            if index is not None:
                raise ValueError(f"device(): type {s!r} already has an index; do not pass index={index}")
            s, _, idx = s.partition(":")
            try:
                index = int(idx)
            except ValueError:
                raise ValueError(f"Invalid device string: {type_or_str!r}") from None
        if s not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: "
                               f"{type_or_str}")
        if s == "cpu":
            index = None
        elif index is None:
            index = 0
        self.type, self.index = s, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (RuntimeError, ValueError):
                return False
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))


CPU = device("cpu")
_cuda_devices = {}


def check_cuda_available():
    from . import cuda

    if not cuda.is_available():
        raise RuntimeError(
            "Cannot use a CUDA device: fastmlp.cuda.is_available() is False ("
            + (cuda.unavailable_reason() or "no CUDA device") + "). Keep tensors and models on "
            "the CPU (device='cpu'), or install fastmlp with CUDA support on a machine with an "
            "NVIDIA GPU (pip install 'fastmlp[cuda]').")


def _cupy():
    check_cuda_available()
    import cupy  # noqa: WPS433  (lazy: only CUDA users need it)

    return cupy


def array_module(dev):
    """numpy for the CPU, cupy for a CUDA device (raising RuntimeError when CUDA is unavailable)."""
    return np if dev.type == "cpu" else _cupy()


def device_of(arr) -> device:
    if type(arr) is np.ndarray or not hasattr(arr, "__cuda_array_interface__"):
        return CPU
    d = getattr(arr, "device", None)
    idx = getattr(d, "id", 0)
    dev = _cuda_devices.get(idx)
    if dev is None:
        dev = _cuda_devices[idx] = device("cuda", idx)
    return dev


def asarray(obj, dtype=None, dev=CPU, copy=False):
    """``obj`` as an array of ``dtype`` on ``dev`` (numpy or cupy), copying only when needed/asked."""
    if dev.type == "cpu":
        if type(obj) is not np.ndarray and hasattr(obj, "__cuda_array_interface__"):
            obj = obj.get()  # cupy → numpy
        if copy:
            return np.array(obj, dtype=dtype, copy=True)
        return np.asarray(obj, dtype=dtype)
    cp = _cupy()
    with cp.cuda.Device(dev.index or 0):
        if copy:
            return cp.array(obj, dtype=dtype, copy=True)
        return cp.asarray(obj, dtype=dtype)
