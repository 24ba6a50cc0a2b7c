"""``fastmlp.nn``: modules, ``functional`` and ``init``, shaped like ``torch.nn``."""
from . import functional, init, utils
from .activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU6, SiLU, Sigmoid,
                         Softmax, Softplus, Tanh)
from .layers import BatchNorm1d, Dropout, Embedding, LayerNorm, Unflatten
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss,
                   NLLLoss, SmoothL1Loss)
from .modules import Flatten, Identity, Linear, Module, ModuleList, ReLU, Sequential
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sequential", "ModuleList", "MSELoss",
           "Identity", "Flatten", "Tanh", "Sigmoid", "GELU", "SiLU", "LeakyReLU", "ELU",
           "Softplus", "Hardtanh", "ReLU6", "Softmax", "LogSoftmax", "functional", "init",
           "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss",
           "HuberLoss",
           "Dropout", "LayerNorm", "BatchNorm1d", "Unflatten", "Embedding"]
