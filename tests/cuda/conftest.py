"""GPU tests: everything under tests/cuda carries the `cuda` marker and skips cleanly when there is
no CUDA module, no GPU, or no CuPy."""
import pytest

import fastmlp.cuda


def pytest_collection_modifyitems(config, items):
    reason = None
    if not fastmlp.cuda.is_available():
        reason = f"no CUDA device: {fastmlp.cuda.unavailable_reason()}"
    else:
        try:
            import cupy  # noqa: F401
        except ImportError:
            reason = "CuPy is not installed"
    for item in items:
        if "tests/cuda/" not in str(item.fspath).replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.cuda)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
