"""Training-step rate of the eager torch-style API: fastmlp vs PyTorch, same process, same threads.

One step = forward, MSE loss, zero_grad, backward, SGD step, written exactly as in the seed
program (``torch.relu(self.fc1(x))`` style for the seed net, ``nn.Sequential`` for the deep ones).
Runs are interleaved (A B A B …) in rounds; the report is the median time per step of each library
and the ratio. Writes JSON (and a PNG when matplotlib is available).

    python bench/mlp.py                 # both configurations
    python bench/mlp.py --config seed --profile   # + where the time goes
    python bench/mlp.py --timer cpu     # CPU time: steadier on a busy machine
    python -m fastmlp bench mlp [the same options]   # from an install, any folder
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

from _common import DEFAULT_OUT, require  # noqa: E402  (sets sys.path for --source)

require(__file__)
import fastmlp  # noqa: E402,F401

CONFIGS = {
    "seed": dict(sizes=[10, 20, 1], batch=64, steps=200, rounds=15),
    "wide": dict(sizes=[784, 1024, 1024, 10], batch=256, steps=8, rounds=9),
    # issue 11's toolkit configurations: activation, loss and optimizer beyond ReLU/MSE/SGD
    "gelu_ce_adamw": dict(sizes=[784, 256, 128, 10], batch=128, steps=20, rounds=9, act="GELU",
                          loss="CrossEntropyLoss", opt="AdamW"),
    "tanh_huber_adam": dict(sizes=[6, 64, 64, 1], batch=64, steps=200, rounds=15, act="Tanh",
                            loss="HuberLoss", opt="Adam"),
}


def make_seed_net(lib):
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self):
            super(Net, self).__init__()
            self.fc1 = nn.Linear(10, 20)
            self.fc2 = nn.Linear(20, 1)

        def forward(self, x):
            x = lib.relu(self.fc1(x))
            x = self.fc2(x)
            return x

    return Net()


def make_net(lib, sizes, act="ReLU"):
    if sizes == [10, 20, 1] and act == "ReLU":
        return make_seed_net(lib)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(lib.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(getattr(lib.nn, act)())
    return lib.nn.Sequential(*layers)


def setup(lib, sizes, batch, state=None, act="ReLU", loss="MSELoss", opt="SGD"):
    net = make_net(lib, sizes, act)
    if state is not None:
        net.load_state_dict(state)
    crit = getattr(lib.nn, loss)()
    optimizer = (lib.optim.SGD(net.parameters(), lr=0.01) if opt == "SGD"
                 else getattr(lib.optim, opt)(net.parameters(), lr=1e-3))
    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.standard_normal((batch, sizes[0]), dtype=np.float32))
    if loss == "CrossEntropyLoss":
        y = lib.from_numpy(rng.integers(0, sizes[-1], batch).astype(np.int64))
    else:
        y = lib.from_numpy(rng.standard_normal((batch, sizes[-1]), dtype=np.float32))
    return net, crit, optimizer, x, y


TIMER = time.perf_counter


def run_steps(net, crit, opt, x, y, n):
    t0 = TIMER()
    for _ in range(n):
        outputs = net(x)
        loss = crit(outputs, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (TIMER() - t0) / n


def profile_breakdown(lib, net, crit, opt, x, y, n):
    """Median µs per phase of a step (manual timing)."""
    phases = {"forward": [], "loss": [], "zero_grad": [], "backward": [], "step": []}
    pc = TIMER
    for _ in range(n):
        t0 = pc()
        out = net(x)
        t1 = pc()
        loss = crit(out, y)
        t2 = pc()
        opt.zero_grad()
        t3 = pc()
        loss.backward()
        t4 = pc()
        opt.step()
        t5 = pc()
        for k, a, b in (("forward", t0, t1), ("loss", t1, t2), ("zero_grad", t2, t3),
                        ("backward", t3, t4), ("step", t4, t5)):
            phases[k].append((b - a) * 1e6)
    return {k: statistics.median(v) for k, v in phases.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", action="store_true",
                    help="import fastmlp from this checkout's python/ (an in-place build) instead of "
                         "the installed package")
    ap.add_argument("--config", choices=sorted(CONFIGS) + ["all"], default="all")
    ap.add_argument("--threads", type=int, default=None, help="threads for both libraries")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="also print a per-phase breakdown and "
                    "a cProfile of fastmlp's steps")
    ap.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                    help="wall clock (default), or the process's CPU time (all threads), which "
                    "is steadier on a machine shared with other jobs")
    ap.add_argument("--out", default=os.path.join(DEFAULT_OUT, "mlp.json"))
    args = ap.parse_args()
    global TIMER
    TIMER = time.perf_counter if args.timer == "wall" else time.process_time

    import fastmlp

    try:
        import torch
    except ImportError:
        torch = None
    threads = args.threads or fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)

    results = []
    names = sorted(CONFIGS) if args.config == "all" else [args.config]
    for name in names:
        cfg = CONFIGS[name]
        sizes, batch, steps = cfg["sizes"], cfg["batch"], cfg["steps"]
        rounds = args.rounds or cfg["rounds"]
        fastmlp.manual_seed(0)
        extra = {k: cfg[k] for k in ("act", "loss", "opt") if k in cfg}
        f = setup(fastmlp, sizes, batch, **extra)
        state = {k: v.numpy().copy() for k, v in f[0].state_dict().items()}
        t = setup(torch, sizes, batch, {k: torch.from_numpy(v) for k, v in state.items()}, **extra) \
            if torch is not None else None
        run_steps(*f, max(2, steps // 4))  # warm up
        if t is not None:
            run_steps(*t, max(2, steps // 4))
        ft, tt = [], []
        for _ in range(rounds):
            ft.append(run_steps(*f, steps))
            if t is not None:
                tt.append(run_steps(*t, steps))
        fm = statistics.median(ft)
        rec = {"config": name, "sizes": sizes, "batch": batch, "threads": threads,
               "timer": args.timer,
               "fastmlp_us_per_step": fm * 1e6, "fastmlp_steps_per_s": 1 / fm,
               "cpu_path": fastmlp.get_cpu_path()}
        line = f"{name:5s} {sizes} batch {batch}: fastmlp {fm * 1e6:8.1f} us/step"
        if t is not None:
            tm = statistics.median(tt)
            rec.update(torch_us_per_step=tm * 1e6, torch_steps_per_s=1 / tm, speedup=tm / fm,
                       torch_version=torch.__version__)
            line += f"   torch {tm * 1e6:8.1f} us/step   speedup {tm / fm:5.2f}x"
        print(line, flush=True)
        if args.profile:
            br = profile_breakdown(fastmlp, *f, max(50, steps * 5))
            rec["fastmlp_phases_us"] = br
            print("   fastmlp phases (median us): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in br.items()))
            if t is not None:
                brt = profile_breakdown(torch, *t, max(50, steps * 5))
                rec["torch_phases_us"] = brt
                print("   torch   phases (median us): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in brt.items()))
            import cProfile
            import pstats

            pr = cProfile.Profile()
            pr.enable()
            run_steps(*f, steps * 5)
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(12)
        results.append(rec)

    meta = {"python": sys.version.split()[0], "machine": platform.machine(),
            "fastmlp": fastmlp.__version__, "numpy": np.__version__,
            "note": "median over interleaved rounds; shared machine, timings are noisy"}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "results": results}, fh, indent=2)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [r["config"] for r in results]
        xs = np.arange(len(labels))
        ax.bar(xs - 0.2, [r["fastmlp_steps_per_s"] for r in results], 0.4, label="fastmlp")
        if all("torch_steps_per_s" in r for r in results):
            ax.bar(xs + 0.2, [r["torch_steps_per_s"] for r in results], 0.4, label="PyTorch")
        ax.set_xticks(xs, labels)
        ax.set_yscale("log")
        ax.set_ylabel("training steps / s")
        ax.set_title(f"eager training step, {threads} thread(s)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.splitext(args.out)[0] + ".png", dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
