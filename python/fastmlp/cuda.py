"""CUDA status and device queries, like ``torch.cuda``.

``fastmlp._cuda`` is built only where a CUDA compiler was found, and imported lazily here, so
``import fastmlp`` never needs the CUDA runtime or a GPU.
"""
from __future__ import annotations

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


def is_built() -> bool:
    """Whether this installation contains the CUDA module."""
    return _load() is not None


def device_count() -> int:
    mod = _load()
    return mod.device_count() if mod is not None else 0


def is_available() -> bool:
    """Whether a CUDA device can be used (module built, driver present, at least one GPU)."""
    return device_count() > 0


def unavailable_reason() -> str:
    mod = _load()
    if mod is None:
        return "fastmlp was built without CUDA" if isinstance(_import_error, ModuleNotFoundError) \
            else f"the CUDA module failed to load: {_import_error}"
    if mod.device_count() == 0:
        return mod.status()
    return ""
