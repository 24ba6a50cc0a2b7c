"""fastmlp: multilayer perceptrons on hand-written CPU (OpenMP/SIMD) and CUDA kernels.

Speaks PyTorch's API: ``import fastmlp as torch``, ``import fastmlp.nn as nn``,
``import fastmlp.optim as optim``. The array-level kernels are in :mod:`fastmlp.ops`.
"""
from . import _C  # noqa: F401  (the compiled CPU kernels; import errors surface here)
from . import ops, cuda
from .trainer import fit, predict  # whole-epoch fused training (issue 5), native inference (issue 14)
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

# ---- the torch-compatible layer ------------------------------------------------------------
from . import autograd  # noqa: E402
from .autograd import (enable_grad, inference_mode, is_grad_enabled, no_grad,  # noqa: E402
                       set_grad_enabled)
from .devices import device  # noqa: E402
from .dtypes import (bool_ as bool, double, dtype, float, float16, float32, float64, half,  # noqa: E402,A001
                     int, int8, int16, int32, int64, long, uint8)
from .generator import Generator, default_generator, initial_seed, manual_seed, seed  # noqa: E402
from .tensor import (Size, Tensor, abs, allclose, arange, argmax, as_tensor, cat, clamp,  # noqa: E402,A001
                     clip, empty, empty_like, equal, exp, eye, flatten, from_numpy, full,
                     full_like, is_tensor, linspace, log, matmul, max, mean, min, mm, numel, ones,
                     ones_like, rand, rand_like, randint, randn, randn_like, randperm, reshape,
                     sigmoid, softmax, log_softmax, sqrt, squeeze, stack, sum, tanh, tensor, transpose, unsqueeze,
                     where, zeros, zeros_like)
from .tensor import *  # noqa: E402,F401,F403  (the long tail of the torch namespace)
from .autograd import set_detect_anomaly, detect_anomaly  # noqa: E402,F401
from . import backends, linalg  # noqa: E402,F401
from .serialization import load, save  # noqa: E402
from . import nn, optim, utils  # noqa: E402
from . import tracing  # noqa: E402,F401  (fit's model reader; loaded now, not during a fit)
from . import distributions  # noqa: E402
from .nn.functional import relu, relu_, sigmoid, tanh  # noqa: E402,F811  (fusable: one frame)
from .nn.parameter import Parameter  # noqa: E402,F401

FloatTensor = Tensor
from .tensor import _MaxResult as _return_type  # noqa: E402
return_types = type("return_types", (), {"max": _return_type, "min": _return_type,
                                         "topk": _return_type, "sort": _return_type})

