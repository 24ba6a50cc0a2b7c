"""Eager Linear + activation, forward and backward: fastmlp vs PyTorch, same process, same threads.

One step = ``y = act(fc(x))`` (``nn.Sequential(Linear, Act)`` and the functional spelling
``F.gelu(fc(x))``), then ``y.backward(g)`` with the gradients of the weights accumulated, as a
training step does. Runs are interleaved (A B A B ...) in rounds; the report is the min and the
median time per step of each library and the ratio. Writes JSON.

    PYTHONPATH=python python bench/activations.py --threads 1 --out act.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np


def build(lib, act, width, spelling):
    nn = lib.nn
    lin = nn.Linear(width, width)
    mod = getattr(nn, act)()
    if spelling == "sequential":
        net = nn.Sequential(lin, mod)
        return net, list(net.parameters())
    F = lib.nn.functional
    f = {"GELU": F.gelu, "Tanh": lib.tanh, "SiLU": F.silu, "Sigmoid": lib.sigmoid}[act]
    return (lambda x: f(lin(x))), list(lin.parameters())


def step_time(lib, fwd, params, x, g, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        for p in params:
            p.grad = None
        y = fwd(x)
        y.backward(g)
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--acts", default="GELU,Tanh,SiLU")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch

    import fastmlp

    torch.set_num_threads(a.threads)
    fastmlp.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((a.batch, a.width)).astype(np.float32)
    gn = rng.standard_normal((a.batch, a.width)).astype(np.float32)
    results = []
    for act in a.acts.split(","):
        for spelling in ("sequential", "functional"):
            libs = {"fastmlp": fastmlp, "torch": torch}
            setup = {}
            for name, lib in libs.items():
                lib.manual_seed(0)
                fwd, params = build(lib, act, a.width, spelling)
                x = lib.tensor(xn, requires_grad=False)
                g = lib.tensor(gn)
                step_time(lib, fwd, params, x, g, 5)  # warm up
                setup[name] = (lib, fwd, params, x, g)
            times = {n: [] for n in libs}
            for r in range(a.rounds):
                order = list(libs) if r % 2 == 0 else list(libs)[::-1]
                for n in order:
                    times[n].append(step_time(*setup[n], a.steps))
                    time.sleep(0.05)  # let the other library's idle workers settle
            row = dict(act=act, spelling=spelling, width=a.width, batch=a.batch, threads=a.threads,
                       isa=fastmlp.get_cpu_path(), torch=torch.__version__,
                       fastmlp=fastmlp.__version__, machine=platform.processor())
            for n in libs:
                row[f"{n}_min_us"] = min(times[n]) * 1e6
                row[f"{n}_median_us"] = statistics.median(times[n]) * 1e6
            row["speedup_median"] = row["torch_median_us"] / row["fastmlp_median_us"]
            results.append(row)
            print(f"{act:5s} {spelling:10s} fastmlp {row['fastmlp_min_us']:7.1f}/{row['fastmlp_median_us']:7.1f} us"
                  f"  torch {row['torch_min_us']:7.1f}/{row['torch_median_us']:7.1f} us (min/median)"
                  f"  x{row['speedup_median']:.2f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
