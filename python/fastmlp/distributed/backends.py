"""The communication engines behind :mod:`fastmlp.distributed`: arrays in, collectives done by an
existing library (no home-made networking).

- :class:`SingleProcess`: world size 1, every collective is the identity (no import of mpi4py).
- :class:`MpiBackend`: MPI through mpi4py, host (numpy) arrays; works under ``mpiexec -n N``
  with any MPI (``pip install mpi4py mpich`` brings one).
- :class:`NcclBackend`: NCCL through CuPy (``cupy.cuda.nccl``) for GPU arrays, one GPU per
  process, bootstrapped over MPI (rank, size and NCCL's unique id come from mpi4py).

Every backend offers: ``rank``, ``size``, ``allreduce(a, op)`` (in place), ``iallreduce(a, op)``
(in place, returns a request with ``wait()``), ``bcast(a, src)`` (in place), ``allgather(a)``
(a new array shaped ``(size, *a.shape)``), ``barrier()``, ``bcast_object(obj, src)``, ``abort(code)``.
``op`` is one of the strings "sum", "product", "min", "max", "avg".
"""
from __future__ import annotations

import numpy as np

__all__ = ["SingleProcess", "MpiBackend", "NcclBackend", "OPS"]

OPS = ("sum", "product", "min", "max", "avg")


class _Done:
    """A request that has already completed."""

    __slots__ = ()

    def wait(self):
        return None

    def test(self):
        return True


_DONE = _Done()


class SingleProcess:
    """World size 1: every collective leaves its array as it is."""

    name = "single"
    rank = 0
    size = 1
    local_rank = 0

    def allreduce(self, a, op="sum"):
        return a

    def iallreduce(self, a, op="sum"):
        return _DONE

    def bcast(self, a, src=0):
        return a

    def allgather(self, a):
        return a.reshape((1,) + a.shape).copy()

    def barrier(self):
        return None

    def bcast_object(self, obj, src=0):
        return obj

    def abort(self, code=1):  # pragma: no cover - ends the process
        import os

        os._exit(code)

    def close(self):
        return None


class _MpiRequest:
    __slots__ = ("req", "after")

    def __init__(self, req, after=None):
        self.req = req
        self.after = after

    def wait(self):
        req = self.req
        if req is not None:
            req.Wait()
            self.req = None
            if self.after is not None:
                self.after()
                self.after = None

    def test(self):
        if self.req is None:
            return True
        done = self.req.Test()
        if done:
            self.wait()
        return done


class MpiBackend:
    """MPI collectives through mpi4py on host arrays (C-contiguous; the callers ensure it)."""

    name = "mpi"

    def __init__(self, comm=None):
        from mpi4py import MPI  # initialises MPI (MPI_Init_thread) on first import

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        try:
            local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            self.local_rank = local.Get_rank()
            local.Free()
        except Exception:  # noqa: BLE001 - an MPI without shared-memory split: assume one per node
            self.local_rank = 0
        self._ops = {"sum": MPI.SUM, "product": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX,
                     "avg": MPI.SUM}

    def allreduce(self, a, op="sum"):
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self._ops[op])
        if op == "avg":
            _divide(a, self.size)
        return a

    def iallreduce(self, a, op="sum"):
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self._ops[op])
        after = (lambda: _divide(a, self.size)) if op == "avg" else None
        return _MpiRequest(req, after)

    def bcast(self, a, src=0):
        self.comm.Bcast(a, root=src)
        return a

    def allgather(self, a):
        out = np.empty((self.size,) + a.shape, dtype=a.dtype)
        self.comm.Allgather(a, out)
        return out

    def barrier(self):
        self.comm.Barrier()

    def bcast_object(self, obj, src=0):
        return self.comm.bcast(obj, root=src)

    def abort(self, code=1):  # pragma: no cover - ends every process of the job
        self.comm.Abort(code)

    def close(self):
        return None


def _divide(a, n):
    if a.dtype.kind == "f":
        a /= n
    else:
        a //= n


class _NcclRequest:
    __slots__ = ("backend", "event", "after")

    def __init__(self, backend, event, after):
        self.backend = backend
        self.event = event
        self.after = after

    def wait(self):
        if self.event is None:
            return
        # The caller's stream waits for the reduction on the communication stream (no host sync).
        self.backend.cupy.cuda.get_current_stream().wait_event(self.event)
        self.event = None
        if self.after is not None:
            self.after()
            self.after = None

    def test(self):
        if self.event is None:
            return True
        if self.event.done:
            self.wait()
            return True
        return False


class NcclBackend:
    """NCCL collectives through CuPy on GPU arrays, one GPU per process.

    Rank and size come from MPI (mpi4py; ``mpiexec -n N`` starts the processes), which also carries
    NCCL's unique id from rank 0 to every rank and serves ``barrier`` and ``bcast_object``. Each
    process uses GPU ``local_rank % device_count``. Collectives run on CuPy's current stream; the
    non-blocking all-reduce runs on a separate communication stream ordered after the current one
    by an event, and its ``wait()`` orders the current stream after it (no host synchronisation).

    ``cupy`` and ``mpi`` may be passed in (tests give stand-ins); by default they are imported.
    """

    name = "nccl"

    def __init__(self, comm=None, *, cupy=None, mpi=None):
        if cupy is None:
            import cupy
        self.cupy = cupy
        self.nccl = cupy.cuda.nccl
        self.mpi = mpi if mpi is not None else MpiBackend(comm)
        self.rank = self.mpi.rank
        self.size = self.mpi.size
        self.local_rank = self.mpi.local_rank
        ndev = cupy.cuda.runtime.getDeviceCount()
        if ndev < 1:
            raise RuntimeError("fastmlp.distributed: backend 'nccl' found no CUDA device")
        self.device = self.local_rank % ndev
        cupy.cuda.Device(self.device).use()
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = self.mpi.bcast_object(uid, 0)
        self.comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        n = self.nccl
        self._ops = {"sum": n.NCCL_SUM, "product": n.NCCL_PROD, "min": n.NCCL_MIN,
                     "max": n.NCCL_MAX, "avg": n.NCCL_SUM}
        self._types = {np.dtype(np.float32): n.NCCL_FLOAT32, np.dtype(np.float64): n.NCCL_FLOAT64,
                       np.dtype(np.float16): n.NCCL_FLOAT16, np.dtype(np.int32): n.NCCL_INT32,
                       np.dtype(np.int64): n.NCCL_INT64, np.dtype(np.uint8): n.NCCL_UINT8,
                       np.dtype(np.int8): n.NCCL_INT8}

    def _buffer(self, a, what):
        cai = getattr(a, "__cuda_array_interface__", None)
        if cai is None or type(a) is np.ndarray:
            raise TypeError(f"fastmlp.distributed: backend 'nccl' {what}s GPU arrays (CuPy or "
                            f"CUDA Tensors), got a {type(a).__name__}; use backend='mpi' for host "
                            f"arrays")
        dt = np.dtype(a.dtype)
        if dt not in self._types:
            raise TypeError(f"fastmlp.distributed: backend 'nccl' cannot {what} dtype {dt}")
        return int(cai["data"][0]), int(a.size), self._types[dt]

    def allreduce(self, a, op="sum"):
        ptr, count, dt = self._buffer(a, "reduce")
        stream = self.cupy.cuda.get_current_stream()
        self.comm.allReduce(ptr, ptr, count, dt, self._ops[op], stream.ptr)
        if op == "avg":
            _divide(a, self.size)
        return a

    def iallreduce(self, a, op="sum"):
        ptr, count, dt = self._buffer(a, "reduce")
        cuda = self.cupy.cuda
        ready = cuda.Event(disable_timing=True)
        ready.record(cuda.get_current_stream())
        self.stream.wait_event(ready)
        self.comm.allReduce(ptr, ptr, count, dt, self._ops[op], self.stream.ptr)
        done = cuda.Event(disable_timing=True)
        done.record(self.stream)
        after = (lambda: _divide(a, self.size)) if op == "avg" else None
        return _NcclRequest(self, done, after)

    def bcast(self, a, src=0):
        ptr, count, dt = self._buffer(a, "broadcast")
        self.comm.broadcast(ptr, ptr, count, dt, src, self.cupy.cuda.get_current_stream().ptr)
        return a

    def allgather(self, a):
        ptr, count, dt = self._buffer(a, "gather")
        out = self.cupy.empty((self.size,) + tuple(a.shape), dtype=a.dtype)
        optr = int(out.__cuda_array_interface__["data"][0])
        self.comm.allGather(ptr, optr, count, dt, self.cupy.cuda.get_current_stream().ptr)
        return out

    def barrier(self):
        self.cupy.cuda.get_current_stream().synchronize()
        self.mpi.barrier()

    def bcast_object(self, obj, src=0):
        return self.mpi.bcast_object(obj, src)

    def abort(self, code=1):  # pragma: no cover - ends every process of the job
        self.mpi.abort(code)

    def close(self):
        comm, self.comm = self.comm, None
        if comm is not None:
            comm.destroy()
