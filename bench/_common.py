"""What the bench scripts (gemm.py, mlp.py, train.py, sklearn_bench.py) do before they import
fastmlp: which copy runs, where results go, and a clear exit when it cannot be imported.

Imported as ``from _common import ...``: a script's own folder comes first on sys.path, in a
checkout and in the copy installed with the package (fastmlp/bench/, which CMakeLists.txt fills
from bench/*.py; `python -m fastmlp bench` lists no script whose name starts with "_").
"""
from __future__ import annotations

import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The installed fastmlp is what runs. A checkout's python/ (an in-place build) only when asked:
# --source, or FASTMLP_BENCH_SOURCE=1 (inherited by worker processes).
if "--source" in sys.argv[1:] or os.environ.get("FASTMLP_BENCH_SOURCE", "") not in ("", "0"):
    os.environ["FASTMLP_BENCH_SOURCE"] = "1"
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
# Results default to bench/results in a checkout, ./bench-results for the installed copy.
DEFAULT_OUT = (os.path.join(HERE, "results")
               if os.path.exists(os.path.join(os.path.dirname(HERE), "pyproject.toml"))
               else os.path.join(os.getcwd(), "bench-results"))

INSTALL_HINT = ("Install it (pip install .) or, for an in-place build (cmake -DFASTMLP_INPLACE=ON), "
                "pass --source")


def require(script, *modules, hint=INSTALL_HINT):
    """Import ``modules`` (default: fastmlp) or exit naming ``script`` and the last module."""
    modules = modules or ("fastmlp",)
    try:
        for m in modules:
            importlib.import_module(m)
    except ImportError as e:  # e.g. a checkout's python/ without a built _C
        sys.exit(f"{os.path.basename(script)}: cannot import {modules[-1]} ({e}). {hint}")


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def wait_idle(pids, quiet_s=0.05, max_s=3.0):
    """Wait (up to max_s) until the processes ``pids`` use no CPU for quiet_s; False when they were
    still busy at max_s. Idle OpenBLAS, libgomp, ONNX Runtime and XLA workers spin for a while
    after a call and take the other core (or, on a VM whose two vCPUs share a physical core, half
    of this one) from the next measurement. Linux /proc only; elsewhere it returns at once."""
    pids = list(pids)
    deadline = time.perf_counter() + max_s
    before = [cpu_ticks(p) for p in pids]
    while time.perf_counter() < deadline:
        time.sleep(quiet_s)
        now = [cpu_ticks(p) for p in pids]
        if now == before:
            return True
        before = now
    return False
