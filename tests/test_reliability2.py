"""Reliability, round two (issue 16, and issue 12's whole-model checkpoints): module registration
order and cached plans, hyperparameters in float32, frozen parameters in fit, exceptions across
processes, Ctrl-C and interpreter exit during a native epoch, checkpoint files, the CLI's input
files, and non-Tensor inputs."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import nn


# ---- 1. registration order and cached plans --------------------------------------------------

def test_seq_setitem_keeps_position():
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    new = nn.Linear(3, 3)
    seq[0] = new
    assert list(seq._modules) == ["0", "1", "2"]
    assert seq[0] is new
    x = fastmlp.randn(4, 3)
    want = seq[2](fastmlp.relu(new(x)))
    assert np.allclose(seq(x).numpy(), want.numpy())


def test_attribute_reassignment_keeps_position():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 4)
            self.b = nn.Linear(4, 1)
            self.w = nn.Parameter(fastmlp.ones(1))
            self.v = nn.Parameter(fastmlp.ones(1))

    m = Net()
    m.a = nn.Linear(2, 4)
    assert list(m._modules) == ["a", "b"]
    m.w = nn.Parameter(fastmlp.zeros(1))
    assert [k for k, _ in m.named_parameters()][:2] == ["w", "v"]
    assert list(m.state_dict())[2:4] == ["a.weight", "a.bias"]
    m.add_module("a", nn.Linear(2, 4))
    assert list(m._modules) == ["a", "b"]


def test_plan_does_not_outlive_modules_write():
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    x = fastmlp.randn(5, 3)
    seq(x)  # builds and caches the fused plan
    new = nn.Linear(3, 3)
    seq._modules["0"] = new
    got = seq(x).numpy()
    want = seq[2](fastmlp.relu(new(x))).numpy()
    assert np.allclose(got, want)
    # a ReLU replaced behind the plan's back: no longer fused
    seq._modules["1"] = nn.Identity()
    assert np.allclose(seq(x).numpy(), seq[2](new(x)).numpy())
    # a whole new registry
    seq(x)
    from collections import OrderedDict

    seq.__dict__["_modules"] = OrderedDict([("0", nn.Linear(3, 1))])
    assert np.allclose(seq(x).numpy(), seq._modules["0"](x).numpy())


# ---- 2. hyperparameters in float32, huge ints, frozen parameters ----------------------------

def _data(n=64, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, (X @ rng.standard_normal((d, 1))).astype(np.float32)


@pytest.mark.parametrize("kw,name", [({"lr": 1e39}, "lr"), ({"momentum": 1e39}, "momentum"),
                                     ({"weight_decay": 1e39}, "weight_decay"),
                                     ({"dampening": 1e39}, "dampening"),
                                     ({"lr": 1e-50}, "lr"), ({"lr": 10 ** 400}, "lr")])
def test_fit_hyperparameters_checked_in_float32(kw, name):
    X, y = _data()
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    args = dict(epochs=1, batch_size=8, lr=0.01, progress=False)
    args.update(kw)
    before = m[0].weight.numpy().copy()
    with pytest.raises(ValueError, match=name):
        fastmlp.fit(m, X, y, **args)
    assert np.array_equal(before, m[0].weight.numpy())


@pytest.mark.parametrize("kw,name", [({"batch_size": 2 ** 63}, "batch_size"),
                                     ({"epochs": 2 ** 64}, "epochs"),
                                     ({"batch_size": 10 ** 30}, "batch_size")])
def test_fit_huge_ints_name_the_argument(kw, name):
    X, y = _data()
    m = nn.Sequential(nn.Linear(3, 1))
    args = dict(epochs=1, batch_size=8, lr=0.01, progress=False)
    args.update(kw)
    with pytest.raises(ValueError, match=name) as ei:
        fastmlp.fit(m, X, y, **args)
    assert "incompatible function arguments" not in str(ei.value)


def test_fit_huge_seed_still_accepted():
    X, y = _data()
    fastmlp.fit(nn.Sequential(nn.Linear(3, 1)), X, y, epochs=1, batch_size=8, lr=0.01,
                seed=2 ** 70, progress=False)


def test_sgd_and_regressor_refuse_float32_overflow():
    p = nn.Parameter(fastmlp.ones(2))
    with pytest.raises(ValueError, match="learning rate"):
        fastmlp.optim.SGD([p], lr=1e39)
    with pytest.raises(ValueError, match="momentum"):
        fastmlp.optim.SGD([p], lr=0.1, momentum=1e39)
    with pytest.raises(ValueError, match="weight_decay"):
        fastmlp.optim.SGD([p], lr=0.1, weight_decay=1e39)
    opt = fastmlp.optim.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = 1e39  # changed after construction: refused at step
    p.grad = fastmlp.ones(2)
    with pytest.raises(ValueError, match="learning rate"):
        opt.step()
    assert np.array_equal(p.numpy(), np.ones(2, np.float32))
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPRegressor

    X, y = _data()
    for kw, name in (({"learning_rate_init": 1e39}, "learning_rate_init"), ({"alpha": 1e39}, "alpha")):
        with pytest.raises(ValueError, match=name):
            MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, **kw).fit(X, y.ravel())


def _eager_sgd(model, X, y, perm, batch, epochs, **opt):
    o = fastmlp.optim.SGD(model.parameters(), **opt)
    loss_fn = nn.MSELoss()
    for _ in range(epochs):
        for s in range(0, len(X), batch):
            idx = perm[s:s + batch]
            loss = loss_fn(model(fastmlp.tensor(X[idx])), fastmlp.tensor(y[idx]))
            o.zero_grad()
            loss.backward()
            o.step()


@pytest.mark.parametrize("hidden", [8, 300])  # the small path and the gemm path
@pytest.mark.parametrize("opt", [dict(lr=0.05), dict(lr=0.05, momentum=0.9, weight_decay=0.01)])
def test_fit_leaves_frozen_parameters_alone(cpu_path, hidden, opt):
    X, y = _data(96, 5)
    fastmlp.manual_seed(3)
    ref = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 4), nn.ReLU(),
                        nn.Linear(4, 1))
    ours = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 4), nn.ReLU(),
                         nn.Linear(4, 1))
    ours.load_state_dict(ref.state_dict())
    for m in (ref, ours):
        m[0].weight.requires_grad_(False)
        m[2].bias.requires_grad_(False)
        m[4].weight.requires_grad_(False)
    frozen = {k: v.numpy().copy() for k, v in ours.state_dict().items()
              if k in ("0.weight", "2.bias", "4.weight")}
    perm = np.random.default_rng(1).permutation(len(X))
    _eager_sgd(ref, X, y, perm, 16, 2, **opt)
    fastmlp.fit(ours, X, y, epochs=2, batch_size=16, permutation=perm, progress=False, **opt)
    sd_ref, sd = ref.state_dict(), ours.state_dict()
    for k, v in frozen.items():
        assert np.array_equal(sd[k].numpy(), v), k
    for k in sd:
        np.testing.assert_allclose(sd[k].numpy(), sd_ref[k].numpy(), rtol=2e-4, atol=2e-5,
                                   err_msg=k)
    assert not np.array_equal(sd["0.bias"].numpy(), fastmlp.zeros(1).numpy())


def test_fit_all_frozen_is_refused():
    X, y = _data()
    m = nn.Sequential(nn.Linear(3, 1)).requires_grad_(False)
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        fastmlp.fit(m, X, y, epochs=1, batch_size=8, lr=0.1, progress=False)


# ---- 3. exceptions survive pickle and process pools -----------------------------------------

import os  # noqa: E402
import pickle  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402


def _every_exception():
    from fastmlp.cli import CLIError
    from fastmlp.nn.functional import ArgumentError, DtypeError, ShapeError
    from fastmlp.tracing import TraceError
    from fastmlp.serialization import WeightsOnlyLoadError, _NeedsPickle
    from fastmlp.trainer import History, NonFiniteLossError

    hist = History(loss=[0.5], val_loss=[], steps=3, seed=7)
    return [NonFiniteLossError("fit: the loss became nan", epoch=2, batch=5, loss=float("inf"),
                               history=hist),
            ShapeError("shapes (2, 3) and (4, 5)"), DtypeError("expected float32"),
            CLIError("data.csv: no such file"),
            WeightsOnlyLoadError("fastmlp.load: m.pt: Weights only load failed."),
            _NeedsPickle(), ArgumentError("gelu(): approximate must be 'none' or 'tanh'"),
            TraceError("fit: Res's forward applies AddBackward0")]


def test_every_custom_exception_class_is_covered():
    import inspect

    import fastmlp.cli
    import fastmlp.nn.functional
    import fastmlp.trainer

    found = set()
    import fastmlp.tracing

    for mod in (fastmlp.cli, fastmlp.nn.functional, fastmlp.trainer, fastmlp.serialization,
                fastmlp.tracing):
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("fastmlp"):
                found.add(obj)
    assert found <= {type(e) for e in _every_exception()}


@pytest.mark.parametrize("exc", _every_exception(), ids=lambda e: type(e).__name__)
def test_exceptions_pickle_with_message_and_fields(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    for k, v in vars(exc).items():
        got = getattr(back, k)
        assert got == v or (isinstance(v, float) and np.isnan(v) and np.isnan(got)), k
    if isinstance(exc, pickle.UnpicklingError):
        assert isinstance(back, ValueError)
    if hasattr(exc, "history"):
        assert back.history.loss == [0.5] and back.epoch == 2 and back.batch == 5


_POOL_SCRIPT = textwrap.dedent("""
    import concurrent.futures, multiprocessing, sys
    import numpy as np

    def diverge(i):
        import fastmlp
        from fastmlp import nn
        X = np.random.default_rng(i).standard_normal((64, 3)).astype(np.float32) * 100
        m = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
        fastmlp.fit(m, X, X[:, :1] * 1e3, epochs=50, batch_size=8, lr=10.0, progress=False)
        return "converged"

    if __name__ == "__main__":
        from fastmlp.trainer import NonFiniteLossError
        ctx = multiprocessing.get_context(sys.argv[1])
        with ctx.Pool(2) as pool:
            try:
                pool.map_async(diverge, range(2)).get(timeout=120)
            except NonFiniteLossError as e:
                print("pool", type(e).__name__, e.epoch, e.batch, len(e.history["loss"]) == e.epoch)
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
            try:
                list(ex.map(diverge, range(2), timeout=120))
            except NonFiniteLossError as e:
                print("executor", type(e).__name__, "fit:" in str(e))
""")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_diverging_fit_in_process_pools_raises_in_parent(tmp_path, method):
    script = tmp_path / "pool_fit.py"
    script.write_text(_POOL_SCRIPT)
    r = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0].startswith("pool NonFiniteLossError") and lines[0].endswith("True"), r.stdout
    assert lines[1] == "executor NonFiniteLossError True", r.stdout


# ---- 4. Ctrl-C during a native epoch; interpreter exit with fit in a daemon thread ------------

_SIGINT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    import fastmlp
    from fastmlp import nn

    # one native epoch of 40,000 steps of a 4->1024->1024->1 net (2.56 M steps of the 64-wide net
    # at batch 1): far longer than the test waits once it has sent SIGINT
    X = np.random.default_rng(0).standard_normal((64 * 40000, 4)).astype(np.float32)
    y = X[:, :1].copy()
    m = nn.Sequential(nn.Linear(4, {width}), nn.ReLU(), nn.Linear({width}, {width}), nn.ReLU(),
                      nn.Linear({width}, 1))
    w0 = m[2].weight.numpy().copy()
    # Evidence that the native epoch is running: the steps update the parameters in place (the
    # GIL is released meanwhile), so a watcher thread sees the output layer's weights move.
    head = m[4].weight.numpy()
    head0 = head.copy()

    def watch():
        while np.array_equal(head, head0):
            time.sleep(0.005)
        print("running", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    try:
        fastmlp.fit(m, X, y, epochs=1, batch_size={batch}, lr=1e-4, progress=False)
    except KeyboardInterrupt as e:
        finite = all(np.isfinite(p.numpy()).all() for p in m.parameters())
        trained = not np.array_equal(w0, m[2].weight.numpy())
        print("interrupted", finite, trained, len(e.history["loss"]), flush=True)
        sys.exit(0)
    print("finished", flush=True)
""")


def _readline_within(stream, timeout):
    """The next line of stream (stripped), or None when none comes within timeout seconds."""
    import queue
    import threading

    q = queue.Queue()
    threading.Thread(target=lambda: q.put(stream.readline()), daemon=True).start()
    try:
        return q.get(timeout=timeout).strip()
    except queue.Empty:
        return None


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
# gemm path, small path, small path on its team (a 64-wide step at batch 64: ~1.7 MFLOP, above
# kSmallTeamMinFlops; the team's gather thread polls should_stop for all)
@pytest.mark.parametrize("width,batch", [(1024, 64), (64, 1), (64, 64)])
def test_sigint_stops_a_long_native_epoch(tmp_path, width, batch):
    script = tmp_path / "long_fit.py"
    script.write_text(_SIGINT_SCRIPT.format(width=width, batch=batch))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        # SIGINT only once steps of the native epoch have run (however loaded the machine is:
        # a generous hang-guard for the import, the data and the first steps, not a timing).
        line = _readline_within(p.stdout, 300)
        assert line == "running", (line, p.poll())
        p.send_signal(signal.SIGINT)
        # The rest of the epoch would run for minutes; stopping within the hang-guard, with the
        # epoch unfinished (no history entry), is the proof that the long epoch stops promptly.
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert out.strip() == "interrupted True True 0", (out, err)


_DAEMON_SCRIPT = textwrap.dedent("""
    import threading, time
    import numpy as np
    import fastmlp
    from fastmlp import nn

    X = np.random.default_rng(0).standard_normal((2048, 4)).astype(np.float32)
    y = X[:, :1].copy()
    m = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                      nn.Linear(128, 1))
    started = threading.Event()

    def work():
        started.set()
        fastmlp.fit(m, X, y, epochs=10 ** 6, batch_size=64, lr=1e-4, progress=False)

    threading.Thread(target=work, daemon=True).start()
    started.wait()
    time.sleep(0.2)  # the main thread exits while the daemon thread is inside fit
""")


def test_interpreter_exit_with_fit_in_a_daemon_thread(tmp_path):
    script = tmp_path / "daemon_fit.py"
    script.write_text(_DAEMON_SCRIPT)
    for _ in range(20):
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and "terminate called" not in r.stderr, r.stderr


# ---- 5. checkpoints -------------------------------------------------------------------------

import json  # noqa: E402
import struct  # noqa: E402
import zlib  # noqa: E402


def _npy_header(count):
    import io as _io

    b = _io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "|u1", "fortran_order": False,
                                             "shape": (count,)})
    return b.getvalue()


def _local(name, payload):
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(payload),
                       len(payload), len(payload), len(name), 0) + name + payload


def _central(name, payload, offset):
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0,
                       zlib.crc32(payload), len(payload), len(payload), len(name), 0, 0, 0, 0, 0,
                       offset) + name


def _nested_zip(depth, inner_bytes, gap=0):
    """An npz whose stored members each contain the next one (a 'zip bomb' without
    compression): the file is about inner_bytes, the members add up to about depth times that."""
    meta = json.dumps({"format": 1, "obj": {}}).encode()
    members = [(b"__fastmlp__.npy", _npy_header(len(meta)) + meta)]
    inner = _npy_header(inner_bytes) + bytes(inner_bytes)
    names = [f"t{i}.npy".encode() for i in range(depth)]
    # innermost first: payload_k = plain array, payload_{k-1} = header + local(k)
    payloads = [None] * depth
    payloads[-1] = inner
    for i in range(depth - 2, -1, -1):
        entry = _local(names[i + 1], payloads[i + 1])
        payloads[i] = _npy_header(len(entry)) + entry
    body = b""
    offsets = []
    offsets.append(0)
    body += _local(names[0], payloads[0])
    off = 0
    for i in range(1, depth):  # where member i's local header sits inside member i-1's data
        off = off + 30 + len(names[i - 1]) + len(_npy_header(len(payloads[i]) + 30 + len(names[i])))
        offsets.append(off)
    body += bytes(gap)
    meta_off = len(body)
    body += _local(*members[0])
    cd = b"".join(_central(n, p, o) for n, p, o in zip(names, payloads, offsets))
    cd += _central(members[0][0], members[0][1], meta_off)
    count = depth + 1
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(cd), len(body), 0)
    return body + cd + end


def test_load_refuses_overlapping_members_without_inflating(tmp_path):
    import tracemalloc
    import zipfile

    data = _nested_zip(depth=40, inner_bytes=100_000)
    path = tmp_path / "bomb.pt"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as z:  # a well-formed zip whose members add up to ~40x the file
        assert sum(i.file_size for i in z.infolist()) > 30 * len(data)
        z.read("t5.npy")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="bytes in all, more than|overlap in the file"):
            fastmlp.load(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(data) + 200_000


def test_load_refuses_overlap_even_when_sizes_fit(tmp_path):
    data = _nested_zip(depth=2, inner_bytes=2000, gap=10_000)  # the sum fits in the file
    path = tmp_path / "overlap.pt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="overlap in the file"):
        fastmlp.load(str(path))


def test_save_keeps_mode_or_umask_default(tmp_path):
    path = tmp_path / "a.pt"
    old = os.umask(0o027)
    try:
        fastmlp.save({"x": 1}, str(path))
        assert os.stat(path).st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    os.chmod(path, 0o604)
    fastmlp.save({"x": 2}, str(path))
    assert os.stat(path).st_mode & 0o777 == 0o604
    assert fastmlp.load(str(path)) == {"x": 2}


def test_zero_d_tensors_and_arrays_round_trip(tmp_path):
    path = str(tmp_path / "z.pt")
    fastmlp.save({"t": fastmlp.tensor(3.5), "a": np.array(2, dtype=np.int64),
                  "s": np.float32(1.5), "b": np.bool_(True), "nested": [np.array(True)]}, path)
    r = fastmlp.load(path)
    assert tuple(r["t"].shape) == () and float(r["t"]) == 3.5
    assert r["a"].shape == () and r["a"] == 2 and r["a"].dtype == np.int64
    assert r["s"] == 1.5 and r["b"] is True and r["nested"][0].shape == ()


def test_torch_tensors_as_values_are_saved(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "t.pt")
    lin = torch.nn.Linear(3, 2)
    fastmlp.save({"sd": lin.state_dict(), "p": lin.weight, "x": torch.tensor(2.0)}, path)
    r = fastmlp.load(path)
    assert np.array_equal(r["sd"]["weight"].numpy(), lin.weight.detach().numpy())
    assert isinstance(r["p"], nn.Parameter) and tuple(r["x"].shape) == ()
    m = nn.Linear(3, 2)
    m.load_state_dict(r["sd"])


def test_save_refusal_names_the_type_without_contradiction(tmp_path):
    class Thing:
        pass

    with pytest.raises(TypeError) as ei:
        fastmlp.save({"x": Thing()}, str(tmp_path / "x.pt"))
    msg = str(ei.value)
    assert "Thing" in msg and "type Tensor" not in msg and "whole nn.Module" in msg


def test_long_valid_file_name(tmp_path):
    path = tmp_path / ("m" * 249)
    fastmlp.save({"w": fastmlp.ones(2)}, str(path))
    assert np.array_equal(fastmlp.load(str(path))["w"].numpy(), np.ones(2, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["m" * 249]  # no temporary left behind


def test_map_location_cuda_without_gpu_says_so(tmp_path):
    if fastmlp.cuda.is_available():
        pytest.skip("a GPU is present")
    path = str(tmp_path / "c.pt")
    fastmlp.save({"w": fastmlp.ones(2)}, path)
    with pytest.raises(RuntimeError) as ei:
        fastmlp.load(path, map_location="cuda")
    assert "GPU" in str(ei.value) and "malformed" not in str(ei.value)


class TwoLayer(nn.Module):
    """A custom Module subclass for the whole-model checkpoint round trip."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
        self.head = nn.Linear(5, 1)
        self.scale = 2.5

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


def test_whole_model_round_trip(tmp_path):
    m = TwoLayer()
    m.head.weight.requires_grad_(False)
    x = fastmlp.randn(4, 3)
    want = m(x).numpy()
    path = str(tmp_path / "model.pt")
    fastmlp.save(m, path)
    back = fastmlp.load(path, weights_only=False)
    assert type(back) is TwoLayer and back.scale == 2.5
    assert np.array_equal(back(x).numpy(), want)
    assert not back.head.weight.requires_grad and back.body[0].weight.requires_grad
    assert list(back.state_dict()) == list(m.state_dict())
    # a checkpoint dict holding a model is pickled whole too
    fastmlp.save({"model": m, "epoch": 3}, path)
    ck = fastmlp.load(path, weights_only=False)
    assert ck["epoch"] == 3 and np.array_equal(ck["model"](x).numpy(), want)


def test_whole_model_refused_by_default_with_pytorchs_message(tmp_path):
    import pickle as _pickle

    path = str(tmp_path / "model.pt")
    fastmlp.save(TwoLayer(), path)
    with pytest.raises(_pickle.UnpicklingError) as ei:
        fastmlp.load(path)
    msg = str(ei.value)
    assert "Weights only load failed" in msg and "weights_only" in msg and "False" in msg
    assert "trust" in msg
    assert isinstance(ei.value, ValueError)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_runs_no_code_under_default(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state": _Evil(marker)}))
    import pickle as _pickle

    with pytest.raises(_pickle.UnpicklingError, match="Weights only load failed"):
        fastmlp.load(str(path))
    with pytest.raises(_pickle.UnpicklingError):
        fastmlp.load(str(path), weights_only=True)
    assert not marker.exists()


# ---- 6. the CLI's input files and output pipe -------------------------------------------------

from pathlib import Path  # noqa: E402

from fastmlp.__main__ import main as cli_main  # noqa: E402

_PYDIR = str(Path(fastmlp.__file__).resolve().parents[1])


def _csv(path, header, rows, bom=False):
    text = ",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


def _cli_error(capsys, argv):
    rc = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err, (rc, err)
    return err


def _train_rows(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    return np.column_stack([X, X @ [1.0, -2.0]]).tolist()


def test_cli_strips_utf8_bom(tmp_path, capsys):
    data = tmp_path / "bom.csv"
    _csv(data, ["a", "b", "target"], _train_rows(), bom=True)
    model = tmp_path / "m.npz"
    assert cli_main(["train", str(data), "--target", "target", "--hidden", "4", "--epochs", "1",
                     "--out", str(model), "--no-progress"]) == 0
    from fastmlp.cli import load_model

    assert load_model(model)[3]["features"] == ["a", "b"]
    pred_in = tmp_path / "p.csv"
    _csv(pred_in, ["a", "b"], [[0.5, 1.0]], bom=True)
    capsys.readouterr()
    assert cli_main(["predict", str(model), str(pred_in)]) == 0


def test_cli_refuses_duplicate_columns(tmp_path, capsys):
    data = tmp_path / "dup.csv"
    _csv(data, ["a", "a", "target"], _train_rows())
    err = _cli_error(capsys, ["train", str(data), "--target", "target", "--no-progress"])
    assert "duplicate" in err and "'a'" in err


def test_cli_refuses_float32_overflow_naming_column_and_row(tmp_path, capsys):
    rows = _train_rows()
    rows[4][1] = 1e39
    data = tmp_path / "big.csv"
    _csv(data, ["a", "b", "target"], rows)
    err = _cli_error(capsys, ["train", str(data), "--target", "target", "--no-progress"])
    assert "column 'b'" in err and "row 6" in err and "float32" in err  # line 6 of the file
    good = tmp_path / "good.csv"
    _csv(good, ["a", "b", "target"], _train_rows())
    model = tmp_path / "m.npz"
    assert cli_main(["train", str(good), "--target", "target", "--hidden", "4", "--epochs", "1",
                     "--out", str(model), "--no-progress"]) == 0
    pred_in = tmp_path / "p.csv"
    _csv(pred_in, ["a", "b"], [[0.0, 1.0], [-3e38 * 10, 0.0]])
    capsys.readouterr()
    err = _cli_error(capsys, ["predict", str(model), str(pred_in)])
    assert "column 'a'" in err and "row 3" in err


def test_cli_refuses_complex_npz(tmp_path, capsys):
    data = tmp_path / "c.npz"
    X = np.ones((8, 2), dtype=np.complex128) * (1 + 2j)
    np.savez(data, X=X, y=np.ones(8))
    err = _cli_error(capsys, ["train", str(data), "--no-progress"])
    assert "complex" in err


def test_cli_predict_exits_nonzero_on_overflowing_output(tmp_path, capsys):
    from fastmlp.cli import save_model

    model = tmp_path / "huge.npz"
    w = [np.full((1, 2), 3e38, np.float32)]
    save_model(str(model), w, [np.zeros(1, np.float32)], [False],
               {"features": ["a", "b"], "targets": ["y"]})
    pred_in = tmp_path / "p.csv"
    _csv(pred_in, ["a", "b"], [[1.0, 1.0]])
    out = tmp_path / "out.csv"
    err = _cli_error(capsys, ["predict", str(model), str(pred_in), "--out", str(out)])
    assert "not finite" in err and not out.exists()


def test_cli_model_loader_uses_fastmlp_load_only(tmp_path, capsys):
    # a compressed npz in the old layout: np.load would inflate it; fastmlp.load refuses it
    model = tmp_path / "bomb.npz"
    meta = json.dumps({"format": "fastmlp-mlp", "relu": [False],
                       "meta": {"features": ["a"], "targets": ["y"]}}).encode()
    np.savez_compressed(model, **{"__meta__": np.frombuffer(meta, np.uint8),
                                  "layer0.weight": np.zeros((1, 1), np.float32),
                                  "layer0.bias": np.zeros((5_000_000,), np.float32)})
    pred_in = tmp_path / "p.csv"
    _csv(pred_in, ["a"], [[1.0]])
    import tracemalloc

    tracemalloc.start()
    try:
        err = _cli_error(capsys, ["predict", str(model), str(pred_in)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "fastmlp model file" in err
    assert peak < 20 * model.stat().st_size + 2_000_000  # never the 20 MB inflated array


def test_cli_predict_into_closed_pipe_is_quiet(tmp_path):
    good = tmp_path / "good.csv"
    _csv(good, ["a", "b", "target"], _train_rows())
    model = tmp_path / "m.npz"
    assert cli_main(["train", str(good), "--target", "target", "--hidden", "4", "--epochs", "1",
                     "--out", str(model), "--no-progress"]) == 0
    big = tmp_path / "big.csv"
    _csv(big, ["a", "b"], np.random.default_rng(0).standard_normal((60000, 2)).tolist())
    env = dict(os.environ)
    env["PYTHONPATH"] = _PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-m", "fastmlp", "predict", str(model), str(big)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.readline()
    p.stdout.close()  # as `| head -1` does
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert rc in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, (rc, err)


# ---- 7. non-Tensor inputs: PyTorch's TypeError naming the argument ----------------------------

import fastmlp.nn.functional as F  # noqa: E402

_ARR = np.ones((2, 2), np.float32)
_T = fastmlp.ones(2, 2)


@pytest.mark.parametrize("call,fn,arg,pos", [
    (lambda: fastmlp.relu(_ARR), "relu", "input", 1),
    (lambda: fastmlp.relu_(_ARR), "relu", "input", 1),
    (lambda: F.relu([1.0, -1.0]), "relu", "input", 1),
    (lambda: nn.ReLU()(_ARR), "relu", "input", 1),
    (lambda: nn.Linear(2, 2)(_ARR), "linear", "input", 1),
    (lambda: F.linear(_ARR, _T), "linear", "input", 1),
    (lambda: F.linear(_T, _ARR), "linear", "weight", 2),
    (lambda: F.linear(_T, _T, np.ones(2, np.float32)), "linear", "bias", 3),
    (lambda: nn.Sequential(nn.Linear(2, 2), nn.ReLU())(_ARR), "linear", "input", 1),
    (lambda: nn.MSELoss()(_ARR, _T), "mse_loss", "input", 1),
    (lambda: nn.MSELoss()(_T, _ARR), "mse_loss", "target", 2),
    (lambda: F.mse_loss(_ARR, _T), "mse_loss", "input", 1),
    (lambda: nn.MSELoss(reduction="none")(_T, _ARR), "mse_loss", "target", 2),
    (lambda: nn.Tanh()(_ARR), "tanh", "input", 1),
    (lambda: nn.Sigmoid()(_ARR), "sigmoid", "input", 1),
    (lambda: nn.Flatten()(_ARR), "flatten", "input", 1),
])
def test_non_tensor_input_is_a_type_error_naming_the_argument(call, fn, arg, pos):
    with pytest.raises(TypeError) as ei:
        call()
    msg = str(ei.value)
    assert msg.startswith(f"{fn}(): argument '{arg}' (position {pos}) must be Tensor, not "), msg
    assert "_node" not in msg and "_data" not in msg


def test_type_error_matches_pytorch_wording():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError) as theirs:
        torch.relu(_ARR)
    with pytest.raises(TypeError) as ours:
        fastmlp.relu(_ARR)
    assert str(ours.value) == str(theirs.value)


_FINALIZER_SCRIPT = textwrap.dedent("""
    import builtins
    import sys
    import numpy as np
    import fastmlp
    from fastmlp import nn

    X = np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32)

    class Holder:
        def __del__(self):  # runs on the main thread while the interpreter finalizes
            m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            h = fastmlp.fit(m, X, X[:, :1], epochs=2, batch_size=32, lr=0.01, progress=False)
            p = fastmlp.trainer.predict(m, X)
            sys.stdout.write(f"fit during finalization {len(h['loss'])} {p.shape}\\n")
            sys.stdout.flush()

    builtins._fastmlp_holder = Holder()
""")


def test_fit_on_the_main_thread_during_finalization_runs(tmp_path):
    script = tmp_path / "finalizer_fit.py"
    script.write_text(_FINALIZER_SCRIPT)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fit during finalization 2 (256, 1)" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("argv,needle", [(["--lr", "1e39"], "--lr"),
                                         (["--momentum", "1e39"], "--momentum"),
                                         (["--batch-size", str(2 ** 63)], "--batch-size")])
def test_cli_hyperparameters_checked_like_fit(tmp_path, capsys, argv, needle):
    good = tmp_path / "good.csv"
    _csv(good, ["a", "b", "target"], _train_rows())
    err = _cli_error(capsys, ["train", str(good), "--target", "target", "--no-progress"] + argv)
    assert needle in err


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "argmax", "argmin", "std", "var",
                                  "flatten", "squeeze", "prod", "any", "all", "tanh", "sigmoid",
                                  "relu"])
def test_namespace_functions_refuse_arrays_naming_the_argument(name):
    """torch.sum(ndarray) is PyTorch's TypeError, not an AttributeError from inside fastmlp."""
    with pytest.raises(TypeError, match=rf"{name}\(\): argument 'input' \(position 1\) must be "
                                        r"Tensor, not numpy\.ndarray"):
        getattr(fastmlp, name)(np.ones((2, 2), np.float32))
