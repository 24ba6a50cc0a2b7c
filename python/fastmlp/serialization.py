"""``fastmlp.save`` / ``fastmlp.load``: state dicts in a format that cannot run code when loaded.

The file is a numpy ``.npz`` (a zip of ``.npy`` arrays) read with ``allow_pickle=False``:

* every tensor / array in the object becomes one entry ``t0``, ``t1``, …;
* the structure around them (nested dicts with str or int keys, lists, tuples, numbers, strings,
  None, booleans) is JSON, stored as the uint8 array ``__fastmlp__`` with a format version;
  tensors appear in it as ``{"__tensor__": "t0", "requires_grad": false, "parameter": false}``.

So a model's ``state_dict()``, an optimizer's ``state_dict()`` (integer keys included) and a
checkpoint dict such as ``{"model": ..., "optim": ..., "epoch": 3}`` round-trip. Writing to a
path is atomic: a temporary file in the same directory, flushed and fsync'ed, then
``os.replace``; a crash leaves the old file intact. ``load`` refuses pickles (including PyTorch's
own ``torch.save`` files), non-npz data and corrupt files with a ValueError.

Tensors are loaded onto the CPU (``map_location`` may name "cpu", or "cuda" to move them).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from .tensor import Tensor, _wrap

__all__ = ["save", "load"]

_META = "__fastmlp__"
_FORMAT = 1


def _encode(obj, arrays):
    if isinstance(obj, Tensor):
        from .nn.parameter import Parameter

        a = obj._data if type(obj._data) is np.ndarray else obj._data.get()
        key = f"t{len(arrays)}"
        arrays[key] = np.ascontiguousarray(a)
        return {"__tensor__": key, "requires_grad": bool(obj.requires_grad),
                "parameter": isinstance(obj, Parameter)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("fastmlp.save: numpy arrays of dtype object cannot be saved")
        if obj.dtype.kind not in "fiub" or obj.dtype.fields is not None:
            # load accepts only these, so refuse now rather than write a file it cannot read
            raise TypeError(f"fastmlp.save: numpy arrays of dtype {obj.dtype} cannot be saved; "
                            "save float, int or bool arrays")
        key = f"t{len(arrays)}"
        arrays[key] = np.ascontiguousarray(obj)
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
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if hasattr(obj, "name") and type(obj).__name__ == "dtype":
        return {"__dtype__": obj.name}
    raise TypeError(f"fastmlp.save: cannot save an object of type {type(obj).__name__}; save "
                    "tensors, arrays, numbers, strings and dicts/lists of them (e.g. a state_dict)")


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


def save(obj, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True):
    """Save ``obj`` (a state dict, or nested dicts/lists of tensors and plain values) to ``f``.

    ``f`` is a path (written atomically) or a writable binary file object.
    """
    if pickle_module is not None:
        raise ValueError("fastmlp.save never pickles; pickle_module is not supported")
    arrays = {}
    meta = {"format": _FORMAT, "obj": _encode(obj, arrays)}
    arrays[_META] = np.frombuffer(json.dumps(meta, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.fspath(f)
        if isinstance(path, bytes):
            path = path.decode()
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
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
        np.savez(f, **arrays)


def _check_members(z, name, file_size):
    """Validate every member of the archive before numpy reads any of it.

    fastmlp.save writes stored (uncompressed) ``.npy`` members, so a member that is compressed,
    larger than the file, not a plain version 1/2 ``.npy`` of a non-object dtype, or whose header
    declares more (or fewer) bytes than the member holds is rejected: loading never allocates
    more than the file's size, and a zip bomb or a crafted huge shape is an error, not an
    attempt to allocate it.
    """
    for info in z.infolist():
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


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **kwargs):
    """Load what :func:`save` wrote. Never unpickles: other files raise ValueError."""
    if pickle_module is not None:
        raise ValueError("fastmlp.load never unpickles; pickle_module is not supported")
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "<file object>")
    if isinstance(f, (str, bytes, os.PathLike)):
        with open(f, "rb") as fh:
            data = fh.read()
    else:
        data = f.read()
    if data[:2] == b"\x80\x02" or data[:1] == b"\x80":
        raise ValueError(f"fastmlp.load: {name} is a pickle; fastmlp never unpickles (it can run "
                         "code). Save with fastmlp.save instead.")
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
            _check_members(z, name, len(data))
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
    dev = None
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        from .tensor import _as_device

        dev = _as_device(map_location)
        if dev.type == "cpu":
            dev = None
    try:
        return _decode(meta.get("obj"), arrays, dev)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError,
            RuntimeError) as e:
        # crafted metadata (dangling references, wrong types, absurd nesting)
        raise ValueError(f"fastmlp.load: {name} has malformed content ({type(e).__name__}: {e})") from None
