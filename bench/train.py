"""Whole-epoch fused training (fastmlp.fit) vs PyTorch's eager loop (and JAX jit where installed).

Cases: the ReLU/MSE/SGD nets (seed 10-20-1, wide 784-1024-1024-10; JAX as a jitted step per
batch) and the toolkit chains of the general trainer (mlp_fit.cpp): 6-64-64-1 Tanh/HuberLoss/Adam
at batch 64 and 784-256-128-10 GELU/CrossEntropy/AdamW at batch 128, where JAX runs in its fastest
form, the whole epoch under one jax.jit with jax.lax.scan over the batches (the shuffled batch
gather inside the scan, as fit gathers; bench/grid.py's jax_fns). The toolkit cases also report
the best (min) of the interleaved rounds in process CPU time (samples per CPU second: on a shared
machine the time a process waits descheduled stays out), achieved GFLOP/s (6 flops per weight and
sample) and its fraction of the FMA peak bench/fma_peak.c measures for the threads used.

Same thread count (2 by default: fastmlp.set_num_threads, torch.set_num_threads); PyTorch and JAX
run in worker processes (their thread pools would otherwise spin against fastmlp's OpenMP threads)
driven from this one run, interleaved in rounds (fused, torch, jax, then jax, torch, fused: the
order alternates), each timed once the other contenders' processes use no CPU (their idle workers
spin after a call); the report is each contender's median samples/s and the ratios. For the wide
net it also times the step's matrix products alone (fastmlp._C.gemm on the same shapes: 3 forward
NT, 2 input-grad NN, 3 weight-grad TN) and reports fused step time / products time.

    python bench/train.py [--quick] [--out DIR] [--threads 2] [--only seed|wide|toolkit]
    python -m fastmlp bench train [the same options]      # from an install, any folder

Writes DIR/train.json and DIR/train.png (matplotlib optional). The machine is shared: timings
are noisy, hence interleaving and medians.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from _common import DEFAULT_OUT, HERE, require, wait_idle  # noqa: E402  (sets sys.path for --source)

require(__file__)
import fastmlp  # noqa: E402
from fastmlp import _C  # noqa: E402

SEED = [10, 20, 1]
WIDE = [784, 1024, 1024, 10]
SMALL = [6, 64, 64, 1]
MNIST = [784, 256, 128, 10]

# The chain a case trains: activation between Linear layers, loss, optimizer (torch defaults for
# the optimizer's other hyper-parameters). Cases not listed: ReLU, MSE, SGD.
SPECS = {
    "toolkit tanh b64": dict(act="tanh", loss="huber", optim="adam", lr=1e-3),
    "toolkit gelu b128": dict(act="gelu", loss="cross_entropy", optim="adamw", lr=1e-3),
}
DEFAULT_SPEC = dict(act="relu", loss="mse", optim="sgd", lr=0.01)


def spec_of(name):
    return SPECS.get(name, DEFAULT_SPEC)

# (name, sizes, batch, samples per fused epoch, torch steps per timing, targets)
CASES_FULL = [
    ("seed b64", SEED, 64, 131072, 2048, {"vs_torch": 50.0, "vs_jax": 20.0}),
    ("seed b16", SEED, 16, 131072, 4096, {}),
    ("seed b1024", SEED, 1024, 131072, 128, {}),
    ("wide b256", WIDE, 256, 256 * 24, 12, {"vs_torch": 2.8, "step_over_products": 1.15}),
    ("wide b16", WIDE, 16, 16 * 96, 48, {}),
    ("wide b1024", WIDE, 1024, 1024 * 8, 4, {}),
    ("toolkit tanh b64", SMALL, 64, 64 * 1024, 1024, {"vs_torch": 30.0, "vs_jax": 2.0}),
    ("toolkit gelu b128", MNIST, 128, 128 * 24, 24, {"vs_torch": 3.0, "vs_jax": 1.2}),
]


def quick_cases():
    out = []
    for name, sizes, b, n, steps, tg in CASES_FULL:
        if sizes is WIDE or sizes is MNIST:
            n, steps = max(b * 4, n // 3), max(2, steps // 3)
        else:
            steps = max(64, steps // 4)
        out.append((name, sizes, b, n, steps, tg))
    return out


def make_data(n, sizes, seed=0, classes=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    if classes:
        y = rng.integers(0, sizes[-1], n).astype(np.int64)
    else:
        y = rng.standard_normal((n, sizes[-1])).astype(np.float32)
    return X, y


def case_data(name, n, sizes):
    return make_data(n, sizes, classes=spec_of(name)["loss"] == "cross_entropy")


def n_weights(sizes):
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def fastmlp_model(sizes, act="relu"):
    from fastmlp import nn

    fastmlp.manual_seed(0)
    act_mod = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[act]
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(act_mod())
    return nn.Sequential(*mods)


def _clock():
    return time.perf_counter(), time.process_time()


def time_fused(model, X, y, batch, spec):
    """(samples, wall s, process CPU s) of one fit epoch."""
    w0, c0 = _clock()
    fastmlp.fit(model, X, y, epochs=1, batch_size=batch, lr=spec["lr"], loss=spec["loss"],
                optimizer=spec["optim"], seed=1, progress=False)
    w1, c1 = _clock()
    return len(X), w1 - w0, c1 - c0


class TorchRunner:
    def __init__(self, sizes, X, y, batch, spec, threads):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}[spec["act"]]
        mods = []
        for i in range(len(sizes) - 1):
            mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                mods.append(act())
        self.model = torch.nn.Sequential(*mods)
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        self.opt = opt[spec["optim"]](self.model.parameters(), lr=spec["lr"])
        self.loss = {"mse": torch.nn.MSELoss, "huber": torch.nn.HuberLoss,
                     "cross_entropy": torch.nn.CrossEntropyLoss}[spec["loss"]]()
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.batch = batch
        self.perm = torch.randperm(len(X))

    def run(self, steps):
        torch, B, n = self.torch, self.batch, len(self.X)
        for i in range(3):  # warm
            self._step(self.perm[:B])
        w0, c0 = _clock()
        for i in range(steps):
            s = (i * B) % max(1, n - B + 1)
            self._step(self.perm[s:s + B])
        w1, c1 = _clock()
        return steps * B, w1 - w0, c1 - c0

    def _step(self, idx):
        out = self.model(self.X[idx])
        loss = self.loss(out, self.y[idx])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class JaxRunner:
    """JAX's step jitted, called per batch (the ReLU/MSE/SGD cases)."""

    def __init__(self, sizes, X, y, batch, lr):
        import jax
        import jax.numpy as jnp

        self.jax = jax
        key = jax.random.PRNGKey(0)
        params = []
        for i in range(len(sizes) - 1):
            key, k1, k2 = jax.random.split(key, 3)
            bound = 1.0 / np.sqrt(sizes[i])
            params.append((jax.random.uniform(k1, (sizes[i + 1], sizes[i]), minval=-bound, maxval=bound),
                           jax.random.uniform(k2, (sizes[i + 1],), minval=-bound, maxval=bound)))
        self.params = params

        def forward(p, x):
            for i, (w, b) in enumerate(p):
                x = x @ w.T + b
                if i < len(p) - 1:
                    x = jax.nn.relu(x)
            return x

        def loss(p, x, t):
            return jnp.mean((forward(p, x) - t) ** 2)

        B = batch

        @jax.jit
        def step(p, X, Y, perm, i):  # the batch gather happens inside the compiled step
            idx = jax.lax.dynamic_slice(perm, (i * B,), (B,))
            g = jax.grad(loss)(p, X[idx], Y[idx])
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g)

        self.step = step
        self.X, self.y = jnp.asarray(X), jnp.asarray(y)
        self.batch = batch
        self.nb = max(1, len(X) // batch)
        self.perm = jnp.asarray(np.random.default_rng(0).permutation(len(X)).astype(np.int32))

    def run(self, steps):
        p = self.params
        for i in range(2):
            p = self.step(p, self.X, self.y, self.perm, i % self.nb)
        self.jax.block_until_ready(p)
        w0, c0 = _clock()
        for i in range(steps):
            p = self.step(p, self.X, self.y, self.perm, i % self.nb)
        self.jax.block_until_ready(p)
        w1, c1 = _clock()
        self.params = p
        return steps * self.batch, w1 - w0, c1 - c0


class JaxScanRunner:
    """JAX's fastest form (the toolkit cases): one jitted call per epoch, jax.lax.scan over the
    shuffled epoch's batches, each gathered inside the scan (bench/grid.py's jax_fns)."""

    def __init__(self, sizes, X, y, batch, spec):
        import jax

        sys.path.insert(0, HERE)
        from grid import jax_fns

        self.jax = jax
        _, self.epoch, _, self.state = jax_fns(jax, sizes, act=spec["act"], loss=spec["loss"],
                                               optim=spec["optim"], lr=spec["lr"], gather=True)
        nb = len(X) // batch
        self.n = nb * batch
        self.X, self.y = jax.device_put(X), jax.device_put(y)
        perm = np.random.default_rng(0).permutation(len(X))[: self.n].astype(np.int32)
        self.idx = jax.device_put(perm.reshape(nb, batch))
        jax.block_until_ready(self.epoch(self.state, self.X, self.y, self.idx))  # compile

    def run(self, steps):  # one epoch whatever `steps` is
        w0, c0 = _clock()
        self.state = self.epoch(self.state, self.X, self.y, self.idx)
        self.jax.block_until_ready(self.state)
        w1, c1 = _clock()
        return self.n, w1 - w0, c1 - c0


class Worker:
    """A contender (torch or jax) in its own process, so that its thread pool never spins against
    fastmlp's OpenMP threads; driven line by line (interleaving stays in this process)."""

    def __init__(self, kind, case_index, quick, threads):
        import subprocess

        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--case", str(case_index),
               "--threads", str(threads)] + (["--quick"] if quick else [])
        env = dict(os.environ)
        if kind == "jax":  # XLA's thread count is fixed at import (as bench/grid.py sets it)
            env["JAX_PLATFORMS"] = "cpu"
            if threads == 1:
                env["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                    "intra_op_parallelism_threads=1")
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env)
        ready = self.p.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"{kind} worker failed to start: {ready!r}")

    def run(self, steps):
        self.p.stdin.write(f"{steps}\n")
        self.p.stdin.flush()
        n, wall, cpu = self.p.stdout.readline().split()
        return int(n), float(wall), float(cpu)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def worker_main(kind, case_index, quick, threads):
    name, sizes, B, n, tsteps, targets = (quick_cases() if quick else CASES_FULL)[case_index]
    X, y = case_data(name, n, sizes)
    spec = spec_of(name)
    if kind == "torch":
        r = TorchRunner(sizes, X, y, B, spec, threads)
    elif name in SPECS:
        r = JaxScanRunner(sizes, X, y, B, spec)
    else:
        r = JaxRunner(sizes, X, y, B, spec["lr"])
    r.run(2)
    print("ready", flush=True)
    for line in sys.stdin:
        print(*r.run(int(line)), flush=True)
    return 0


def products_time(sizes, batch, reps):
    """Seconds for one step's matrix products alone (no epilogues): the mean over `reps` steps,
    as the fused epoch's time is a mean over its steps (same window length, same noise)."""
    rng = np.random.default_rng(1)
    Ws = [rng.standard_normal((o, i)).astype(np.float32) for i, o in zip(sizes[:-1], sizes[1:])]
    As = [rng.standard_normal((batch, w)).astype(np.float32) for w in sizes]
    outs_f = [np.empty((batch, o), np.float32) for o in sizes[1:]]
    outs_nn = [np.empty((batch, i), np.float32) for i in sizes[:-1]]
    outs_tn = [np.empty_like(w) for w in Ws]

    def once():
        for l, W in enumerate(Ws):  # forward NT: A_l @ W^T
            _C.gemm(As[l], W.T, outs_f[l])
        for l in range(len(Ws) - 1, -1, -1):
            dZ = outs_f[l]
            if l > 0:  # input grad NN: dZ @ W
                _C.gemm(dZ, Ws[l], outs_nn[l])
            _C.gemm(dZ.T, As[l], outs_tn[l])  # weight grad TN: dZ^T @ A

    once()
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t0) / reps


def run_case(case_index, cases, quick, rounds, threads, have_torch, have_jax, peak=None):
    name, sizes, B, n, tsteps, targets = cases[case_index]
    spec = spec_of(name)
    X, y = case_data(name, n, sizes)
    model = fastmlp_model(sizes, spec["act"])
    tr = Worker("torch", case_index, quick, threads) if have_torch else None
    jr = Worker("jax", case_index, quick, threads) if have_jax else None
    res = {"fused": [], "torch": [], "jax": [], "products_s": []}
    m = max(B, min(n, 4 * B))
    time_fused(model, X[:m], y[:m], B, spec)  # warm
    workers = [w for w in (tr, jr) if w]

    def quiet(but=None):
        # the other contenders' idle workers (OpenBLAS, libgomp, XLA) spin after a call: wait
        # until they use no CPU before the next one is timed
        wait_idle([w.p.pid for w in workers if w is not but])

    for r in range(rounds):
        # alternate which contender goes first
        order = ["fused", "torch", "jax"] if r % 2 == 0 else ["jax", "torch", "fused"]
        for who in order:
            if who == "fused":
                quiet()
                res["fused"].append(time_fused(model, X, y, B, spec))
            elif who == "torch" and tr:
                quiet(tr)
                res["torch"].append(tr.run(tsteps))
            elif who == "jax" and jr:
                quiet(jr)
                res["jax"].append(jr.run(tsteps))
        if sizes is WIDE:
            res["products_s"].append(products_time(sizes, B, max(1, n // B)))
    for w in (tr, jr):
        if w:
            w.close()
    out = {"name": name, "sizes": sizes, "batch": B, "samples_per_epoch": n, "torch_steps": tsteps,
           "rounds": rounds, "chain": spec, "samples_per_sec": {}, "all_samples_per_sec": {},
           "best_samples_per_sec": {}, "best_cpu_samples_per_sec": {}}
    for k in ("fused", "torch", "jax"):
        if res[k]:
            sps = [c / w for c, w, _ in res[k]]
            out["samples_per_sec"][k] = statistics.median(sps)
            out["all_samples_per_sec"][k] = sps
            out["best_samples_per_sec"][k] = max(sps)
            out["best_cpu_samples_per_sec"][k] = max(c / max(u, 1e-9) for c, _, u in res[k])
    sps = out["samples_per_sec"]
    out["fused_step_s"] = B / sps["fused"]
    for peer in ("torch", "jax"):
        if peer in sps:
            out[f"fused_vs_{peer}"] = sps["fused"] / sps[peer]
            out[f"fused_vs_{peer}_best"] = (out["best_samples_per_sec"]["fused"] /
                                            out["best_samples_per_sec"][peer])
            out[f"fused_vs_{peer}_best_cpu"] = (out["best_cpu_samples_per_sec"]["fused"] /
                                                out["best_cpu_samples_per_sec"][peer])
    flops = 6.0 * n_weights(sizes)
    out["gflops_best"] = {k: v * flops / 1e9 for k, v in out["best_samples_per_sec"].items()}
    out["gflops_best_cpu"] = {k: v * flops / 1e9 for k, v in out["best_cpu_samples_per_sec"].items()}
    if peak and threads in peak:
        out["fma_peak_gflops"] = peak[threads]
        out["fraction_of_fma_peak_best"] = {k: v / peak[threads] for k, v in out["gflops_best"].items()}
    if res["products_s"]:
        out["products_step_s"] = statistics.median(res["products_s"])
        out["step_over_products"] = out["fused_step_s"] / out["products_step_s"]
    out["targets"] = targets
    # The toolkit cases are judged on the best rounds (min time) of the interleaved runs; the
    # ReLU cases on the medians, as before.
    suffix = "_best" if name in SPECS else ""
    checks = {}
    if "vs_torch" in targets and "fused_vs_torch" in out:
        checks["vs_torch"] = out["fused_vs_torch" + suffix] >= targets["vs_torch"]
    if "vs_jax" in targets and "fused_vs_jax" in out:
        checks["vs_jax"] = out["fused_vs_jax" + suffix] >= targets["vs_jax"]
        frac = out.get("fraction_of_fma_peak_best", {}).get("fused")
        if not checks["vs_jax"] and frac is not None:
            checks["fma_peak_85pct_instead_of_jax"] = frac >= 0.85
    if "step_over_products" in targets and "step_over_products" in out:
        checks["step_over_products"] = out["step_over_products"] <= targets["step_over_products"]
    out["meets_target"] = checks
    return out


def plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no PNG)")
        return None
    names = [r["name"] for r in results]
    libs = [k for k in ("fused", "torch", "jax") if any(k in r["samples_per_sec"] for r in results)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    w = 0.8 / len(libs)
    for j, lib in enumerate(libs):
        vals = [r["samples_per_sec"].get(lib, np.nan) for r in results]
        xs = np.arange(len(names)) + (j - (len(libs) - 1) / 2) * w
        ax.bar(xs, vals, w, label={"fused": "fastmlp fused", "torch": "PyTorch eager",
                                   "jax": "JAX jit"}[lib])
    for i, r in enumerate(results):
        if "fused_vs_torch" in r:
            ax.annotate(f"{r['fused_vs_torch']:.1f}x", (i, r["samples_per_sec"]["fused"]),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("training samples / s (median)")
    ax.set_title("fastmlp.fit vs eager loops (labels: fused / PyTorch)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


ONLY_CHOICES = ("seed", "wide", "toolkit")  # read by `python -m fastmlp bench --only`


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", action="store_true",
                    help="import fastmlp from this checkout's python/ (an in-place build) instead of "
                         "the installed package")
    ap.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--only", choices=ONLY_CHOICES, default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--worker", choices=["torch", "jax"], help=argparse.SUPPRESS)
    ap.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.case, args.quick, args.threads)

    fastmlp.set_num_threads(args.threads)
    import importlib.metadata
    import importlib.util

    def version(mod):  # without importing it here: its thread pool must not start in this process
        if importlib.util.find_spec(mod) is None:
            return None
        try:
            return importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    torch_version, jax_version = version("torch"), version("jax")
    have_torch = torch_version is not None and not args.no_torch
    have_jax = jax_version is not None
    rounds = args.rounds or (3 if args.quick else 7)
    cases = quick_cases() if args.quick else CASES_FULL
    if args.only:
        cases = [c for c in cases if c[0].startswith(args.only)]
    all_cases = quick_cases() if args.quick else CASES_FULL
    load_start = list(os.getloadavg())
    peak = None
    if any(c[0] in SPECS for c in cases):
        sys.path.insert(0, HERE)
        from grid import fma_peak

        peak, _ = fma_peak([args.threads])
    results = []
    for case in cases:
        r = run_case(all_cases.index(case), all_cases, args.quick, rounds, args.threads,
                     have_torch, have_jax, peak)
        results.append(r)
        sps = r["samples_per_sec"]
        line = f"{r['name']:<11} fused {sps['fused'] / 1e6:8.3f} M/s"
        if "torch" in sps:
            line += f"  torch {sps['torch'] / 1e6:7.3f} M/s  ratio {r['fused_vs_torch']:6.1f}x"
        if "jax" in sps:
            line += f"  jax {sps['jax'] / 1e6:7.3f} M/s  ratio {r['fused_vs_jax']:6.1f}x"
        if r["name"] in SPECS:
            line += "\n    best: " + "  ".join(
                f"{k} {v / 1e6:.4f} M/s ({r['gflops_best'][k]:.1f} GFLOP/s)"
                for k, v in r["best_samples_per_sec"].items())
            line += "\n    best ratios wall / CPU: " + "  ".join(
                f"vs {p} {r[f'fused_vs_{p}_best']:.2f}x / {r[f'fused_vs_{p}_best_cpu']:.2f}x"
                for p in ("torch", "jax") if f"fused_vs_{p}_best" in r)
            if "fraction_of_fma_peak_best" in r:
                line += f"  fused {100 * r['fraction_of_fma_peak_best']['fused']:.0f}% of FMA peak"
            line += f"  meets {r['meets_target']}"
        if "step_over_products" in r:
            line += (f"  step {r['fused_step_s'] * 1e3:.2f} ms / products {r['products_step_s'] * 1e3:.2f} ms"
                     f" = {r['step_over_products']:.3f}")
        print(line, flush=True)
    report = {
        "benchmark": "fused training (fastmlp.fit) vs eager loops",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "threads": args.threads,
        "quick": args.quick,
        "fastmlp": fastmlp.config.config_dict(),
        "torch": torch_version,
        "jax": jax_version or "not installed (pip install jax to compare)",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load_avg_start": load_start,
                    "load_avg_end": list(os.getloadavg())},
        "note": ("medians of interleaved rounds on a shared machine (see load_avg); noisy. PyTorch "
                 "and JAX run in worker processes; JAX/XLA keeps its own CPU thread pool. Toolkit "
                 "cases: also the best round in wall and in process CPU time (best_*), which is "
                 "what their targets are judged on"),
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    jpath = os.path.join(args.out, "train.json")
    with open(jpath, "w") as f:
        json.dump(report, f, indent=2, default=str)
    ppath = plot(results, os.path.join(args.out, "train.png"))
    print(f"wrote {jpath}" + (f" and {ppath}" if ppath else ""))
    if not have_jax:
        print("JAX not installed: no JAX jit comparison (pip install jax)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
