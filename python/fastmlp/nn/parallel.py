"""``fastmlp.nn.parallel``: :class:`DistributedDataParallel`, data-parallel training for the eager
API over :mod:`fastmlp.distributed` (``torch.nn.parallel.DistributedDataParallel``).

At wrap time the parameters (and buffers) are broadcast from rank 0, so every rank starts from the
same weights. The parameters are split into buckets (about ``bucket_cap_mb`` each, in reverse
registration order: roughly the order backward produces their gradients). During backward, a
post-accumulate-grad hook on every parameter marks it ready; when a bucket is complete its
gradients are copied into one flat buffer and a non-blocking all-reduce of it starts (MPI
``Iallreduce``; NCCL on a communication stream), overlapping the rest of the backward pass.
Buckets start in index order on every rank, so all ranks issue the same collectives in the same
order. When the backward pass ends, every reduction is waited for and the averaged gradients are
written back into ``.grad``: ``optimizer.step()`` then sees the same gradients on every rank.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..devices import array_module, device_of
from ..tensor import _wrap
from .modules import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    __slots__ = ("params", "offsets", "flat", "ready", "request")

    def __init__(self, params, xp, dtype):
        self.params = params
        self.offsets = []
        off = 0
        for p in params:
            self.offsets.append(off)
            off += int(p._data.size)
        self.flat = xp.empty(off, dtype=dtype)
        self.ready = 0
        self.request = None


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training: call it as the module, then ``loss.backward()``
    averages the gradients across ranks before it returns.

    - ``module``: the wrapped model (``ddp.module``); its ``state_dict`` keys appear under
      ``module.`` in ``ddp.state_dict()``, as in PyTorch.
    - ``bucket_cap_mb``: the size of a gradient bucket (25 MB by default, as PyTorch).
    - ``broadcast_buffers``: also copy the module's buffers from rank 0 before every forward.
    - ``device_ids``, ``output_device``, ``dim``, ``process_group``, ``find_unused_parameters``,
      ``check_reduction``, ``gradient_as_bucket_view``, ``static_graph``: accepted for PyTorch
      compatibility. Parameters that get no gradient in a backward pass are reduced as zeros (what
      ``find_unused_parameters=True`` does), so such a model never hangs.

    Needs :func:`fastmlp.distributed.init` first. ``no_sync()`` skips the reduction (gradients
    accumulate locally; the next synchronised backward reduces the sum).
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False,
                 check_reduction=False, gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        from .. import distributed as dist

        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be an nn.Module, got "
                            f"{type(module).__name__}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) \
                or not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive number, got "
                             f"{bucket_cap_mb!r}")
        self._backend = dist._group()
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_cap_mb = bucket_cap_mb
        self.find_unused_parameters = bool(find_unused_parameters)
        self.device_ids = device_ids
        self.output_device = output_device
        self.dim = dim
        params, seen = [], set()
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        self._params = params
        self._sync_broadcast([p._data for p in params] + self._buffer_arrays())
        self._buckets = self._make_buckets(params, int(bucket_cap_mb * 1024 * 1024))
        self._where = {}
        for bi, b in enumerate(self._buckets):
            for j, p in enumerate(b.params):
                self._where[id(p)] = (bi, j)
        self._marked = set()
        self._next = 0
        self._queued = False
        self._require_sync = True
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]

    # ---- setup ---------------------------------------------------------------------------------
    def _buffer_arrays(self):
        return [b._data for b in self.module.buffers() if b is not None]

    def _sync_broadcast(self, arrays):
        """Every array from rank 0, one broadcast per dtype/device group (one flat buffer)."""
        be = self._backend
        if be.size == 1 or not arrays:
            return
        groups = {}
        for a in arrays:
            groups.setdefault((type(a), np.dtype(a.dtype)), []).append(a)
        for (_, dtype), group in groups.items():
            xp = array_module(device_of(group[0]))
            flat = xp.concatenate([a.reshape(-1) for a in group]) if len(group) > 1 \
                else xp.ascontiguousarray(group[0].reshape(-1)).copy()
            be.bcast(flat, 0)
            off = 0
            for a in group:
                a[...] = flat[off:off + a.size].reshape(a.shape)
                off += a.size

    @staticmethod
    def _make_buckets(params, cap_bytes):
        buckets, cur, cur_bytes, cur_key = [], [], 0, None
        for p in reversed(params):  # backward produces the last layers' gradients first
            a = p._data
            key = (type(a), np.dtype(a.dtype))
            nbytes = int(a.size) * a.dtype.itemsize
            if cur and (key != cur_key or cur_bytes + nbytes > cap_bytes):
                buckets.append(_Bucket(cur, array_module(device_of(cur[0]._data)), cur_key[1]))
                cur, cur_bytes = [], 0
            cur.append(p)
            cur_bytes += nbytes
            cur_key = key
        if cur:
            buckets.append(_Bucket(cur, array_module(device_of(cur[0]._data)), cur_key[1]))
        return buckets

    # ---- the module interface ------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self._queued:  # the previous backward pass raised before it finished: start afresh
            self._reset()
        if self.broadcast_buffers and self._backend.size > 1:
            bufs = self._buffer_arrays()
            if bufs:
                self._sync_broadcast(bufs)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward passes accumulate gradients locally without communication."""
        prev = self._require_sync
        self._require_sync = False
        try:
            yield
        finally:
            self._require_sync = prev

    # ---- the reduction -------------------------------------------------------------------------
    def _on_grad(self, p):
        if not self._require_sync or self._backend.size == 1:
            return
        if not self._queued:
            from ..autograd import queue_callback

            queue_callback(self._finish)
            self._queued = True
        key = id(p)
        if key in self._marked:
            raise RuntimeError("DistributedDataParallel: a parameter received its gradient twice in "
                               "one backward pass (a module used more than once in forward); "
                               "this is not supported")
        self._marked.add(key)
        bi, _ = self._where[key]
        b = self._buckets[bi]
        b.ready += 1
        # Start every complete bucket, in index order (the same collectives in the same order on
        # every rank), and let MPI progress the ones in flight.
        buckets = self._buckets
        while self._next < len(buckets) and buckets[self._next].ready == len(buckets[self._next].params):
            self._launch(buckets[self._next])
            self._next += 1
        for k in range(self._next - 1):
            req = buckets[k].request
            if req is not None:
                req.test()

    def _launch(self, b):
        flat = b.flat
        for p, off in zip(b.params, b.offsets):
            n = int(p._data.size)
            g = p.grad
            if g is None:  # unused in this backward pass: contributes zeros
                flat[off:off + n] = 0
            else:
                flat[off:off + n] = g._data.reshape(-1)
        b.request = self._backend.iallreduce(flat, "sum")

    def _finish(self):
        """End of backward: start what is left (unused parameters), wait, write the averages back."""
        self._queued = False
        buckets = self._buckets
        while self._next < len(buckets):
            self._launch(buckets[self._next])
            self._next += 1
        for b in buckets:
            b.request.wait()
            b.request = None
            b.ready = 0
            flat = b.flat
            flat /= self._backend.size
            for p, off in zip(b.params, b.offsets):
                a = p._data
                avg = flat[off:off + a.size].reshape(a.shape)
                if p.grad is None:
                    p.grad = _wrap(avg.copy())
                else:
                    p.grad._data[...] = avg
        self._marked.clear()
        self._next = 0

    def _reset(self):
        for b in self._buckets:
            if b.request is not None:
                b.request.wait()
                b.request = None
            b.ready = 0
        self._marked.clear()
        self._next = 0
        self._queued = False

    def __repr__(self):
        return f"DistributedDataParallel(\n  (module): {self.module!r}\n)"
