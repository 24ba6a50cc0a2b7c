"""Checkpoints: fastmlp.save never loses the previous file, and fastmlp.load runs no code and
turns every damaged, truncated or crafted file into a clear ValueError.

Loads of untrusted bytes run in a child interpreter (tests/crash_isolation.py) under an address
space limit, so a crash or a runaway allocation fails the test instead of the run.
"""
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.nn as nn
import fastmlp.optim as optim
from crash_isolation import child_env, run_cases


def make_checkpoint():
    fastmlp.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = fastmlp.randn(8, 5), fastmlp.randn(8, 2)
    for _ in range(2):
        opt.zero_grad()
        nn.MSELoss()(model(x), y).backward()
        opt.step()
    return model, opt, {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3,
                        "note": "ünïcode", "nested": [1, 2.5, None, True, (3, "x")]}


def assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        va, vb = a[k], b[k]
        if hasattr(va, "numpy"):
            assert va.dtype == vb.dtype and tuple(va.shape) == tuple(vb.shape)
            np.testing.assert_array_equal(va.detach().numpy(), vb.detach().numpy())
        elif isinstance(va, dict):
            assert_same_state(va, vb)
        else:
            assert va == vb


def test_roundtrip_model_and_optimizer(tmp_path):
    model, opt, ckpt = make_checkpoint()
    path = tmp_path / "ckpt.pt"
    fastmlp.save(ckpt, path)
    back = fastmlp.load(path)
    assert_same_state(back["model"], ckpt["model"])
    assert back["epoch"] == 3 and back["note"] == "ünïcode"
    assert back["nested"] == [1, 2.5, None, True, (3, "x")]
    model2 = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    model2.load_state_dict(back["model"])
    opt2 = optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optim"])
    x = fastmlp.randn(4, 5)
    np.testing.assert_array_equal(model(x).detach().numpy(), model2(x).detach().numpy())
    # the restored momentum continues the run exactly
    y = fastmlp.randn(4, 2)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        nn.MSELoss()(m(x), y).backward()
        o.step()
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), model2[0].weight.detach().numpy())


def test_save_to_file_object_and_no_temp_files_left(tmp_path):
    _, _, ckpt = make_checkpoint()
    buf = io.BytesIO()
    fastmlp.save(ckpt["model"], buf)
    buf.seek(0)
    assert_same_state(fastmlp.load(buf), ckpt["model"])
    fastmlp.save(ckpt["model"], tmp_path / "a.pt")
    fastmlp.save(ckpt["model"], tmp_path / "a.pt")  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


# ---- atomic save: SIGKILL in the middle of writing leaves the old or the new file ------------

SAVER = r"""
import sys, numpy as np, fastmlp
path = sys.argv[1]
big = {f"w{i}": fastmlp.zeros(256, 1024) for i in range(24)}   # ~24 MiB per file
version = 0
while True:
    for t in big.values():
        t.fill_(float(version))
    fastmlp.save({"version": version, "state": big}, path)
    if version == 0:
        print("ready", flush=True)
    version += 1
"""


def check_complete(path):
    d = fastmlp.load(path)
    v = d["version"]
    assert sorted(d["state"]) == sorted(f"w{i}" for i in range(24))
    for t in d["state"].values():
        a = t.numpy()
        assert a.shape == (256, 1024) and (a == v).all(), "a checkpoint mixes two versions"
    return v


def test_sigkill_mid_save_leaves_a_complete_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    rng = np.random.default_rng(0)
    versions = []
    env = child_env()
    for round_ in range(6):
        p = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, env=env)
        try:
            assert p.stdout.readline().strip() == b"ready"
            time.sleep(float(rng.uniform(0.0, 0.4)))  # somewhere inside one of the next saves
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        versions.append(check_complete(path))
    assert all(v >= 0 for v in versions)
    # only the checkpoint and hidden temp files of killed saves remain
    assert {q.name for q in tmp_path.iterdir() if not q.name.startswith(".")} == {"ckpt.pt"}


# ---- load never runs code --------------------------------------------------------------------

class _Marker:
    """Unpickling this creates the marker file (what a malicious checkpoint would do)."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_pickle(marker, protocol):
    m = _Marker()
    m.path = str(marker)
    return pickle.dumps({"state": m}, protocol=protocol)


@pytest.mark.parametrize("kind", ["pickle0", "pickle2", "pickle5", "npz_object_member", "zip_data_pkl",
                                  "npz_meta_pickled", "npy_object"])
def test_load_runs_no_code(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if kind.startswith("pickle"):
        path.write_bytes(_evil_pickle(marker, int(kind[-1])))
    elif kind == "npz_object_member":
        m = _Marker()
        m.path = str(marker)
        meta = np.frombuffer(json.dumps({"format": 1, "obj": {"__ndarray__": "t0"}}).encode(), np.uint8)
        with open(path, "wb") as f:
            np.savez(f, __fastmlp__=meta, t0=np.array([m], dtype=object))
    elif kind == "zip_data_pkl":  # the layout of torch.save files
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", _evil_pickle(marker, 2))
            z.writestr("archive/version", "3\n")
    elif kind == "npz_meta_pickled":
        m = _Marker()
        m.path = str(marker)
        with zipfile.ZipFile(path, "w") as z:
            b = io.BytesIO()
            np.save(b, np.array([m], dtype=object), allow_pickle=True)
            z.writestr("__fastmlp__.npy", b.getvalue())
    elif kind == "npy_object":
        m = _Marker()
        m.path = str(marker)
        with open(path, "wb") as f:
            np.save(f, np.array([m], dtype=object), allow_pickle=True)
    code = f"fastmlp.load({str(path)!r})"
    r = run_cases([(kind, code)])[kind]
    # a pickle: WeightsOnlyLoadError (an UnpicklingError and a ValueError, PyTorch's message)
    assert r["outcome"] == "raised" and r["type"] in ("ValueError", "WeightsOnlyLoadError"), r
    assert r["msg"].startswith("fastmlp.load:"), r["msg"]
    assert not marker.exists(), "loading the file ran code"
    # and a state dict loaded from it would not have been usable anyway
    assert "Traceback" not in r.get("stderr", "")


def test_torch_save_file_is_refused_with_a_hint(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.pt"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="looks like a torch.save file"):
        fastmlp.load(path)


# ---- crafted files ---------------------------------------------------------------------------

def _npy_bytes(arr):
    b = io.BytesIO()
    np.lib.format.write_array(b, arr, allow_pickle=False)
    return b.getvalue()


def _meta(obj):
    return _npy_bytes(np.frombuffer(json.dumps({"format": 1, "obj": obj}).encode(), np.uint8))


def _zip(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _huge_shape_member():
    # a valid .npy header declaring 2**40 float32 but holding 16 bytes
    raw = _npy_bytes(np.zeros(4, np.float32))
    hdr = np.lib.format.header_data_from_array_1_0(np.zeros(4, np.float32))
    hdr["shape"] = (2**40,)
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, hdr)
    return b.getvalue() + raw[-16:]


def _set_compression(path, method):
    """Patch the compression method of every member (local and central headers)."""
    b = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = b.find(sig)
        while i >= 0:
            b[i + off:i + off + 2] = method.to_bytes(2, "little")
            i = b.find(sig, i + 4)
    path.write_bytes(bytes(b))


CRAFTED = {
    "not-a-zip": lambda p: p.write_bytes(b"hello world, not a checkpoint"),
    "empty": lambda p: p.write_bytes(b""),
    "zip-without-metadata": lambda p: _zip(p, {"t0.npy": _npy_bytes(np.ones(3, np.float32))}),
    "metadata-not-json": lambda p: _zip(p, {"__fastmlp__.npy": _npy_bytes(np.frombuffer(b"{nope", np.uint8))}),
    "metadata-not-utf8": lambda p: _zip(p, {"__fastmlp__.npy": _npy_bytes(np.frombuffer(b"\xff\xfe", np.uint8))}),
    "metadata-float-array": lambda p: _zip(p, {"__fastmlp__.npy": _npy_bytes(np.zeros((2, 2)))}),
    "metadata-wrong-version": lambda p: _zip(p, {"__fastmlp__.npy": _npy_bytes(np.frombuffer(b'{"format": 99, "obj": 1}', np.uint8))}),
    "metadata-list": lambda p: _zip(p, {"__fastmlp__.npy": _npy_bytes(np.frombuffer(b"[1, 2]", np.uint8))}),
    "dangling-tensor-ref": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__tensor__": "t9"})}),
    "dict-items-malformed": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__dict__": [[1]]})}),
    "dict-unhashable-key": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__dict__": [[{"a": 1}, 2]]})}),
    "tuple-not-list": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__tuple__": 5})}),
    "unknown-dtype-name": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__dtype__": "bogus"})}),
    "unknown-tag": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__what__": 1})}),
    "deep-nesting": lambda p: _zip(p, {"__fastmlp__.npy": _npy_bytes(np.frombuffer(
        b'{"format": 1, "obj": ' + b"[" * 200000 + b"]" * 200000 + b"}", np.uint8))}),
    "string-tensor": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__tensor__": "t0"}), "t0.npy": _npy_bytes(np.array(["ab"]))}),
    "complex-parameter": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__tensor__": "t0", "parameter": True}),
                                            "t0.npy": _npy_bytes(np.array([1j]))}),
    "structured-dtype": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__ndarray__": "t0"}),
                                           "t0.npy": _npy_bytes(np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]))}),
    "huge-declared-shape": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__tensor__": "t0"}), "t0.npy": _huge_shape_member()}),
    "zip-bomb-member": lambda p: _zip(p, {"__fastmlp__.npy": _meta({"__tensor__": "t0"}),
                                          "t0.npy": _npy_bytes(np.zeros(64 << 20, np.float32))}, zipfile.ZIP_DEFLATED),
    "unsupported-compression": lambda p: (_zip(p, {"__fastmlp__.npy": _meta(1)}), _set_compression(p, 99)),
    "non-npy-member": lambda p: _zip(p, {"__fastmlp__.npy": _meta(1), "evil.sh": b"rm -rf /"}),
}


@pytest.fixture(scope="module")
def crafted_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("crafted")
    cases = []
    for name, make in CRAFTED.items():
        path = d / f"{name}.pt"
        make(path)
        cases.append((name, f"fastmlp.load({str(path)!r})"))
    return run_cases(cases)


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_file_is_a_clear_error(crafted_results, name):
    r = crafted_results[name]
    assert r["outcome"] == "raised", r
    assert r["type"] == "ValueError", f"{r['type']}: {r['msg']}\n{r.get('tb', '')}"
    assert r["msg"].startswith("fastmlp.load:"), r["msg"]


def test_save_refuses_what_load_would_refuse(tmp_path):
    for bad in (np.array(["a"]), np.ones(2, np.complex64), np.zeros(2, dtype=[("a", "f4")]),
                np.array([None], dtype=object)):
        with pytest.raises(TypeError, match="cannot be saved"):
            fastmlp.save({"x": bad}, tmp_path / "x.pt")
        assert not (tmp_path / "x.pt").exists()


# ---- fuzzing: random byte flips and truncations of a valid file -------------------------------

FUZZ = r"""
import io, zipfile
import numpy as np
import fastmlp
data = open(__PATH__, "rb").read()
good = fastmlp.load(io.BytesIO(data))
rng = np.random.default_rng(__SEED__)
counts = {"ValueError": 0, "same": 0}
for i in range(__N__):
    b = bytearray(data)
    kind = i % 3
    if kind == 0:      # truncate
        b = b[: int(rng.integers(0, len(b)))]
    else:              # flip 1..8 random bytes (kind 2: only in the zip structure / headers)
        span = len(b) if kind == 1 else min(len(b), 400)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, span)) if kind == 1 or rng.random() < 0.5 else len(b) - 1 - int(rng.integers(0, 200))
            b[pos] ^= int(rng.integers(1, 256))
    try:
        out = fastmlp.load(io.BytesIO(bytes(b)))
    except ValueError as e:
        assert str(e).startswith("fastmlp.load:"), repr(e)
        counts["ValueError"] += 1
        continue
    # a damaged file that still loads must be exactly the saved data (zip CRCs cover the data)
    assert list(out) == list(good), (i, list(out))
    for k in good:
        a, g = out[k], good[k]
        if hasattr(g, "numpy"):
            assert a.dtype == g.dtype and np.array_equal(a.numpy(), g.numpy(), equal_nan=True), (i, k)
        else:
            assert a == g, (i, k)
    counts["same"] += 1
print(counts)
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzzed_files_load_exactly_or_fail_cleanly(tmp_path, seed):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    state = dict(model.state_dict())
    state["epoch"] = 7
    path = tmp_path / "good.pt"
    fastmlp.save(state, path)
    code = FUZZ.replace("__PATH__", repr(str(path))).replace("__SEED__", str(seed)).replace("__N__", "3000")
    r = run_cases([("fuzz", code)], timeout=300)["fuzz"]
    assert r["outcome"] == "ok", f"{r['outcome']} {r.get('type')}: {r.get('msg')}\n{r.get('tb') or r.get('stderr')}"
