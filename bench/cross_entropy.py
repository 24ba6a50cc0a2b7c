"""F.cross_entropy forward + backward: fastmlp vs PyTorch eager, same process, same threads.

One call = ``F.cross_entropy(logits, target)`` on a leaf that requires grad, then ``.backward()``
(the gradient reset in between). Runs are interleaved (A B A B ...) in rounds; the report is the
min and median time per call of each library and the ratio of medians. Writes JSON.

    PYTHONPATH=python python bench/cross_entropy.py [--threads 1] [--timer cpu] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

SHAPES = [(128, 10, 400), (1024, 1000, 20)]  # (rows, classes, calls per round)


TIMERS = {"wall": time.perf_counter, "cpu": time.process_time}
timer = time.perf_counter


def run(lib, F, x, t, calls):
    a = lib.tensor(x, requires_grad=True)
    tt = lib.tensor(t)
    t0 = timer()
    for _ in range(calls):
        a.grad = None
        F.cross_entropy(a, tt).backward()
    return (timer() - t0) / calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="bench/cross_entropy.json")
    ap.add_argument("--timer", choices=sorted(TIMERS), default="wall",
                    help="cpu: process CPU time, steadier on a busy machine (use with --threads 1)")
    args = ap.parse_args()
    global timer
    timer = TIMERS[args.timer]
    import torch
    import fastmlp

    torch.set_num_threads(args.threads)
    fastmlp.set_num_threads(args.threads)
    libs = {"fastmlp": (fastmlp, fastmlp.nn.functional), "torch": (torch, torch.nn.functional)}
    rng = np.random.default_rng(0)
    results = []
    for rows, classes, calls in SHAPES:
        x = rng.standard_normal((rows, classes)).astype(np.float32)
        t = rng.integers(0, classes, rows)
        times = {k: [] for k in libs}
        for name, (lib, F) in libs.items():  # warm-up
            run(lib, F, x, t, max(calls // 10, 1))
        for r in range(args.rounds):
            order = list(libs) if r % 2 == 0 else list(libs)[::-1]
            for name in order:
                lib, F = libs[name]
                times[name].append(run(lib, F, x, t, calls))
                time.sleep(0.05)  # let idle OpenMP workers settle
        for name, ts in times.items():
            results.append(dict(shape=[rows, classes], library=name, threads=args.threads,
                                min_us=min(ts) * 1e6, median_us=statistics.median(ts) * 1e6,
                                rounds=args.rounds, calls=calls, timer=args.timer))
        f = statistics.median(times["fastmlp"])
        p = statistics.median(times["torch"])
        print(f"({rows}, {classes}) threads={args.threads} timer={args.timer}: fastmlp min {min(times['fastmlp'])*1e6:.1f} "
              f"median {f*1e6:.1f} us | torch min {min(times['torch'])*1e6:.1f} median {p*1e6:.1f} us "
              f"| torch/fastmlp {p / f:.2f}x")
    meta = dict(cpu_path=fastmlp.get_cpu_path(), torch=torch.__version__,
                fastmlp=getattr(fastmlp, "__version__", "dev"), machine=platform.machine(),
                note="shared machine: other jobs were running")
    with open(args.out, "w") as fh:
        json.dump(dict(meta=meta, results=results), fh, indent=1)


if __name__ == "__main__":
    main()
