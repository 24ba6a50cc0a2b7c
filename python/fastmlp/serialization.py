"""``fastmlp.save`` / ``fastmlp.load``: state dicts in a format that cannot run code when loaded.

The file is a numpy ``.npz`` (a zip of ``.npy`` arrays) read with ``allow_pickle=False``:

* every tensor / array in the object becomes one entry ``t0``, ``t1``, …;
* the structure around them (nested dicts with str or int keys, lists, tuples, numbers, strings,
  None, booleans) is JSON, stored as the uint8 array ``__fastmlp__`` with a format version;
  tensors appear in it as ``{"__tensor__": "t0", "requires_grad": false, "parameter": false}``.

So a model's ``state_dict()``, an optimizer's ``state_dict()`` (integer keys included) and a
checkpoint dict such as ``{"model": ..., "optim": ..., "epoch": 3}`` round-trip; values may also be
PyTorch tensors (stored through ``.numpy()``, loaded as fastmlp tensors), numpy scalars and 0-d
arrays (shape ``()`` kept). Writing to a path is atomic: a short hidden temporary file in the same
directory, flushed and fsync'ed, then ``os.replace``; a crash leaves the old file intact. The file
keeps the mode of the file it replaces, or gets ``0o666 & ~umask`` when new (as ``torch.save``).

Whole models, as in PyTorch >= 2.6: ``save(model, path)`` of an ``nn.Module`` (or an object holding
one) pickles it; ``load(path)`` with the default ``weights_only=True`` never unpickles and refuses
such a file with PyTorch's "Weights only load failed" message; ``load(path, weights_only=False)``
unpickles it — which can run arbitrary code: only for files from a source you trust.

``load`` (``weights_only=True``) refuses pickles (including PyTorch's own ``torch.save`` files),
non-npz data and corrupt or crafted files with a ValueError, and never allocates much more than the
file's size: members must be stored ``.npy`` arrays that do not overlap, whose sizes add up to at
most the file's size.

Tensors are loaded onto the CPU (``map_location`` may name "cpu", or "cuda" to move them).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from .tensor import Tensor, _wrap

__all__ = ["save", "load", "WeightsOnlyLoadError"]

_META = "__fastmlp__"
_FORMAT = 1

WEIGHTS_ONLY_MESSAGE = (
    "Weights only load failed. This file can still be loaded, to do so you have two options, do "
    "those steps only if you trust the source of the checkpoint. (1) Re-running `fastmlp.load` "
    "with `weights_only` set to `False` will likely succeed, but it can result in arbitrary code "
    "execution. Do it only if you got the file from a trusted source. (2) The file is a pickle "
    "(e.g. a whole model saved with fastmlp.save(model)); save model.state_dict() instead to get "
    "a file that loads without unpickling.")


class WeightsOnlyLoadError(pickle.UnpicklingError, ValueError):
    """``load(weights_only=True)`` met a pickle (PyTorch raises ``pickle.UnpicklingError``; it is
    also a ValueError, as fastmlp's other refusals)."""


class _NeedsPickle(Exception):
    """_encode met an nn.Module: the object is saved whole, pickled (as torch.save does)."""


def _contiguous(a):
    # np.ascontiguousarray turns a 0-d array into shape (1,); this keeps ().
    return a if a.flags.c_contiguous else np.array(a, order="C")


def _is_torch_tensor(obj):
    return (type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")
            and hasattr(obj, "numpy"))


def _encode(obj, arrays):
    if isinstance(obj, Tensor):
        from .nn.parameter import Parameter

        a = obj._data if type(obj._data) is np.ndarray else obj._data.get()
        key = f"t{len(arrays)}"
        arrays[key] = _contiguous(a)
        return {"__tensor__": key, "requires_grad": bool(obj.requires_grad),
                "parameter": isinstance(obj, Parameter)}
    if _is_torch_tensor(obj):  # a PyTorch tensor: its values, loaded as a fastmlp tensor
        try:
            a = obj.detach().cpu().numpy()
        except (TypeError, RuntimeError) as e:
            raise TypeError(f"fastmlp.save: cannot convert a torch tensor of dtype {obj.dtype} "
                            f"to numpy ({e})") from None
        key = f"t{len(arrays)}"
        arrays[key] = _contiguous(a)
        return {"__tensor__": key, "requires_grad": bool(obj.requires_grad),
                "parameter": type(obj).__name__ == "Parameter"}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("fastmlp.save: numpy arrays of dtype object cannot be saved")
        if obj.dtype.kind not in "fiub" or obj.dtype.fields is not None:
            # load accepts only these, so refuse now rather than write a file it cannot read
            raise TypeError(f"fastmlp.save: numpy arrays of dtype {obj.dtype} cannot be saved; "
                            "save float, int or bool arrays")
        key = f"t{len(arrays)}"
        arrays[key] = _contiguous(obj)
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"fastmlp.save: dict keys must be str or int, got {type(k).__name__}")
            items.append([k, _encode(v, arrays)])
        return {"__dict__": items, "ordered": isinstance(obj, OrderedDict)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if hasattr(obj, "name") and type(obj).__name__ == "dtype":
        return {"__dtype__": obj.name}
    from .nn.modules import Module

    if isinstance(obj, Module):
        raise _NeedsPickle
    t = type(obj)
    tname = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    raise TypeError(f"fastmlp.save: cannot save an object of type {tname}; "
                    "fastmlp.save stores fastmlp or torch tensors, numpy arrays and scalars, "
                    "numbers, strings, None, dtypes and dicts/lists/tuples of them (e.g. a "
                    "state_dict), or a whole nn.Module (pickled)")


def _decode(obj, arrays, to_device):
    if isinstance(obj, list):
        return [_decode(v, arrays, to_device) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        a = arrays[obj["__tensor__"]]
        if obj.get("parameter"):
            from .nn.parameter import Parameter

            t = Parameter(a, requires_grad=bool(obj.get("requires_grad", True)))
        else:
            t = _wrap(a)
            if obj.get("requires_grad"):
                t.requires_grad_(True)
        if to_device is not None:
            t._data = t.to(to_device)._data
        return t
    if "__ndarray__" in obj:
        return arrays[obj["__ndarray__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays, to_device) for v in obj["__tuple__"])
    if "__dtype__" in obj:
        from . import dtypes

        return dtypes._by_name(obj["__dtype__"])
    if "__dict__" in obj:
        d = OrderedDict() if obj.get("ordered") else {}
        for k, v in obj["__dict__"]:
            d[k] = _decode(v, arrays, to_device)
        return d
    raise ValueError("fastmlp.load: malformed metadata in the file")


def _new_file_mode():
    """0o666 & ~umask, the mode open() gives a new file (read without changing the umask where
    the system says it: os.umask is process-wide and racy under threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def save(obj, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True):
    """Save ``obj`` (a state dict, or nested dicts/lists of tensors and plain values) to ``f``.

    ``f`` is a path (written atomically, keeping an existing file's mode) or a writable binary
    file object. An ``nn.Module`` (or an object holding one) is pickled whole, as ``torch.save``
    does; such a file loads only with ``load(f, weights_only=False)``, for trusted files.
    """
    if pickle_module is not None:
        raise ValueError("fastmlp.save never pickles state dicts (and pickles a whole nn.Module "
                         "with the standard pickle module only); pickle_module is not supported")
    arrays = {}
    try:
        meta = {"format": _FORMAT, "obj": _encode(obj, arrays)}
    except _NeedsPickle:
        payload = pickle.dumps(obj, protocol=pickle_protocol or pickle.DEFAULT_PROTOCOL)

        def write(fh):
            fh.write(payload)
    else:
        arrays[_META] = np.frombuffer(json.dumps(meta, allow_nan=True).encode("utf-8"),
                                      dtype=np.uint8)

        def write(fh):
            np.savez(fh, **arrays)
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.fspath(f)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        d = os.path.dirname(os.path.abspath(path))
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = _new_file_mode()
        # A short hidden name: a valid long file name must not fail for its temporary's length.
        fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                try:
                    os.fchmod(fh.fileno(), mode)
                except (OSError, AttributeError):  # no fchmod (Windows) or not permitted
                    pass
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:  # make the rename itself durable
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    else:
        write(f)


def _check_members(z, name, data):
    """Validate every member of the archive before numpy reads any of it.

    fastmlp.save writes stored (uncompressed) ``.npy`` members, so a member that is compressed,
    larger than the file, not a plain version 1/2 ``.npy`` of a non-object dtype, or whose header
    declares more (or fewer) bytes than the member holds is rejected: loading never allocates
    more than the file's size, and a zip bomb or a crafted huge shape is an error, not an
    attempt to allocate it. Members must not overlap in the file (a crafted archive whose members
    each contain the next would otherwise multiply its size) and their sizes must add up to at
    most the file's size.
    """
    file_size = len(data)
    infos = z.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"fastmlp.load: {name}: duplicate member names {dup}")
    total = sum(i.file_size for i in infos)
    if total > file_size:
        raise ValueError(f"fastmlp.load: {name}: the members declare {total} bytes in all, more "
                         f"than the file's {file_size} bytes")
    spans = []
    for info in infos:
        start = info.header_offset
        local = data[start:start + 30]
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"fastmlp.load: {name}: member {info.filename!r} has no local header "
                             f"at offset {start}")
        n_name, n_extra = struct.unpack("<HH", local[26:30])
        end = start + 30 + n_name + n_extra + info.compress_size
        if end > file_size:
            raise ValueError(f"fastmlp.load: {name}: member {info.filename!r} runs past the end "
                             "of the file")
        spans.append((start, end, info.filename))
    spans.sort()
    for (s0, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise ValueError(f"fastmlp.load: {name}: members {n0!r} and {n1!r} overlap in the "
                             "file (a crafted archive)")
    for info in infos:
        member = info.filename
        if info.flag_bits & 0x1:
            raise ValueError(f"fastmlp.load: {name}: member {member!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"fastmlp.load: {name}: member {member!r} is compressed; fastmlp "
                             "files hold stored .npy members only")
        if not member.endswith(".npy") or info.file_size > file_size:
            raise ValueError(f"fastmlp.load: {name}: unexpected member {member!r} "
                             f"({info.file_size} bytes)")
        with z.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"fastmlp.load: {name}: member {member!r} has unsupported .npy "
                                 f"version {version}")
            header = fh.tell()
        if dtype.hasobject:
            raise ValueError(f"fastmlp.load: {name}: member {member!r} holds Python objects "
                             "(dtype object); fastmlp files hold numeric arrays only")
        if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None:
            raise ValueError(f"fastmlp.load: {name}: member {member!r} has dtype {dtype}; fastmlp "
                             "files hold float, int and bool arrays only")
        count = 1
        for d in shape:
            count *= int(d)
        if header + count * dtype.itemsize != info.file_size:
            raise ValueError(f"fastmlp.load: {name}: member {member!r} declares shape {shape} of "
                             f"{dtype} ({count * dtype.itemsize} bytes) but holds "
                             f"{info.file_size - header} bytes")


def _map_device(map_location):
    """The device tensors go to (None: stay on the CPU); a clear error for CUDA without a GPU."""
    if map_location is None or callable(map_location) or isinstance(map_location, dict):
        return None
    from .tensor import _as_device

    dev = _as_device(map_location)
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        from . import cuda

        if not cuda.is_available():
            raise RuntimeError(
                f"fastmlp.load: map_location={map_location!r} asks for a CUDA device, but there is "
                f"no usable GPU (fastmlp.cuda.is_available() is False: "
                f"{cuda.unavailable_reason() or 'no CUDA device'}). On a CPU-only machine load "
                f"with map_location='cpu'.")
    return dev


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **kwargs):
    """Load what :func:`save` wrote.

    With the default ``weights_only=True`` it never unpickles: a pickled file (a whole model,
    a ``torch.save`` file, anything else) raises :class:`WeightsOnlyLoadError` with PyTorch's
    "Weights only load failed" message, other files a ValueError. ``weights_only=False`` also
    unpickles a whole-model file that ``save(model, path)`` wrote: **unpickling can run
    arbitrary code — only do this for files from a source you trust.**
    """
    if pickle_module is not None:
        raise ValueError("fastmlp.load never unpickles with weights_only=True (and unpickles "
                         "with the standard pickle module only when weights_only=False); "
                         "pickle_module is not supported")
    if not isinstance(weights_only, bool):
        raise TypeError(f"fastmlp.load: weights_only must be a bool, got "
                        f"{type(weights_only).__name__}")
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "<file object>")
    dev = _map_device(map_location)
    if isinstance(f, (str, bytes, os.PathLike)):
        with open(f, "rb") as fh:
            data = fh.read()
    else:
        data = f.read()
    if data[:1] == b"\x80":
        if weights_only:
            raise WeightsOnlyLoadError(f"fastmlp.load: {name}: " + WEIGHTS_ONLY_MESSAGE)
        obj = pickle.loads(data)  # weights_only=False: the caller trusts this file
        if dev is not None:
            from .nn.modules import Module

            if isinstance(obj, Module):
                obj.to(dev)
        return obj
    if data[:4] != b"PK\x03\x04":
        raise ValueError(f"fastmlp.load: {name} is not a fastmlp file (not an .npz archive)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            if _META + ".npy" not in names:
                hint = " (it looks like a torch.save file: load it with torch and pass the " \
                       "state dict to load_state_dict)" if any(n.endswith("data.pkl") for n in names) else ""
                raise ValueError(f"fastmlp.load: {name} is a zip/npz file without fastmlp metadata"
                                 + hint)
            _check_members(z, name, data)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta_bytes = arrays.pop(_META)
        if meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
            raise ValueError(f"fastmlp.load: {name} has malformed metadata")
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
    except ValueError as e:
        if str(e).startswith("fastmlp.load"):
            raise
        raise ValueError(f"fastmlp.load: {name} is corrupt or not a fastmlp file ({e})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError,
            KeyError, UnicodeDecodeError, RecursionError, OverflowError, TypeError, IndexError,
            AttributeError, SyntaxError, MemoryError, RuntimeError) as e:
        # zipfile/numpy/json raise all of these on damaged or crafted input
        raise ValueError(f"fastmlp.load: {name} is corrupt or not a fastmlp file "
                         f"({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"fastmlp.load: {name} has an unknown format version "
                         f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
    try:
        return _decode(meta.get("obj"), arrays, dev)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError,
            RuntimeError) as e:
        # crafted metadata (dangling references, wrong types, absurd nesting)
        raise ValueError(f"fastmlp.load: {name} has malformed content ({type(e).__name__}: {e})") from None
