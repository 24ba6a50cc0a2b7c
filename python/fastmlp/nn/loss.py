"""Loss modules (``torch.nn.MSELoss``, ``CrossEntropyLoss``, ...): thin wrappers over the
functional forms in :mod:`fastmlp.nn.functional`, with PyTorch's constructor arguments."""
from __future__ import annotations

from ..tensor import Tensor
from . import _losses
from . import functional as F
from .modules import Module

__all__ = ["MSELoss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "L1Loss",
           "SmoothL1Loss", "HuberLoss"]


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = _losses._reduction(size_average, reduce, reduction)

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError(f"{type(self).__name__}: weight must be a Tensor or None, got "
                            f"{type(weight).__name__}")
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error; ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"``."""

    def forward(self, input, target):
        return F._mse(input, target, self.reduction)

    def __call__(self, input, target):
        return F._mse(input, target, self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy over logits: class-index (int64) or class-probability targets,
    ``weight`` per class, ``ignore_index``, ``label_smoothing``."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        ls = float(label_smoothing)
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, "
                             f"got {label_smoothing}")
        self.label_smoothing = ls

    def forward(self, input, target):
        return _losses.cross_entropy(input, target, weight=self.weight,
                                     ignore_index=self.ignore_index, reduction=self.reduction,
                                     label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return _losses.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                                reduction=self.reduction)


class BCELoss(_WeightedLoss):
    def forward(self, input, target):
        return _losses.binary_cross_entropy(input, target, weight=self.weight,
                                            reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        for name, v in (("weight", weight), ("pos_weight", pos_weight)):
            if v is not None and not isinstance(v, Tensor):
                raise TypeError(f"BCEWithLogitsLoss: {name} must be a Tensor or None, got "
                                f"{type(v).__name__}")
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return _losses.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                        reduction=self.reduction,
                                                        pos_weight=self.pos_weight)


class L1Loss(_Loss):
    def forward(self, input, target):
        return _losses.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return _losses.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return _losses.huber_loss(input, target, reduction=self.reduction, delta=self.delta)
