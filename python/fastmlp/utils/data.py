"""``fastmlp.utils.data``: Dataset, TensorDataset, Subset, random_split, DataLoader.

A DataLoader over a ``TensorDataset`` (or a ``Subset`` of one) builds each batch by indexing the
whole arrays with the batch's index array — no Python loop per sample. Other datasets are read
sample by sample and collated (stacked) as PyTorch's ``default_collate`` does. Batches are fresh
arrays (never views into the dataset), as PyTorch's collation copies too.

Shuffling uses ``generator`` (a ``fastmlp.Generator``), else a private stream seeded by ``seed``,
else a seed drawn from the default generator each epoch (so ``fastmlp.manual_seed`` makes it
reproducible). The order differs from PyTorch's (different random streams). Worker processes are
not used: ``num_workers`` and friends are accepted and ignored.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..generator import Generator, default_generator
from ..tensor import Tensor, _wrap

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader", "default_collate",
           "Sampler", "DistributedSampler"]


class Dataset:
    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other):
        raise NotImplementedError("fastmlp: ConcatDataset is not supported")


class TensorDataset(Dataset):
    """Samples are rows of the given tensors (all with the same first dimension)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        conv = []
        for i, t in enumerate(tensors):
            if isinstance(t, np.ndarray):
                t = _wrap(t)
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: argument {i} must be a Tensor (or numpy array), "
                                f"got {type(t).__name__}")
            if t.dim() == 0:
                raise ValueError(f"TensorDataset: argument {i} is 0-d; tensors need a first "
                                 "(sample) dimension")
            conv.append(t)
        n = conv[0].shape[0]
        if any(t.shape[0] != n for t in conv):
            raise ValueError("Size mismatch between tensors: first dimensions are "
                             + ", ".join(str(t.shape[0]) for t in conv))
        self.tensors = tuple(conv)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = list(indices) if not isinstance(indices, np.ndarray) else indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[int(self.indices[idx])]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping ``Subset``s of the given lengths (or fractions)."""
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and any(
            isinstance(x, float) for x in lengths):
        sizes = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n:
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    rng = (generator or default_generator).rng
    perm = rng.permutation(n)
    out, start = [], 0
    for ln in lengths:
        out.append(Subset(dataset, perm[start:start + ln]))
        start += ln
    return out


def default_collate(batch):
    """Stack a list of samples: Tensors/arrays/numbers → a batched Tensor; tuples, lists and dicts
    are collated field by field."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        xs = [b._data for b in batch]
        if type(xs[0]) is np.ndarray:
            return _wrap(np.stack(xs))
        import cupy  # CUDA tensors in a dataset

        return _wrap(cupy.stack(xs))
    if isinstance(elem, np.ndarray):
        return _wrap(np.stack(batch))
    if isinstance(elem, (bool, np.bool_)):
        return _wrap(np.asarray(batch, dtype=np.bool_))
    if isinstance(elem, numbers.Integral):
        return _wrap(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, numbers.Real):
        return _wrap(np.asarray(batch, dtype=np.float64 if isinstance(elem, float) else None))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, dict):
        return {k: default_collate([b[k] for b in batch]) for k in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, (tuple, list)):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
                    f"lists; found {type(elem).__name__}")


def _tensor_source(dataset):
    """(arrays, index map or None) when batches can be cut by array indexing, else None."""
    if isinstance(dataset, TensorDataset):
        return [t._data for t in dataset.tensors], None
    if isinstance(dataset, Subset):
        inner = _tensor_source(dataset.dataset)
        if inner is not None:
            arrays, imap = inner
            idx = np.asarray(dataset.indices, dtype=np.int64)
            return arrays, (idx if imap is None else imap[idx])
    return None


class DataLoader:
    """Batches of a dataset: ``for inputs, labels in DataLoader(ds, batch_size=64, shuffle=True)``."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False, pin_memory_device="", seed=None):
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
                batch_size, numbers.Integral) or batch_size <= 0):
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if batch_sampler is not None:
            raise NotImplementedError("fastmlp DataLoader: batch_sampler is not supported; use a "
                                      "sampler, shuffle=True or a Subset")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"generator must be a fastmlp.Generator, got {type(generator).__name__}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.generator = generator
        self.num_workers = num_workers
        self.sampler = sampler  # an iterable of dataset indices with a len(), e.g. DistributedSampler
        self._rng = np.random.Generator(np.random.PCG64(seed)) if seed is not None else None

    def __len__(self):
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, n):
        if not self.shuffle:
            return None
        if self.generator is not None:
            rng = self.generator.rng
        elif self._rng is not None:
            rng = self._rng
        else:
            seed = int(default_generator.rng.integers(0, 2 ** 63 - 1))
            rng = np.random.Generator(np.random.PCG64(seed))
        return rng.permutation(n)

    def __iter__(self):
        if self.sampler is not None:  # the sampler's indices, in its order
            order = np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
            n = len(order)
        else:
            n = len(self.dataset)
            order = self._order(n)
        bs = self.batch_size
        if bs is None:  # automatic batching off: one sample at a time
            for i in (range(n) if order is None else order):
                yield self.dataset[int(i)]
            return
        stop = (n // bs) * bs if self.drop_last else n
        src = _tensor_source(self.dataset) if self.collate_fn is None else None
        if src is not None:
            arrays, imap = src
            for start in range(0, stop, bs):
                end = min(start + bs, n)
                if order is None and imap is None:
                    yield [_wrap(a[start:end].copy()) for a in arrays]
                    continue
                idx = np.arange(start, end) if order is None else order[start:end]
                if imap is not None:
                    idx = imap[idx]
                yield [_wrap(a[idx]) for a in arrays]
            return
        collate = self.collate_fn or default_collate
        for start in range(0, stop, bs):
            end = min(start + bs, n)
            idx = range(start, end) if order is None else order[start:end]
            yield collate([self.dataset[int(i)] for i in idx])


class Sampler:
    """Base class of index samplers: ``__iter__`` yields dataset indices, ``__len__`` counts them."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):  # pragma: no cover - abstract
        raise NotImplementedError


class DistributedSampler(Sampler):
    """The part of ``dataset`` that rank ``rank`` of ``num_replicas`` reads
    (``torch.utils.data.DistributedSampler``, same semantics).

    The index list (``0..n-1``, or a permutation seeded with ``seed + epoch`` when ``shuffle``; call
    :meth:`set_epoch` each epoch) is padded by repeating its head up to a multiple of
    ``num_replicas`` (``drop_last=False``) or cut to one (``drop_last=True``); rank r reads every
    ``num_replicas``-th index from r. Hence local batch k of every rank with ``batch_size=b``
    together are positions ``[k*b*N, (k+1)*b*N)`` of the list: one process with batch ``b*N`` on the
    same list. ``num_replicas`` and ``rank`` default to :mod:`fastmlp.distributed`'s world size and
    rank (1 and 0 when it is not initialised). The permutation is fastmlp's (not PyTorch's stream).
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        from .. import distributed as dist

        if num_replicas is None:
            num_replicas = dist.get_world_size()
        if rank is None:
            rank = dist.get_rank()
        for name, v in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"DistributedSampler: {name} must be an int, got {type(v).__name__}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.drop_last = bool(drop_last)
        n = len(dataset)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = bool(shuffle)
        self.seed = int(seed)

    def _indices(self):
        n = len(self.dataset)
        if self.shuffle:
            g = Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = g.rng.permutation(n).astype(np.int64)
        else:
            indices = np.arange(n, dtype=np.int64)
        if not self.drop_last:
            pad = self.total_size - n
            if pad > 0:
                indices = np.concatenate([indices, np.resize(indices, pad)])  # repeats the head
        else:
            indices = indices[:self.total_size]
        return indices[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """The shuffle of the next iteration is seeded with ``seed + epoch``."""
        self.epoch = int(epoch)
