"""CUDA status and device queries, like ``torch.cuda``.

``fastmlp._cuda`` is built only where a CUDA compiler was found, and imported lazily here, so
``import fastmlp`` never needs the CUDA runtime or a GPU. GPU arrays are CuPy arrays; the kernels
run on CuPy's current stream (see :mod:`fastmlp.ops_cuda`).
"""
from __future__ import annotations

__all__ = [
    "is_built",
    "is_available",
    "unavailable_reason",
    "device_count",
    "current_device",
    "get_device_name",
    "synchronize",
]

_module = None
_import_error = None


def _load():
    global _module, _import_error
    if _module is None and _import_error is None:
        import importlib
        import importlib.util

        if importlib.util.find_spec(__package__ + "._cuda") is None:
            _import_error = ModuleNotFoundError("fastmlp was built without CUDA")
            return None
        try:
            _module = importlib.import_module(__package__ + "._cuda")
        except ImportError as e:  # built, but a library it needs is missing
            _import_error = e
    return _module


def _require():
    """``fastmlp._cuda`` with a usable device, or RuntimeError saying why not."""
    mod = _load()
    if mod is None or mod.device_count() == 0:
        raise RuntimeError(f"CUDA is not available: {unavailable_reason()}")
    return mod


def is_built() -> bool:
    """Whether this installation contains the CUDA module."""
    return _load() is not None


def device_count() -> int:
    """Number of usable CUDA devices (0 without the module, a driver or a GPU)."""
    mod = _load()
    return mod.device_count() if mod is not None else 0


def is_available() -> bool:
    """Whether a CUDA device can be used (module built, driver present, at least one GPU)."""
    return device_count() > 0


def unavailable_reason() -> str:
    """Why :func:`is_available` is False ("" when it is True)."""
    mod = _load()
    if mod is None:
        return "fastmlp was built without CUDA" if isinstance(_import_error, ModuleNotFoundError) \
            else f"the CUDA module failed to load: {_import_error}"
    if mod.device_count() == 0:
        return mod.status()
    return ""


def current_device() -> int:
    """The current CUDA device ordinal (the one CuPy also uses by default)."""
    return _require().current_device()


def get_device_name(device: int = 0) -> str:
    """The name of a device, e.g. ``'NVIDIA H200'``."""
    if isinstance(device, bool) or not isinstance(device, int):
        raise TypeError(f"get_device_name: device must be an int, got {type(device).__name__}")
    mod = _require()
    n = mod.device_count()
    if not 0 <= device < n:
        raise ValueError(f"get_device_name: device {device} out of range (there are {n} devices)")
    return mod.device_name(device)


def synchronize() -> None:
    """Wait for all work queued on the current device (any stream) to finish."""
    _require().synchronize()
