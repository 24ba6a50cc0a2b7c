"""``fastmlp.nn``: modules, ``functional`` and ``init``, shaped like ``torch.nn``."""
from . import functional, init
from .activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU6, SiLU, Sigmoid,
                         Softmax, Softplus, Tanh)
from .modules import Flatten, Identity, Linear, Module, ModuleList, MSELoss, ReLU, Sequential
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sequential", "ModuleList", "MSELoss",
           "Identity", "Flatten", "Tanh", "Sigmoid", "GELU", "SiLU", "LeakyReLU", "ELU",
           "Softplus", "Hardtanh", "ReLU6", "Softmax", "LogSoftmax", "functional", "init"]
