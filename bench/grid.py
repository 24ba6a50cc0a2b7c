"""The speed grid: fastmlp's fused fit, eager step and inference over widths x batches x threads x
CPU paths, against PyTorch eager, JAX (jitted step, and jit + lax.scan over the whole epoch) and
ONNX Runtime (inference), all in one run, interleaved, next to the FMA peak bench/fma_peak.c
measures for the SIMD path in use.

    python bench/grid.py [--quick] [--out DIR] [--widths 8,64,256] [--batches 1,16,64,256,1024]
                         [--threads 1,2] [--paths avx2,generic] [--heads 1,10] [--rounds 3]
    python -m fastmlp bench --grid [--quick]

Nets: inputs 20, two hidden layers of the grid's width (ReLU), one output (regression head) or ten
(the 10-class head, trained with MSE as fit does). Batch 1 is timed for inference only.

Every library runs in its own worker process (each brings a thread pool: PyTorch's and fastmlp's
OpenMP, XLA's Eigen pool; JAX's thread count is fixed at import by XLA_FLAGS, so there is one JAX
worker per thread count). The driver walks the points in rounds, and within a point alternates the
order of the libraries from round to round, pausing between calls so that idle spinning workers do
not steal the other core. Each worker resets its peak resident memory (/proc/self/clear_refs) before
a measurement and reports VmHWM after it: peak RSS per point.

Reported per point and library: median and min seconds, samples/s, GFLOP/s (6 flops per weight
and sample for a training step, 2 for inference) and its fraction of the FMA peak for the threads
used, and the ratios fastmlp / peer. Writes DIR/grid.json and DIR/grid.png (heat maps of the
ratios; matplotlib optional). The machine may be shared: the numbers are medians of interleaved
rounds and the JSON says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import wait_idle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

FULL = dict(widths=[8, 16, 32, 64, 128, 256, 512, 1024], batches=[1, 16, 64, 256, 1024],
            threads=[1, 2], heads=[1, 10])
QUICK = dict(widths=[16, 64, 256], batches=[1, 64, 1024], threads=[1, 2], heads=[1])
D_IN = 20
LR = 0.001


def sizes_of(width, head):
    return [D_IN, width, width, head]


def n_weights(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def epoch_samples(sizes, batch, budget_flops):
    """Samples per timed fit epoch: about budget_flops of work, whole batches, 4..1024 batches."""
    per = 6.0 * n_weights(sizes)
    nb = int(max(4, min(1024, budget_flops / (per * batch))))
    return nb * batch


# ---- workers -------------------------------------------------------------------------------------

def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data(n, sizes, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    Y = rng.standard_normal((n, sizes[-1])).astype(np.float32)
    return X, Y


class _Clock:
    """Wall and process CPU seconds of a block (CPU time leaves out the time a shared machine
    keeps the process descheduled; it is comparable to wall time on one thread only)."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _fastest(run, times):
    """The _Clock of the fastest (wall) of `times` calls of run()."""
    best = None
    for _ in range(times):
        with _Clock() as c:
            run()
        if best is None or c.wall < best.wall:
            best = c
    return best


def _time_calls(fn, samples, min_s=0.02, max_calls=100000, chunks=5):
    """{'seconds', 'cpu_seconds', 'samples'} per call of fn(): one warm call, then `chunks` runs
    of calls that together fill min_s, the fastest run's mean. On two threads a run's mean takes
    whatever another process's idle workers steal from the second core while it runs (seen on a
    2-core Zen 4: one point of trainer.predict 40x, one no_grad forward 6x slower than the same
    call timed alone). The fastest run drops a short steal; a long one (ONNX Runtime's workers
    still spinning: one point stayed 50x slow in every run) is what _wait_idle waits out."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    k = int(max(1, min(max_calls, min_s / one / chunks)))

    def run():
        for _ in range(k):
            fn()

    best = _fastest(run, chunks)
    return {"seconds": best.wall / k, "cpu_seconds": best.cpu / k, "samples": samples}


def _time_once(fn, samples, repeats=3):
    """{'seconds', 'cpu_seconds', 'samples'} of one call of fn() (a whole timed epoch), the
    fastest of `repeats` calls (for the same reason as _time_calls' runs)."""
    best = _fastest(fn, repeats)
    return {"seconds": best.wall, "cpu_seconds": best.cpu, "samples": samples}


class _EagerWorker:
    """The eager measurements of a library with PyTorch's API (fastmlp and PyTorch itself):
    the same Sequential of Linear + ReLU from the same seed, the same SGD + MSE step and the same
    no_grad forward. Subclasses set ``lib`` and ``tensor`` (numpy array -> the library's tensor)."""

    def __init__(self):
        self.models = {}

    def model(self, sizes):
        lib = self.lib
        key = tuple(sizes)
        if key not in self.models:
            lib.manual_seed(0)
            layers = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(lib.nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(lib.nn.ReLU())
            self.models[key] = lib.nn.Sequential(*layers)
        return self.models[key]

    def eager(self, kind, model, X, Y, batch):
        """Time kind "step" (zero_grad, forward, MSE, backward, SGD step) or "infer"."""
        lib = self.lib
        x = self.tensor(X)
        if kind == "step":
            opt = lib.optim.SGD(model.parameters(), lr=LR)
            lossf = lib.nn.MSELoss()
            y = self.tensor(Y)

            def step():
                opt.zero_grad()
                loss = lossf(model(x), y)
                loss.backward()
                opt.step()
            return _time_calls(step, batch)
        if kind == "infer":
            def fwd():
                with lib.no_grad():
                    model(x)
            return _time_calls(fwd, batch)
        raise ValueError(kind)


class FastmlpWorker(_EagerWorker):
    name = "fastmlp"

    def __init__(self, threads):
        super().__init__()
        import fastmlp
        self.fm = self.lib = fastmlp
        self.tensor = fastmlp.from_numpy

    def run(self, kind, sizes, batch, threads, n, path):
        fm = self.fm
        fm.set_num_threads(threads)
        fm.set_cpu_path(path)
        model = self.model(sizes)
        if kind == "fit":
            X, Y = _data(n, sizes)
            fm.fit(model, X[:batch * 2], Y[:batch * 2], epochs=1, batch_size=batch, lr=LR,
                   shuffle=False, progress=False)
            return _time_once(lambda: fm.fit(model, X, Y, epochs=1, batch_size=batch, lr=LR,
                                             shuffle=False, progress=False), n)
        X, Y = _data(max(batch, 1), sizes)
        if kind == "predict":
            from fastmlp import trainer
            return _time_calls(lambda: trainer.predict(model, X), batch)
        return self.eager(kind, model, X, Y, batch)


class TorchWorker(_EagerWorker):
    name = "torch"

    def __init__(self, threads):
        super().__init__()
        import torch
        self.torch = self.lib = torch
        self.tensor = torch.from_numpy

    def run(self, kind, sizes, batch, threads, n, path):
        self.torch.set_num_threads(threads)
        X, Y = _data(max(batch, 1), sizes)
        return self.eager(kind, self.model(sizes), X, Y, batch)


def jax_fns(jax, sizes, act="relu", loss="mse", optim="sgd", lr=LR, gather=False, **hyper):
    """JAX's fastest form of the training loop a fit runs: (step, epoch, infer, state).

    ``step(state, x, y)``: one jitted step. ``epoch(state, Xb, Yb)``: the whole epoch under one
    jax.jit, jax.lax.scan over the batches Xb (nb, B, in), Yb (nb, B, out) (or (nb, B) class
    indices); with ``gather=True`` ``epoch(state, X, Y, idx)`` gathers batch i as X[idx[i]] inside
    the scan (idx (nb, B): a shuffled epoch, as fit's). ``state`` = (params, optimizer state).
    act: relu | tanh | gelu (exact erf); loss: mse | huber (delta=1) | cross_entropy; optim: sgd |
    adam | adamw (torch's defaults: betas (0.9, 0.999), eps 1e-8, AdamW weight_decay 0.01)."""
    import jax.numpy as jnp
    nl = len(sizes) - 1
    f_act = {"relu": lambda x: jnp.maximum(x, 0.0), "tanh": jnp.tanh,
             "gelu": lambda x: jax.nn.gelu(x, approximate=False)}[act]

    def fwd(params, x):
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            if i < nl - 1:
                x = f_act(x)
        return x

    def loss_fn(params, x, y):
        p = fwd(params, x)
        if loss == "mse":
            d = p - y
            return jnp.mean(d * d)
        if loss == "huber":
            d = jnp.abs(p - y)
            return jnp.mean(jnp.where(d < 1.0, 0.5 * d * d, d - 0.5))
        if loss == "cross_entropy":
            lp = jax.nn.log_softmax(p, axis=-1)
            return -jnp.mean(jnp.take_along_axis(lp, y[:, None], axis=-1))
        raise ValueError(loss)

    b1, b2 = hyper.get("betas", (0.9, 0.999))
    eps = hyper.get("eps", 1e-8)
    wd = hyper.get("weight_decay", 0.01 if optim == "adamw" else 0.0)

    def update(state, x, y):
        params, (t, m, v) = state
        g = jax.grad(loss_fn)(params, x, y)
        tm = jax.tree_util.tree_map
        if optim == "sgd":
            return tm(lambda p, q: p - lr * q, params, g), (t, m, v)
        t = t + 1.0
        if optim == "adamw":
            params = tm(lambda p: p * (1.0 - lr * wd), params)
        elif wd:
            g = tm(lambda q, p: q + wd * p, g, params)
        m = tm(lambda a, q: b1 * a + (1.0 - b1) * q, m, g)
        v = tm(lambda a, q: b2 * a + (1.0 - b2) * q * q, v, g)
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        params = tm(lambda p, a, c: p - (lr / bc1) * a / (jnp.sqrt(c) / jnp.sqrt(bc2) + eps),
                    params, m, v)
        return params, (t, m, v)

    step = jax.jit(update)

    if gather:
        @jax.jit
        def epoch(state, X, Y, idx):
            def body(st, i):
                return update(st, X[i], Y[i]), None
            st, _ = jax.lax.scan(body, state, idx)
            return st
    else:
        @jax.jit
        def epoch(state, Xb, Yb):
            def body(st, xy):
                return update(st, xy[0], xy[1]), None
            st, _ = jax.lax.scan(body, state, (Xb, Yb))
            return st

    infer = jax.jit(fwd)
    k = jax.random.PRNGKey(0)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        k, k1 = jax.random.split(k)
        params.append((jax.random.normal(k1, (a, b), jnp.float32) / (a ** 0.5),
                       jnp.zeros((b,), jnp.float32)))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = (params, (jnp.float32(0.0), zeros, zeros))
    return step, epoch, infer, state


class JaxWorker:
    name = "jax"

    def __init__(self, threads):
        import jax
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp
        self.cache = {}

    def fns(self, sizes):
        key = tuple(sizes)
        if key not in self.cache:
            self.cache[key] = jax_fns(self.jax, sizes)
        return self.cache[key]

    def run(self, kind, sizes, batch, threads, n, path):
        jax = self.jax
        step, epoch, infer, state0 = self.fns(sizes)
        params = state0[0]
        if kind == "scan":
            X, Y = _data(n, sizes)
            Xb = jax.device_put(X.reshape(n // batch, batch, -1))
            Yb = jax.device_put(Y.reshape(n // batch, batch, -1))
            jax.block_until_ready(epoch(state0, Xb, Yb))  # compile
            return _time_once(lambda: jax.block_until_ready(epoch(state0, Xb, Yb)), n)
        X, Y = _data(max(batch, 1), sizes)
        x, y = jax.device_put(X), jax.device_put(Y)
        if kind == "step":
            state = [state0]

            def one():
                state[0] = step(state[0], x, y)
                jax.block_until_ready(state[0])
            return _time_calls(one, batch)
        if kind == "infer":
            return _time_calls(lambda: jax.block_until_ready(infer(params, x)), batch)
        raise ValueError(kind)


class OrtWorker:
    name = "ort"

    def __init__(self, threads):
        import onnxruntime
        self.ort = onnxruntime
        self.sessions = {}

    def session(self, sizes, threads):
        key = (tuple(sizes), threads)
        if key in self.sessions:
            return self.sessions[key]
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
        rng = np.random.default_rng(0)
        nodes, inits = [], []
        cur = "x"
        nl = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"W{i}"),
                      numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
            out = "y" if i == nl - 1 else f"h{i}"
            gemm_out = out if i == nl - 1 else f"z{i}"
            nodes.append(helper.make_node("Gemm", ["x" if i == 0 else cur, f"W{i}", f"b{i}"],
                                          [gemm_out], transB=1))
            if i < nl - 1:
                nodes.append(helper.make_node("Relu", [gemm_out], [out]))
            cur = out
        graph = helper.make_graph(
            nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", sizes[0]])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", sizes[-1]])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = min(model.ir_version, 8)
        onnx.checker.check_model(model)
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s = self.ort.InferenceSession(model.SerializeToString(), so,
                                      providers=["CPUExecutionProvider"])
        self.sessions[key] = s
        return s

    def run(self, kind, sizes, batch, threads, n, path):
        if kind != "infer":
            raise ValueError(kind)
        s = self.session(sizes, threads)
        X, _ = _data(max(batch, 1), sizes)
        feed = {"x": X}
        return _time_calls(lambda: s.run(None, feed), batch)


WORKERS = {"fastmlp": FastmlpWorker, "torch": TorchWorker, "jax": JaxWorker, "ort": OrtWorker}


def worker_main(lib, threads):
    """Serve one JSON command per stdin line; answer one JSON line on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries' chatter must not corrupt the protocol
    try:
        w = WORKERS[lib](threads)
        ver = {"fastmlp": lambda: w.fm.__version__, "torch": lambda: w.torch.__version__,
               "jax": lambda: w.jax.__version__, "ort": lambda: w.ort.__version__}[lib]()
        out.write(json.dumps({"ok": True, "version": ver}) + "\n")
    except Exception as e:  # noqa: BLE001  (a missing peer library: the driver skips it)
        out.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
        return
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            _reset_peak()
            r = w.run(cmd["kind"], cmd["sizes"], cmd["batch"], cmd["threads"], cmd.get("n", 0),
                      cmd.get("path"))
            r["peak_rss_mb"] = _peak_rss_mb()
            r["ok"] = True
        except Exception as e:  # noqa: BLE001
            r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(r) + "\n")
        out.flush()


class Worker:
    def __init__(self, lib, threads):
        env = dict(os.environ)
        if lib == "jax":
            env["JAX_PLATFORMS"] = "cpu"
            if threads == 1:
                env["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                    "intra_op_parallelism_threads=1")
        env["OMP_NUM_THREADS"] = str(threads)
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", lib,
                                   str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)
        hello = json.loads(self.p.stdout.readline() or '{"ok": false, "error": "worker died"}')
        self.ok = hello["ok"]
        self.version = hello.get("version")
        self.error = hello.get("error")

    def ask(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        return json.loads(line) if line else {"ok": False, "error": "worker died"}

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.p.kill()


_BUSY_WAITS = [0]  # waits that reached max_s with another worker still busy


def _wait_idle(others, quiet_s=0.05, max_s=3.0):
    """Wait (up to max_s) until the other workers' processes use no CPU for quiet_s (_common's
    wait_idle): a fixed settle was not always enough (on a 2-core Zen 4 the fused fit at
    20-64-64-1 b256 on 2 threads timed 435 us a step inside the grid, 90 us alone, every repeat
    of that point), so the second core is free when a multi-threaded measurement starts."""
    if not wait_idle([o.p.pid for o in others], quiet_s, max_s):
        _BUSY_WAITS[0] += 1


# ---- driver --------------------------------------------------------------------------------------

def fma_peak(threads):
    """{threads: GFLOP/s} from bench/fma_peak.c, or {} without a C compiler."""
    import shutil
    import tempfile
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return {}, None
    exe = os.path.join(tempfile.mkdtemp(), "fma_peak")
    try:
        subprocess.run([cc, "-O2", "-fopenmp", os.path.join(HERE, "fma_peak.c"), "-o", exe],
                       check=True, capture_output=True)
        out, isa = {}, None
        for nt in sorted(set(threads) | {1}):
            r = subprocess.run([exe], check=True, capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS=str(nt)))
            for line in r.stdout.splitlines():  # "isa avx2 threads N best X GFLOP/s"
                f = line.split()
                isa = f[1]
                out[int(f[3])] = float(f[5])
        return out, isa
    except (subprocess.CalledProcessError, OSError, ValueError, IndexError):
        return {}, None


def plan(cfg, paths, kinds=None):
    """The measurements: (kind, lib, path, sizes, batch, threads); fastmlp once per CPU path.
    kinds: only these kinds ("fit", ...) or "kind/lib" pairs (e.g. {"fit/fastmlp", "scan/jax"})."""
    todo = []
    for head in cfg["heads"]:
        for w in cfg["widths"]:
            sizes = sizes_of(w, head)
            for b in cfg["batches"]:
                for t in cfg["threads"]:
                    pt = []
                    if b > 1:
                        for p in paths:
                            pt += [("fit", "fastmlp", p), ("step", "fastmlp", p)]
                        pt += [("step", "torch", None), ("step", "jax", None), ("scan", "jax", None)]
                    for p in paths:
                        pt += [("infer", "fastmlp", p), ("predict", "fastmlp", p)]
                    pt += [("infer", "torch", None), ("infer", "ort", None)]
                    if kinds:
                        pt = [x for x in pt if x[0] in kinds or f"{x[0]}/{x[1]}" in kinds]
                    if pt:
                        todo.append(((tuple(sizes), b, t), pt))
    return todo


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("LIB", "THREADS"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a small subset (widths 16,64,256; "
                    "batches 1,64,1024; regression head)")
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--widths")
    ap.add_argument("--batches")
    ap.add_argument("--threads")
    ap.add_argument("--heads")
    ap.add_argument("--paths", help="fastmlp CPU paths (default: every one this machine has)")
    ap.add_argument("--libs", default="fastmlp,torch,jax,ort")
    ap.add_argument("--kinds", help="only these measurements, comma-separated: kinds (fit, step, "
                    "scan, infer, predict) or kind/lib pairs, e.g. fit/fastmlp,scan/jax,step/torch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=2e8, help="flops per timed fit epoch")
    ap.add_argument("--pause", type=float, default=0.02, help="seconds between calls")
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds to wait before a multi-threaded measurement that follows another "
                         "library's (ONNX Runtime's, OpenBLAS's and libgomp's idle workers spin "
                         "after a call and steal the second core: without the wait fastmlp's "
                         "2-thread inference measured up to 50x slow at random points)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--source", action="store_true",
                    help="import fastmlp from this checkout's python/ (an in-place build)")
    args = ap.parse_args()
    if args.worker:
        if os.environ.get("FASTMLP_BENCH_SOURCE", "") not in ("", "0"):
            sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
        return worker_main(args.worker[0], int(args.worker[1]))

    cfg = dict(QUICK if args.quick else FULL)
    for k in ("widths", "batches", "threads", "heads"):
        v = getattr(args, k)
        if v:
            cfg[k] = [int(x) for x in v.split(",")]
    libs = args.libs.split(",")
    kinds = set(args.kinds.split(",")) if args.kinds else None
    if kinds:  # no worker for a library none of the kinds asks for
        libs = [lib for lib in libs if any("/" not in k or k.endswith("/" + lib) for k in kinds)]
    # The installed fastmlp runs (workers too); a checkout's python/ only with --source or
    # FASTMLP_BENCH_SOURCE=1, as the other bench scripts.
    if args.source or os.environ.get("FASTMLP_BENCH_SOURCE", "") not in ("", "0"):
        os.environ["FASTMLP_BENCH_SOURCE"] = "1"
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import fastmlp
    paths = args.paths.split(",") if args.paths else list(fastmlp.supported_cpu_paths())

    peak, peak_isa = fma_peak(cfg["threads"])
    print(f"FMA peak ({peak_isa}): " + ", ".join(f"{t} thread(s) {g:.1f} GFLOP/s"
                                                for t, g in sorted(peak.items())), flush=True)
    workers, versions = {}, {}
    for lib in libs:
        for t in cfg["threads"]:
            if lib != "jax" and t != cfg["threads"][0]:
                workers[(lib, t)] = workers[(lib, cfg["threads"][0])]
                continue
            w = Worker(lib, t)
            if not w.ok:
                print(f"({lib} skipped: {w.error})", flush=True)
                w.close()
                break
            workers[(lib, t)] = w
            versions[lib] = w.version

    todo = plan(cfg, paths, kinds)
    samples, cpu_samples = {}, {}
    meta = {}
    t_start = time.time()
    last_lib = None
    for rnd in range(args.rounds):
        for (sizes, b, t), pt in todo:
            order = pt if rnd % 2 == 0 else pt[::-1]
            n = epoch_samples(list(sizes), b, args.budget)
            for kind, lib, path in order:
                w = workers.get((lib, t))
                if w is None:
                    continue
                if t > 1 and last_lib not in (None, lib):
                    time.sleep(args.settle)
                    _wait_idle([o for o in set(workers.values()) if o is not w])
                last_lib = lib
                r = w.ask(kind=kind, sizes=list(sizes), batch=b, threads=t, n=n, path=path)
                key = (kind, lib, path, sizes, b, t)
                if not r.get("ok"):
                    meta.setdefault(key, {})["error"] = r.get("error")
                    continue
                samples.setdefault(key, []).append(r["seconds"] / r["samples"])
                cpu_samples.setdefault(key, []).append(r["cpu_seconds"] / r["samples"])
                m = meta.setdefault(key, {})
                m["peak_rss_mb"] = max(m.get("peak_rss_mb", 0.0), r["peak_rss_mb"])
                time.sleep(args.pause)
        print(f"round {rnd + 1}/{args.rounds} done ({time.time() - t_start:.0f} s)", flush=True)
    for w in set(workers.values()):
        w.close()
    if _BUSY_WAITS[0]:
        print(f"note: {_BUSY_WAITS[0]} multi-threaded measurement(s) started with another "
              "worker still using CPU after the wait", flush=True)

    records = []
    for key, m in meta.items():
        kind, lib, path, sizes, b, t = key
        rec = {"kind": kind, "lib": lib, "cpu_path": path, "sizes": list(sizes),
               "width": sizes[1], "head": sizes[-1], "batch": b, "threads": t}
        s = samples.get(key)
        if s:
            per = statistics.median(s)
            fl = (2.0 if kind in ("infer", "predict") else 6.0) * n_weights(sizes)
            rec.update(median_s_per_sample=per, min_s_per_sample=min(s),
                       median_s_per_call=per * b, samples_per_s=1.0 / per,
                       gflops=fl / per / 1e9, rounds=len(s))
            if peak.get(t):
                rec["fraction_of_fma_peak"] = rec["gflops"] / peak[t]
            if t == 1:  # one thread: CPU time is the contention-free figure
                cper = statistics.median(cpu_samples[key])
                rec.update(median_cpu_s_per_sample=cper, cpu_samples_per_s=1.0 / cper,
                           cpu_gflops=fl / cper / 1e9)
                if peak.get(1):
                    rec["cpu_fraction_of_fma_peak"] = rec["cpu_gflops"] / peak[1]
        rec.update(m)
        records.append(rec)

    ratios = compute_ratios(records, paths)
    doc = {
        "benchmark": "grid", "quick": args.quick, "config": cfg, "cpu_paths": paths,
        "fma_peak_gflops": {str(k): v for k, v in peak.items()}, "fma_peak_isa": peak_isa,
        "versions": versions, "python": platform.python_version(),
        "machine": platform.machine(), "processor": _cpu_name(),
        "note": "medians of interleaved rounds; the machine may have been shared",
        "records": records, "ratios": ratios,
    }
    os.makedirs(args.out, exist_ok=True)
    jpath = os.path.join(args.out, "grid.json")
    with open(jpath, "w") as f:
        json.dump(doc, f, indent=1)
    print_summary(records, ratios, peak)
    print(f"wrote {jpath}")
    if not args.no_plot:
        plot(doc, os.path.join(args.out, "grid.png"))


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# The ratios the issue's targets are stated in: (name, fastmlp kind, peer kind, peer lib).
RATIOS = [("fit/torch_step", "fit", "step", "torch"), ("fit/jax_scan", "fit", "scan", "jax"),
          ("fit/jax_step", "fit", "step", "jax"), ("step/torch_step", "step", "step", "torch"),
          ("infer/ort", "infer", "infer", "ort"), ("infer/torch", "infer", "infer", "torch"),
          ("predict/ort", "predict", "infer", "ort")]


def compute_ratios(records, paths):
    by = {(r["kind"], r["lib"], r["cpu_path"], tuple(r["sizes"]), r["batch"], r["threads"]): r
          for r in records if "samples_per_s" in r}
    out = []
    for (kind, lib, path, sizes, b, t), r in by.items():
        if lib != "fastmlp":
            continue
        for name, fk, pk, plib in RATIOS:
            if fk != kind:
                continue
            p = by.get((pk, plib, None, sizes, b, t))
            if p:
                x = {"ratio": name, "cpu_path": path, "sizes": list(sizes), "width": sizes[1],
                     "head": sizes[-1], "batch": b, "threads": t,
                     "value": r["samples_per_s"] / p["samples_per_s"]}
                if "cpu_samples_per_s" in r and "cpu_samples_per_s" in p:
                    x["cpu_value"] = r["cpu_samples_per_s"] / p["cpu_samples_per_s"]
                out.append(x)
    return out


def print_summary(records, ratios, peak):
    print("\nper point: samples/s, GFLOP/s and % of the FMA peak for the threads used (wall clock;"
          " cpu: the same in process CPU time, 1 thread only)")
    hdr = f"{'kind':8} {'lib':8} {'path':8} {'net':>16} {'batch':>5} {'thr':>3} " \
          f"{'samples/s':>11} {'GFLOP/s':>8} {'%peak':>6} {'cpu GF':>7} {'%peak':>6} {'RSS MB':>7}"
    print(hdr)
    for r in sorted(records, key=lambda r: (r["head"], r["width"], r["batch"], r["threads"],
                                            r["kind"], r["lib"], r["cpu_path"] or "")):
        if "samples_per_s" not in r:
            print(f"{r['kind']:8} {r['lib']:8} {str(r['cpu_path']):8} "
                  f"{'-'.join(map(str, r['sizes'])):>16} {r['batch']:5} {r['threads']:3} "
                  f"error: {r.get('error')}")
            continue
        frac = r.get("fraction_of_fma_peak")
        print(f"{r['kind']:8} {r['lib']:8} {str(r['cpu_path']):8} "
              f"{'-'.join(map(str, r['sizes'])):>16} {r['batch']:5} {r['threads']:3} "
              f"{r['samples_per_s']:11.4g} {r['gflops']:8.2f} "
              f"{(100 * frac if frac else float('nan')):6.1f} {r.get('cpu_gflops', float('nan')):7.2f} "
              f"{100 * r.get('cpu_fraction_of_fma_peak', float('nan')):6.1f} "
              f"{r.get('peak_rss_mb', 0):7.0f}")
    print("\nratios fastmlp / peer (>1: fastmlp faster); wall clock, and CPU time on 1 thread")
    for name in dict.fromkeys(x["ratio"] for x in ratios):
        sel = [x for x in ratios if x["ratio"] == name]
        for path in dict.fromkeys(x["cpu_path"] for x in sel):
            for t in sorted({x["threads"] for x in sel}):
                for clock in ("value", "cpu_value"):
                    vs = [x[clock] for x in sel
                          if x["cpu_path"] == path and x["threads"] == t and clock in x]
                    if not vs:
                        continue
                    worst = min((x for x in sel if x["cpu_path"] == path and x["threads"] == t
                                 and clock in x), key=lambda x: x[clock])
                    print(f"  {name:16} {path:8} {t}T {'cpu' if clock == 'cpu_value' else 'wall':4}"
                          f" min {min(vs):7.2f} median {statistics.median(vs):7.2f} max "
                          f"{max(vs):7.2f} over {len(vs):3} points (min at "
                          f"{'-'.join(map(str, worst['sizes']))} b{worst['batch']})")


def plot(doc, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        print("(matplotlib not installed: no PNG)")
        return
    ratios = doc["ratios"]
    panels = []
    for name in dict.fromkeys(x["ratio"] for x in ratios):
        for p in doc["cpu_paths"]:
            for t in doc["config"]["threads"]:
                for h in doc["config"]["heads"]:
                    sel = [x for x in ratios if x["ratio"] == name and x["cpu_path"] == p
                           and x["threads"] == t and x["head"] == h]
                    if sel:
                        clock = "cpu_value" if all("cpu_value" in x for x in sel) else "value"
                        panels.append((f"{name} {p} {t}T head {h} "
                                       f"({'CPU time' if clock == 'cpu_value' else 'wall'})",
                                       sel, clock))
    if not panels:
        return
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, sel, clock) in zip(axes.flat, panels):
        ws = sorted({x["width"] for x in sel})
        bs = sorted({x["batch"] for x in sel})
        m = np.full((len(bs), len(ws)), np.nan)
        for x in sel:
            m[bs.index(x["batch"]), ws.index(x["width"])] = x[clock]
        ax.axis("on")
        im = ax.imshow(np.log2(m), cmap="RdYlGn", vmin=-3, vmax=3, aspect="auto")
        ax.set_xticks(range(len(ws)), ws)
        ax.set_yticks(range(len(bs)), bs)
        ax.set_xlabel("width")
        ax.set_ylabel("batch")
        ax.set_title(title, fontsize=9)
        for i in range(len(bs)):
            for j in range(len(ws)):
                if not np.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6, label="log2(fastmlp / peer)")
    fig.suptitle(f"fastmlp grid ({doc['processor']}; FMA peak "
                 f"{doc['fma_peak_gflops']} GFLOP/s {doc['fma_peak_isa']})", fontsize=10)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
