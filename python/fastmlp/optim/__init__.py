"""``fastmlp.optim``: ``Optimizer`` and ``SGD``, shaped like ``torch.optim``."""
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD"]
