"""``fastmlp.backends``: the switches PyTorch scripts set or query (``torch.backends.mps``,
``torch.backends.cudnn``, ``torch.backends.cuda.matmul``). fastmlp has no MPS or cuDNN backend, so
their ``is_available()``/``is_built()`` are False; the flags are accepted (scripts set them) and
change nothing."""
from __future__ import annotations

import types

__all__ = ["mps", "cudnn", "cuda", "openmp", "mkldnn"]

mps = types.SimpleNamespace(is_available=lambda: False, is_built=lambda: False,
                            is_macos13_or_newer=lambda *a: False)
cudnn = types.SimpleNamespace(is_available=lambda: False, version=lambda: None, enabled=True,
                              benchmark=False, deterministic=False, allow_tf32=True)
cuda = types.SimpleNamespace(is_built=lambda: _cuda_built(),
                             matmul=types.SimpleNamespace(allow_tf32=False,
                                                          allow_fp16_reduced_precision_reduction=True))
openmp = types.SimpleNamespace(is_available=lambda: True)
mkldnn = types.SimpleNamespace(is_available=lambda: False, enabled=False)


def _cuda_built():
    try:
        from .. import _cuda  # noqa: F401
    except ImportError:
        return False
    return True
