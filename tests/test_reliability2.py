"""Reliability, round two (issue 16, and issue 12's whole-model checkpoints): module registration
order and cached plans, hyperparameters in float32, frozen parameters in fit, exceptions across
processes, Ctrl-C and interpreter exit during a native epoch, checkpoint files, the CLI's input
files, and non-Tensor inputs."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn


# ---- 1. registration order and cached plans --------------------------------------------------

def test_seq_setitem_keeps_position():
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    new = nn.Linear(3, 3)
    seq[0] = new
    assert list(seq._modules) == ["0", "1", "2"]
    assert seq[0] is new
    x = fastmlp.randn(4, 3)
    want = seq[2](fastmlp.relu(new(x)))
    assert np.allclose(seq(x).numpy(), want.numpy())


def test_attribute_reassignment_keeps_position():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 4)
            self.b = nn.Linear(4, 1)
            self.w = nn.Parameter(fastmlp.ones(1))
            self.v = nn.Parameter(fastmlp.ones(1))

    m = Net()
    m.a = nn.Linear(2, 4)
    assert list(m._modules) == ["a", "b"]
    m.w = nn.Parameter(fastmlp.zeros(1))
    assert [k for k, _ in m.named_parameters()][:2] == ["w", "v"]
    assert list(m.state_dict())[2:4] == ["a.weight", "a.bias"]
    m.add_module("a", nn.Linear(2, 4))
    assert list(m._modules) == ["a", "b"]


def test_plan_does_not_outlive_modules_write():
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    x = fastmlp.randn(5, 3)
    seq(x)  # builds and caches the fused plan
    new = nn.Linear(3, 3)
    seq._modules["0"] = new
    got = seq(x).numpy()
    want = seq[2](fastmlp.relu(new(x))).numpy()
    assert np.allclose(got, want)
    # a ReLU replaced behind the plan's back: no longer fused
    seq._modules["1"] = nn.Identity()
    assert np.allclose(seq(x).numpy(), seq[2](new(x)).numpy())
    # a whole new registry
    seq(x)
    from collections import OrderedDict

    seq.__dict__["_modules"] = OrderedDict([("0", nn.Linear(3, 1))])
    assert np.allclose(seq(x).numpy(), seq._modules["0"](x).numpy())
