"""Data-parallel fit: 2 processes x 1 thread (MPI, fit(distributed=True)) against 1 process x
2 threads, the 784 -> 1024 -> 1024 -> 10 ReLU net at global batch 512, and a cost model for more
processes on a real network.

    python bench/distributed.py --out bench/results             # 5 interleaved rounds
    python bench/distributed.py --rounds 3 --plot               # also draws distributed.png

Each round runs the two configurations as fresh child processes, alternating which goes first,
with a pause between them (idle OpenMP workers of the previous one must not steal a core). A
child trains 1 warm-up epoch and --epochs timed epochs of --steps steps each (fastmlp.fit, SGD,
shuffled); the step time is epoch time / steps; the rank-0 child of the MPI run also times every
all-reduce inside fit (the one call per step; its time includes waiting for the other rank) and a
bare Allreduce of the same buffer (the shared-memory bandwidth of this machine).

Cost model for N processes, each one machine like this one doing 1/N of the global batch:

    t(N) = t1 / N  +  2 (N - 1) / N * S / BW  +  alpha * log2(N)

t1: the measured 1-process step (1 process x 2 threads, global batch 512); S: the gradient buffer
(every weight and bias in float32, and the loss); 2 (N - 1) / N * S: the bytes each process sends
(and receives) in a bandwidth-optimal (ring / reduce-scatter + all-gather) all-reduce; BW: the
link bandwidth; alpha: the per-hop latency (defaults: 30 us on 10 Gb/s TCP Ethernet, 3 us on
100 Gb/s RDMA). Scaling "stops" where the efficiency t1 / (N t(N)) falls below 50% (half of each
added machine is spent waiting for the network); the speedup's maximum N is reported too.
The measured points and the model go to distributed.json (and the README's "Distributed training").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = (784, 1024, 1024, 10)
BATCH = 512


def _child(args):
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import numpy as np

    import fastmlp
    import fastmlp.distributed as dist
    from fastmlp import nn

    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    fastmlp.manual_seed(0)
    mods = []
    for i in range(len(LAYERS) - 1):
        mods.append(nn.Linear(LAYERS[i], LAYERS[i + 1]))
        if i < len(LAYERS) - 2:
            mods.append(nn.ReLU())
    net = nn.Sequential(*mods)
    rng = np.random.default_rng(1)
    n = BATCH * args.steps
    X = rng.standard_normal((n, LAYERS[0])).astype(np.float32)
    Y = rng.standard_normal((n, LAYERS[-1])).astype(np.float32)
    ar_time = [0.0]
    if world > 1:  # time the one all-reduce per step that fit makes (rank-local wall time)
        be = dist._group()
        inner = be.allreduce

        def timed(a, op="sum"):
            t0 = time.perf_counter()
            inner(a, op)
            ar_time[0] += time.perf_counter() - t0

        be.allreduce = timed
    kw = dict(batch_size=BATCH, lr=1e-3, seed=3, progress=False, distributed=world > 1)
    h = fastmlp.fit(net, X, Y, epochs=1, **kw)  # warm-up (pool start, page faults)
    epoch_s, ar_s = [], []
    for _ in range(args.epochs):
        ar_time[0] = 0.0
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        h = fastmlp.fit(net, X, Y, epochs=1, resume=h["state"], **kw)
        epoch_s.append(time.perf_counter() - t0)
        ar_s.append(ar_time[0])
    res = {"world": world, "threads": fastmlp.get_num_threads(), "steps": args.steps,
           "step_s": [e / args.steps for e in epoch_s],
           "allreduce_share": [a / e for a, e in zip(ar_s, epoch_s)] if world > 1 else None}
    if world > 1:  # a bare Allreduce of the same buffer: this machine's shared-memory bandwidth
        size = 1 + sum(LAYERS[i] * LAYERS[i + 1] + LAYERS[i + 1] for i in range(len(LAYERS) - 1))
        buf = np.ones(size, dtype=np.float32)
        be = dist._group()
        times = []
        for _ in range(8):
            be.barrier()
            t0 = time.perf_counter()
            inner(buf, "sum")
            times.append(time.perf_counter() - t0)
        res["bare_allreduce_s"] = times[2:]
    if rank == 0:
        print("RESULT " + json.dumps(res), flush=True)


def _mpiexec():
    for cand in (os.path.join(os.path.dirname(sys.executable), "mpiexec"), shutil.which("mpiexec")):
        if cand and os.path.exists(cand):
            return cand
    raise SystemExit("bench/distributed.py: no mpiexec (pip install mpi4py mpich)")


def _run(config, args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "..", "python")] + sys.path)
    me = [sys.executable, os.path.abspath(__file__), "--child", "--steps", str(args.steps),
          "--epochs", str(args.epochs)]
    if config == "1x2":
        env["OMP_NUM_THREADS"] = "2"
        cmd = me
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [_mpiexec(), "-n", "2"] + me
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{config} failed:\n{out.stdout}\n{out.stderr}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def model(t1, nbytes, bw_bits, alpha, nmax=1 << 16):
    """(N where efficiency < 50% first, N of the best speedup, speedups at a few N)."""
    bw = bw_bits / 8.0

    def t(N):
        return t1 / N + 2.0 * (N - 1) / N * nbytes / bw + alpha * math.log2(N)

    half = None
    best_n, best = 1, 1.0
    for N in range(1, nmax + 1):
        s = t1 / t(N)
        if half is None and s / N < 0.5:
            half = N
        if s > best:
            best_n, best = N, s
    pts = {N: round(t1 / t(N), 3) for N in (2, 4, 8, 16, 32, 64, 128) if N <= nmax}
    return {"bandwidth_gbit_s": bw_bits / 1e9, "latency_us": alpha * 1e6,
            "comm_ms_large_N": round(2.0 * nbytes / bw * 1e3, 3),
            "efficiency_below_50pct_at_N": half, "best_speedup_N": best_n,
            "best_speedup": round(best, 2), "speedup_at": pts}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="steps per timed epoch")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per child")
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--latency-10g-us", type=float, default=30.0)
    ap.add_argument("--latency-100g-us", type=float, default=3.0)
    ap.add_argument("--t1-ms", type=float, nargs="*", default=[18.0, 35.0],
                    help="more single-process step times to evaluate the model at (defaults: 18 ms, "
                         "twice the README's 8.9 ms fused step at batch 256 on 2 idle AVX-512 cores; "
                         "35 ms, the 5.7 GFLOP step at ~160 GFLOP/s on 2 idle AVX2 cores)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--plot", action="store_true")
    args = ap.parse_args()
    if args.child:
        return _child(args)

    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import fastmlp

    samples = {"1x2": [], "2x1": []}
    shares, bare = [], []
    for r in range(args.rounds):
        order = ("1x2", "2x1") if r % 2 == 0 else ("2x1", "1x2")
        for cfg in order:
            time.sleep(args.settle)
            res = _run(cfg, args)
            samples[cfg] += res["step_s"]
            if cfg == "2x1":
                shares += res["allreduce_share"]
                bare += res["bare_allreduce_s"]
        print(f"round {r + 1}/{args.rounds}: 1x2 {statistics.median(samples['1x2']) * 1e3:.1f} ms  "
              f"2x1 {statistics.median(samples['2x1']) * 1e3:.1f} ms", flush=True)
    t1 = statistics.median(samples["1x2"])
    t2 = statistics.median(samples["2x1"])
    params = sum(LAYERS[i] * LAYERS[i + 1] + LAYERS[i + 1] for i in range(len(LAYERS) - 1))
    nbytes = 4 * (params + 1)
    bare_s = statistics.median(bare)
    out = {
        "benchmark": "distributed", "layers": LAYERS, "global_batch": BATCH,
        "cpu_path": fastmlp.get_cpu_path(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "fastmlp": fastmlp.__version__, "note": "shared machine: medians of interleaved runs",
        "step_ms_1proc_2threads": {"median": t1 * 1e3, "min": min(samples["1x2"]) * 1e3,
                                   "samples": [s * 1e3 for s in samples["1x2"]]},
        "step_ms_2proc_1thread": {"median": t2 * 1e3, "min": min(samples["2x1"]) * 1e3,
                                  "samples": [s * 1e3 for s in samples["2x1"]]},
        "ratio_2x1_over_1x2": t2 / t1,
        "allreduce_share_of_step": {"median": statistics.median(shares), "samples": shares},
        "gradient_bytes_per_step": nbytes,
        "bare_allreduce_ms": bare_s * 1e3,
        "bare_allreduce_gbyte_s": nbytes / bare_s / 1e9,
        "model": {"formula": "t(N) = t1/N + 2(N-1)/N * S/BW + alpha*log2(N)", "t1_ms": t1 * 1e3,
                  "S_bytes": nbytes,
                  "10gbit": model(t1, nbytes, 10e9, args.latency_10g_us * 1e-6),
                  "100gbit": model(t1, nbytes, 100e9, args.latency_100g_us * 1e-6)},
        "model_at_other_t1": {f"{v:g}ms": {
            "10gbit": model(v * 1e-3, nbytes, 10e9, args.latency_10g_us * 1e-6),
            "100gbit": model(v * 1e-3, nbytes, 100e9, args.latency_100g_us * 1e-6)} for v in args.t1_ms},
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "distributed.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"1 process x 2 threads: {t1 * 1e3:.1f} ms/step   2 processes x 1 thread: {t2 * 1e3:.1f} "
          f"ms/step   ratio {t2 / t1:.2f}   all-reduce share {statistics.median(shares):.1%}   "
          f"bare all-reduce {bare_s * 1e3:.2f} ms ({nbytes / bare_s / 1e9:.1f} GB/s)")
    for label, mm in [(f"t1 {t1 * 1e3:.0f} ms (measured)", out["model"])] + [
            (f"t1 {k}", v) for k, v in out["model_at_other_t1"].items()]:
        for k in ("10gbit", "100gbit"):
            m = mm[k]
            print(f"{label} {k}: efficiency < 50% from N = {m['efficiency_below_50pct_at_N']}, best "
                  f"speedup {m['best_speedup']} at N = {m['best_speedup_N']}, speedups {m['speedup_at']}")
    print(f"wrote {path}")
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            print("--plot: matplotlib is not installed (pip install matplotlib); no PNG drawn")
            return

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        Ns = [2 ** k for k in range(0, 11)]
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, bw, a in (("10 Gb/s", 10e9, args.latency_10g_us * 1e-6),
                         ("100 Gb/s", 100e9, args.latency_100g_us * 1e-6)):
            ts = [t1 / N + 2.0 * (N - 1) / N * nbytes / (bw / 8) + a * math.log2(N) for N in Ns]
            ax.plot(Ns, [t1 / t for t in ts], marker="o", label=k)
        ax.plot(Ns, Ns, ls="--", color="gray", label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("processes (machines)")
        ax.set_ylabel("speedup over 1 process")
        ax.set_title(f"784-1024-1024-10, batch {BATCH}: t1 = {t1 * 1e3:.0f} ms, S = {nbytes / 1e6:.1f} MB")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "distributed.png"), dpi=110)


if __name__ == "__main__":
    main()
