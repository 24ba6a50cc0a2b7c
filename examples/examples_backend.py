"""Which library the example scripts run on.

Every script in this folder starts with ``from examples_backend import torch, nn, optim, F`` and is
plain PyTorch code after that line. By default the names are fastmlp's (``import fastmlp as torch``,
``fastmlp.nn``, ``fastmlp.optim``, ``fastmlp.nn.functional``); with the environment variable
``EXAMPLES_BACKEND=torch`` they are PyTorch's own, so the same script runs on both and the losses can
be compared (tests/test_examples.py does that).
"""
import os

BACKEND = os.environ.get("EXAMPLES_BACKEND", "fastmlp").strip().lower()

if BACKEND == "torch":
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    import torch.utils.data  # noqa: F401  (torch.utils.data.DataLoader as an attribute)
elif BACKEND == "fastmlp":
    import fastmlp as torch
    import fastmlp.nn as nn
    import fastmlp.nn.functional as F
    import fastmlp.optim as optim
    import fastmlp.utils.data  # noqa: F401
else:
    raise ValueError(f"EXAMPLES_BACKEND must be 'fastmlp' or 'torch', got {BACKEND!r}")

__all__ = ["torch", "nn", "optim", "F", "BACKEND"]
