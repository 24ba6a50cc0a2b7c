"""Shared fixtures: every CPU kernel path this machine supports, thread-count control."""
import os

import numpy as np
import pytest

# The suite's fits choose their CPU trainer path by the compiled fixed rule, the same on every run
# and machine (the measured cost model would make the chosen path depend on a calibration);
# tests/test_costmodel.py exercises the model itself. FASTMLP_COSTMODEL=measured runs the suite
# with the model.
os.environ.setdefault("FASTMLP_COSTMODEL", "rule")

import fastmlp  # noqa: E402


@pytest.fixture(params=fastmlp.supported_cpu_paths())
def cpu_path(request):
    """Run the test once per CPU kernel path (generic, avx2, avx512 as supported)."""
    before = fastmlp.get_cpu_path()
    fastmlp.set_cpu_path(request.param)
    yield request.param
    fastmlp.set_cpu_path(before)


@pytest.fixture
def threads():
    """Set the thread count inside a test; restored afterwards."""
    before = fastmlp.get_num_threads()
    yield fastmlp.set_num_threads
    fastmlp.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def force_path(monkeypatch):
    """force_path(p): fit's native calls run on path p ('small' or 'gemm'); returns the list of
    paths the calls used."""
    from fastmlp import _C, trainer

    orig = _C.mlp_fit

    def setp(p):
        used = []

        def wrapped(*a, **kw):
            used.append(p)
            kw["path"] = p  # replaces the path the trainer chose
            return orig(*a, **kw)
        monkeypatch.setattr(trainer._kernels, "mlp_fit", wrapped)
        return used
    return setp
