"""``fastmlp.distributed``: data-parallel training across processes, shaped like ``torch.distributed``.

It runs on existing engines, no home-made networking: MPI through mpi4py (host arrays;
``pip install fastmlp[mpi]`` or ``pip install mpi4py mpich`` gives ``mpiexec``; a system MPI works
the same) and NCCL through CuPy (``cupy.cuda.nccl``, GPU arrays, bootstrapped over MPI)::

    import fastmlp.distributed as dist
    dist.init()                                   # under `mpiexec -n 4 python train.py`
    model = fastmlp.nn.parallel.DistributedDataParallel(net)
    sampler = fastmlp.utils.data.DistributedSampler(ds, shuffle=True, seed=0)
    ...
    dist.save_on_rank0({"model": net.state_dict(), ...}, "ckpt.pt")

One process started without ``mpiexec`` is world size 1: ``init()`` then needs no mpi4py, every
collective is the identity, and the same script runs unchanged.

``init()`` also makes an uncaught exception on any rank end the whole job (``MPI_Abort``) after
printing its traceback, so a failing rank never leaves the others waiting in a collective.
"""
from __future__ import annotations

import enum
import os
import sys
import time

import numpy as np

from .backends import MpiBackend, NcclBackend, SingleProcess

__all__ = ["ReduceOp", "init", "init_process_group", "destroy_process_group", "is_available",
           "is_initialized", "is_mpi_available", "is_nccl_available", "get_backend", "get_rank",
           "get_world_size", "barrier", "all_reduce", "broadcast", "all_gather",
           "broadcast_object", "save_on_rank0", "is_main_process"]


class ReduceOp(enum.Enum):
    """Reductions for :func:`all_reduce` (``torch.distributed.ReduceOp``)."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"


_backend = None  # the process group: None until init()
_prev_excepthook = None

# Environment variables that say this process was started by an MPI launcher.
# (MPICH/Intel MPI hydra, PMIx launchers such as srun --mpi=pmix, Open MPI, MVAPICH.)
_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _launched_by_mpi() -> bool:
    return any(k in os.environ for k in _MPI_ENV)


def is_available() -> bool:
    """True: the package works everywhere (world size 1 without MPI)."""
    return True


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_nccl_available() -> bool:
    try:
        from cupy.cuda import nccl  # noqa: F401
    except Exception:  # noqa: BLE001 - no CuPy, or CuPy without NCCL
        return False
    return True


def init(backend="mpi", *, comm=None, abort_on_exception=True):
    """Join the process group (``torch.distributed.init_process_group``).

    - ``backend="mpi"``: MPI through mpi4py. A process not started by an MPI launcher
      (``mpiexec``; ``srun --mpi=pmix``) is world size 1 and does not import mpi4py.
    - ``backend="nccl"``: NCCL through CuPy, one GPU per process (``local_rank % device_count``);
      rank, size and NCCL's id travel over MPI, so it needs mpi4py.
    - ``comm``: an mpi4py communicator to use instead of ``MPI.COMM_WORLD``.
    - ``abort_on_exception``: an uncaught exception on any rank ends every rank (``MPI_Abort``,
      exit code 1), instead of leaving the others blocked in a collective.

    Calling it again with the same backend is a no-op; a different backend is a RuntimeError.
    """
    global _backend, _prev_excepthook
    name = backend.value if isinstance(backend, enum.Enum) else str(backend).lower()
    if name not in ("mpi", "nccl"):
        raise ValueError(f"fastmlp.distributed.init: backend must be 'mpi' or 'nccl', got {backend!r}")
    if _backend is not None:
        want = "mpi" if name == "mpi" else "nccl"
        have = "mpi" if _backend.name in ("mpi", "single") else _backend.name
        if want != have:
            raise RuntimeError(f"fastmlp.distributed: already initialised with backend "
                               f"'{_backend.name}'; call destroy_process_group() first")
        return
    if name == "mpi":
        if comm is None and not _launched_by_mpi():
            be = SingleProcess()  # not started by mpiexec: world size 1, mpi4py not imported
        else:
            try:
                be = MpiBackend(comm)
            except ImportError as e:
                raise RuntimeError("fastmlp.distributed: this process was started by an MPI launcher "
                                   "but mpi4py is not installed; pip install mpi4py (or "
                                   "pip install 'fastmlp[mpi]')") from e
    else:
        try:
            be = NcclBackend(comm)
        except ImportError as e:
            raise RuntimeError(f"fastmlp.distributed: backend 'nccl' needs CuPy with NCCL and mpi4py "
                               f"({e})") from e
    _backend = be
    if abort_on_exception and be.size > 1 and _prev_excepthook is None:
        _prev_excepthook = sys.excepthook
        sys.excepthook = _abort_hook


init_process_group = init


def _abort_hook(exc_type, exc, tb):
    """sys.excepthook on a multi-process run: print the traceback with the rank, then end the job.

    MPI_Abort kills every rank, and mpiexec's proxy may drop what it has not forwarded yet: so the
    exception itself goes into the first line, the whole report leaves in one write to fd 2 (no
    buffering between the two), and the abort waits a moment for the proxy to pass it on."""
    be = _backend
    try:
        import traceback
        summary = "".join(traceback.format_exception_only(exc_type, exc)).strip().replace("\n", " ")
        head = (f"fastmlp.distributed: rank {getattr(be, 'rank', '?')} raised an uncaught exception "
                f"({summary}); aborting all ranks\n")
        try:
            sys.stderr.flush()
        except Exception:
            pass
        hook = _prev_excepthook or sys.__excepthook__
        if hook is sys.__excepthook__:
            data = (head + "".join(traceback.format_exception(exc_type, exc, tb))).encode("utf-8", "replace")
            fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
            while data:
                data = data[os.write(fd, data):]
        else:  # somebody's own hook (IPython, a logger): let it print, after our line
            sys.stderr.write(head)
            hook(exc_type, exc, tb)
            sys.stderr.flush()
        time.sleep(0.2)
    finally:
        if be is not None:
            be.abort(1)


def destroy_process_group():
    """Leave the process group (MPI itself stays initialised until the process exits)."""
    global _backend, _prev_excepthook
    be, _backend = _backend, None
    if be is not None:
        be.close()
    if _prev_excepthook is not None:
        sys.excepthook = _prev_excepthook
        _prev_excepthook = None


def is_initialized() -> bool:
    return _backend is not None


def _group():
    if _backend is None:
        raise RuntimeError("fastmlp.distributed: the default process group has not been initialized; "
                           "call fastmlp.distributed.init() first")
    return _backend


def _current():
    """The backend if initialised, else world size 1 (for helpers that work either way)."""
    return _backend if _backend is not None else _SINGLE


_SINGLE = SingleProcess()


def get_backend() -> str:
    return _group().name


def get_rank() -> int:
    """This process's rank (0 when not initialised, as a single process)."""
    return int(_current().rank)


def get_world_size() -> int:
    """The number of processes (1 when not initialised)."""
    return int(_current().size)


def is_main_process() -> bool:
    return get_rank() == 0


def barrier():
    _group().barrier()


class _Work:
    """What ``async_op=True`` returns: ``wait()`` completes the operation."""

    __slots__ = ("_req", "_finish")

    def __init__(self, req, finish=None):
        self._req = req
        self._finish = finish

    def wait(self, timeout=None):
        if self._req is not None:
            self._req.wait()
            self._req = None
            if self._finish is not None:
                self._finish()
                self._finish = None
        return True

    def is_completed(self):
        if self._req is None:
            return True
        if self._req.test():
            self.wait()
            return True
        return False


def _array_of(tensor, what):
    """The array to communicate in place, and a function writing it back (None when it is the
    tensor's own memory): Tensors, numpy and CuPy arrays."""
    from ..tensor import Tensor

    a = tensor._data if isinstance(tensor, Tensor) else tensor
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"fastmlp.distributed.{what}: expected a Tensor or an array, got "
                        f"{type(tensor).__name__}")
    flags = getattr(a, "flags", None)
    if getattr(flags, "c_contiguous", False) and getattr(flags, "writeable", True):
        return a, None
    if type(a) is np.ndarray and not a.flags.writeable:
        raise ValueError(f"fastmlp.distributed.{what}: the array is read-only")
    xp = np if type(a) is np.ndarray else sys.modules.get("cupy", np)
    buf = xp.ascontiguousarray(a)
    if buf is a:  # pragma: no cover - contiguous after all
        return a, None

    def back():
        a[...] = buf

    return buf, back


def _op_name(op):
    if isinstance(op, ReduceOp):
        return op.value
    if isinstance(op, str) and op.lower() in ("sum", "product", "min", "max", "avg"):
        return op.lower()
    raise ValueError(f"fastmlp.distributed: op must be a ReduceOp, got {op!r}")


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` (a Tensor, numpy or CuPy array) across all ranks, in place; every rank gets
    the result. ``async_op=True`` returns a work object whose ``wait()`` completes it."""
    be = _group()
    name = _op_name(op)
    a, back = _array_of(tensor, "all_reduce")
    if async_op:
        return _Work(be.iallreduce(a, name), back)
    be.allreduce(a, name)
    if back is not None:
        back()
    return None


def broadcast(tensor, src=0, group=None, async_op=False):
    """Copy ``tensor`` from rank ``src`` into ``tensor`` on every rank (in place)."""
    be = _group()
    if not 0 <= int(src) < be.size:
        raise ValueError(f"fastmlp.distributed.broadcast: src must be in [0, {be.size}), got {src}")
    a, back = _array_of(tensor, "broadcast")
    be.bcast(a, int(src))
    if back is not None:
        back()
    return _Work(None) if async_op else None


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[r]`` = ``tensor`` of rank r (as torch: the list is filled in place)."""
    from ..tensor import Tensor

    be = _group()
    if len(tensor_list) != be.size:
        raise ValueError(f"fastmlp.distributed.all_gather: tensor_list needs {be.size} entries (one "
                         f"per rank), got {len(tensor_list)}")
    a = tensor._data if isinstance(tensor, Tensor) else tensor
    xp = np if type(a) is np.ndarray else sys.modules.get("cupy", np)
    out = be.allgather(xp.ascontiguousarray(a))
    for r, dst in enumerate(tensor_list):
        d = dst._data if isinstance(dst, Tensor) else dst
        if tuple(d.shape) != tuple(a.shape):
            raise ValueError(f"fastmlp.distributed.all_gather: tensor_list[{r}] has shape "
                             f"{tuple(d.shape)}, expected {tuple(a.shape)}")
        d[...] = out[r]
    return _Work(None) if async_op else None


def broadcast_object(obj, src=0):
    """A picklable object from rank ``src`` on every rank (returns it)."""
    return _current().bcast_object(obj, src)


def save_on_rank0(obj, f, **kwargs):
    """``fastmlp.save(obj, f)`` on rank 0 only, then a barrier, so that every rank may read ``f``
    once this returns. The file is the same as a single process writes: load it anywhere with
    ``fastmlp.load``."""
    from ..serialization import save

    be = _current()
    err = None
    if be.rank == 0:
        try:
            save(obj, f, **kwargs)
        except BaseException as e:  # noqa: BLE001 - tell the others, then raise here
            err = e
    failed = be.bcast_object(err is not None, 0)
    if err is not None:
        raise err
    if failed:
        raise RuntimeError("fastmlp.distributed.save_on_rank0: rank 0 failed to save the checkpoint")
    be.barrier()
