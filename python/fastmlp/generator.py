"""Random numbers: ``fastmlp.Generator`` and the default generator behind ``manual_seed``.

A new ``Generator()`` starts from PyTorch's fixed default seed; the process's default generator
starts from a fresh random seed (``initial_seed()`` differs between runs) unless ``manual_seed``
is called, as in PyTorch.

The streams are numpy's PCG64, so they differ from PyTorch's; what matches PyTorch is the
distribution (e.g. ``nn.Linear``'s initial weights) and the seeding API.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Generator", "default_generator", "manual_seed", "seed", "initial_seed"]

_DEFAULT_SEED = 67280421310721  # PyTorch's default initial seed


class Generator:
    """``fastmlp.Generator(device="cpu")`` with ``manual_seed``/``initial_seed``/``get_state``."""

    def __init__(self, device="cpu"):
        if str(device) != "cpu":
            raise ValueError("fastmlp.Generator: only device='cpu' generators exist (CUDA tensors "
                             "are filled from CPU draws)")
        self.device = device
        self.manual_seed(_DEFAULT_SEED)

    def manual_seed(self, seed):
        seed = int(seed)
        if seed < 0:
            seed &= (1 << 64) - 1
        self._seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        return self

    def initial_seed(self):
        return self._seed

    def seed(self):
        s = int(np.random.SeedSequence().entropy) & ((1 << 63) - 1)
        self.manual_seed(s)
        return s

    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state
        return self

    def __repr__(self):
        return f"<fastmlp.Generator object (seed={self._seed})>"


default_generator = Generator()
default_generator.seed()  # as PyTorch: each process starts from a fresh random seed


def manual_seed(seed):
    """Seed the default generator (weights init, ``randn``/``rand``, DataLoader shuffling)."""
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def rng_of(generator):
    return (generator if generator is not None else default_generator).rng
