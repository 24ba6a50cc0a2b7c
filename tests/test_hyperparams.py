"""The float32 hyperparameter rules have one home, fastmlp.hyperparams (issue 11's structure rule):
the whole-job checks (check_f32 / f32_problem) and the optimizers' PyTorch-worded rules live there
and every caller uses that module."""
import importlib
import pathlib

import numpy as np
import pytest

import fastmlp
from fastmlp import hyperparams as hp


def test_one_module():
    with pytest.raises(ImportError):
        importlib.import_module("fastmlp.optim.hyperparams")
    root = pathlib.Path(fastmlp.__file__).parent
    assert not (root / "optim" / "hyperparams.py").exists()
    for name in ("sgd", "adam", "rmsprop", "adagrad", "lbfgs"):
        mod = importlib.import_module(f"fastmlp.optim.{name}")
        assert mod.hp is hp


def test_whole_job_messages():
    assert hp.check_f32(0.5, "lr") == 0.5
    with pytest.raises(ValueError, match=r"fit: invalid lr: 1e\+39 overflows float32"):
        hp.check_f32(1e39, "lr")
    with pytest.raises(ValueError, match="underflows to 0 in float32"):
        hp.check_f32(1e-50, "alpha", where="MLPRegressor")
    with pytest.raises(TypeError, match="fit: lr must be a number, got str"):
        hp.check_f32("x", "lr")
    assert hp.f32_problem(float("inf")) == "must be finite"


def test_optimizer_messages():
    assert hp.lr(np.float32(0.25)) == 0.25
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        hp.lr(-1)
    with pytest.raises(ValueError, match="Invalid learning rate: 1e\\+39 \\(not a finite float32"):
        hp.lr(1e39)
    with pytest.raises(ValueError, match="Invalid epsilon value: -1"):
        hp.eps(-1.0)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 0: 1.5"):
        hp.betas((1.5, 0.9))
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        hp.sgd(0.1, 0.0, 0.0, 0.0, True)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        fastmlp.optim.Adam([fastmlp.nn.Parameter(fastmlp.zeros(2))], lr=-1)
