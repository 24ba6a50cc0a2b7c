"""Build and run-time configuration: threads, the CPU kernel path, ``show_config()``."""
from __future__ import annotations

import os
import sys

from .ops import cpu as _kernels

__version__ = "0.1.0"


def get_num_threads() -> int:
    """Threads the kernels use (OpenMP; ``OMP_NUM_THREADS`` sets the start value)."""
    return _kernels.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (like ``torch.set_num_threads``)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _kernels.set_num_threads(n)


def get_cpu_path() -> str:
    """The CPU kernel path in use: ``'generic'``, ``'avx2'`` or ``'avx512'``."""
    return _kernels.current_isa()


def supported_cpu_paths() -> list:
    """The kernel paths this CPU supports, best last."""
    return list(_kernels.supported_isas())


def set_cpu_path(name: str) -> None:
    """Force a kernel path (as ``FASTMLP_CPU`` does); an unsupported one raises RuntimeError."""
    if not isinstance(name, str):
        raise TypeError(f"set_cpu_path: name must be a str, got {type(name).__name__}")
    _kernels.set_isa(name)


def config_dict() -> dict:
    """Everything :func:`show_config` prints, as a dict."""
    from . import cuda

    info = dict(_kernels.build_info())
    info["version"] = __version__
    info["python"] = sys.version.split()[0]
    info["cpu_path"] = get_cpu_path()
    info["cpu_paths_available"] = supported_cpu_paths()
    info["FASTMLP_CPU"] = os.environ.get("FASTMLP_CPU")
    info["threads"] = get_num_threads()
    info["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    info["cuda_built"] = cuda.is_built()
    info["cuda_available"] = cuda.is_available()
    info["cuda_devices"] = cuda.device_count() if info["cuda_available"] else 0
    info["cuda_note"] = cuda.unavailable_reason()
    return info


def show_config(file=None) -> None:
    """Print version, compiler, OpenMP, CPU kernel paths, threads and CUDA status."""
    info = config_dict()
    out = file or sys.stdout
    omp = info["openmp"]
    lines = [
        f"fastmlp {info['version']} (Python {info['python']})",
        f"  compiler:        {info['compiler']}",
        f"  OpenMP:          {'yes (' + omp + ')' if omp else 'no'}",
        f"  CPU kernel path: {info['cpu_path']}"
        + (f" (forced by FASTMLP_CPU={info['FASTMLP_CPU']})" if info["FASTMLP_CPU"] else ""),
        f"  CPU paths here:  {', '.join(info['cpu_paths_available'])}",
        f"  threads:         {info['threads']}"
        + (f" (OMP_NUM_THREADS={info['OMP_NUM_THREADS']})" if info["OMP_NUM_THREADS"] else ""),
        f"  CUDA module:     {'built' if info['cuda_built'] else 'not built'}",
        f"  CUDA device:     "
        + (f"{info['cuda_devices']} available" if info["cuda_available"] else f"none ({info['cuda_note']})"),
    ]
    print("\n".join(lines), file=out)
