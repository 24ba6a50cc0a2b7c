"""Optimizer step time: fastmlp.optim vs torch.optim (foreach=False and the default), over the
parameters of an MLP, same process, same thread count, interleaved rounds (A B A B ...); the
report is the median (and min) time per step and the ratio. Writes JSON.

    PYTHONPATH=python python bench/optimizers.py                     # Adam, 784-256-128-10
    PYTHONPATH=python python bench/optimizers.py --opt AdamW --sizes 6 64 64 1 --threads 1
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--opt", default="Adam", choices=["Adam", "AdamW", "RMSprop", "Adagrad", "SGD"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 256, 128, 10])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--out", default="bench/optimizers.json")
    args = ap.parse_args()

    import torch
    import fastmlp

    threads = args.threads or fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    shapes = []
    for a, b in zip(args.sizes[:-1], args.sizes[1:]):
        shapes += [(b, a), (b,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in shapes]
    kw = {"lr": 1e-3} if args.opt != "SGD" else {"lr": 1e-3, "momentum": 0.9}

    fp = [fastmlp.nn.Parameter(fastmlp.tensor(a)) for a in init]
    for p, g in zip(fp, grads):
        p.grad = fastmlp.tensor(g)
    runs = {"fastmlp": getattr(fastmlp.optim, args.opt)(fp, **kw)}
    for name, extra in (("torch foreach=False", {"foreach": False}), ("torch default", {})):
        tp = [torch.nn.Parameter(torch.tensor(a)) for a in init]
        for p, g in zip(tp, grads):
            p.grad = torch.tensor(g)
        runs[name] = getattr(torch.optim, args.opt)(tp, **kw, **extra)

    times = {k: [] for k in runs}
    for o in runs.values():  # warm up (state allocation)
        for _ in range(3):
            o.step()
    order = list(runs)
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            o = runs[name]
            t0 = time.perf_counter()
            for _ in range(args.steps):
                o.step()
            times[name].append((time.perf_counter() - t0) / args.steps)
    n_params = sum(int(np.prod(s)) for s in shapes)
    res = {"opt": args.opt, "sizes": args.sizes, "params": n_params, "threads": threads,
           "cpu_path": fastmlp.get_cpu_path(), "machine": platform.processor() or platform.machine(),
           "torch": torch.__version__, "fastmlp": fastmlp.__version__, "results": {}}
    base = statistics.median(times["fastmlp"])
    for name, ts in times.items():
        med = statistics.median(ts)
        res["results"][name] = {"median_us": med * 1e6, "min_us": min(ts) * 1e6,
                                "ratio_vs_fastmlp": med / base}
        print(f"{name:22s} median {med * 1e6:9.1f} us  min {min(ts) * 1e6:9.1f} us  "
              f"({med / base:.2f}x fastmlp's time)")
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
