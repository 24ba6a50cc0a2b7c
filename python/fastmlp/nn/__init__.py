"""``fastmlp.nn``: modules, ``functional`` and ``init``, shaped like ``torch.nn``."""
from . import functional, init, parallel
from .modules import (Flatten, Identity, Linear, Module, ModuleList, MSELoss, ReLU, Sequential,
                      Sigmoid, Tanh)
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sequential", "ModuleList", "MSELoss",
           "Identity", "Flatten", "Tanh", "Sigmoid", "functional", "init", "parallel"]
