"""fastmlp: multilayer perceptrons on hand-written CPU (OpenMP/SIMD) and CUDA kernels.

Speaks PyTorch's API: ``import fastmlp as torch``, ``import fastmlp.nn as nn``,
``import fastmlp.optim as optim``. The array-level kernels are in :mod:`fastmlp.ops`.
"""
from . import _C  # noqa: F401  (the compiled CPU kernels; import errors surface here)
from . import ops, cuda
from .trainer import fit  # whole-epoch fused training (issue 5)
from .config import (
    __version__,
    get_num_threads,
    set_num_threads,
    get_cpu_path,
    set_cpu_path,
    supported_cpu_paths,
    show_config,
)

# Resolve the kernel path now, so a bad FASTMLP_CPU fails at import with its own message.
get_cpu_path()
