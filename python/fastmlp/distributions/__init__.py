"""``fastmlp.distributions``: ``Normal`` and ``Categorical`` as torch.distributions has them, for
policy-gradient and VAE code. ``log_prob``/``entropy`` (and ``Normal.rsample``) are built from
Tensor ops, so gradients reach ``loc``/``scale``/``logits``/``probs`` through the tape; samples come
from fastmlp's generator (``fastmlp.manual_seed`` makes them reproducible)."""
from .distribution import Distribution
from .normal import Normal
from .categorical import Categorical

__all__ = ["Distribution", "Normal", "Categorical"]
