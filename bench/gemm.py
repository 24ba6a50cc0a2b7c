"""SGEMM benchmark: fastmlp vs numpy (OpenBLAS) vs PyTorch, interleaved in one process.

    python bench/gemm.py --out bench/results            # full run, 1 and 2 threads
    python bench/gemm.py --quick --threads 2             # squares up to 1024, fewer rounds
    python -m fastmlp bench gemm --quick --threads 2     # the same from an install, any folder

Shapes: squares 64..4096 and the MLP products (M x K x N) 64x10x20, 64x20x1, 256x784x1024,
256x1024x1024, 256x1024x10, each as NN (dY @ W), NT (X @ W^T) and TN (dY^T @ X) with the
transposed operand passed as a view. Every call writes into a preallocated output. For every
(shape, mode, threads) the libraries run in rounds A B C A B C ...: each turn first waits
--settle seconds (OpenBLAS's idle workers spin for 2^28 TSC cycles, ~0.12 s here, and libgomp's
for a while too: without the pause they steal the second core from whichever library runs next),
then makes one untimed warm-up call (wakes that library's pool), then times a batch; the reported
time is the median over rounds of the per-call batch time (the best is kept as well). Ratios are
numpy time / fastmlp time (> 1: fastmlp faster). The machine may be shared: medians, not bests,
are the claim, and a noisy run shows as a wide spread between the samples in the JSON.

numpy must use OpenBLAS's own (AVX-512) kernels: if OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE is set,
the script re-executes itself without them; the core type threadpoolctl reports is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import numpy as np  # noqa: E402

from _common import DEFAULT_OUT, HERE, require  # noqa: E402  (sets sys.path for --source)

require(__file__)
import fastmlp  # noqa: E402
from fastmlp import _C  # noqa: E402

try:
    import threadpoolctl
except ImportError:  # pragma: no cover
    threadpoolctl = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SQUARES = [64, 128, 256, 512, 1024, 2048, 4096]
MLP = [(64, 10, 20), (64, 20, 1), (256, 784, 1024), (256, 1024, 1024), (256, 1024, 10)]
MODES = ["NN", "NT", "TN"]


def operands(M, K, N, mode, rng):
    """float32 operands: a stored (M,K) or (K,M), b stored (K,N) or (N,K); views A (M,K), B (K,N)."""
    a = rng.standard_normal((K, M) if mode[0] == "T" else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if mode[1] == "T" else (K, N), dtype=np.float32)
    return a, b, (a.T if mode[0] == "T" else a), (b.T if mode[1] == "T" else b)


def make_calls(M, K, N, mode, rng, libs):
    a, b, A, B = operands(M, K, N, mode, rng)
    calls = {}
    out_f = np.empty((M, N), np.float32)
    calls["fastmlp"] = lambda: _C.gemm(A, B, out_f)
    out_n = np.empty((M, N), np.float32)
    calls["numpy"] = lambda: np.matmul(A, B, out=out_n)
    if "torch" in libs:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        TA = ta.T if mode[0] == "T" else ta
        TB = tb.T if mode[1] == "T" else tb
        out_t = torch.empty((M, N), dtype=torch.float32)
        calls["torch"] = lambda: torch.matmul(TA, TB, out=out_t)
    # Correctness guard: a fast wrong answer is not a result.
    calls["fastmlp"]()
    calls["numpy"]()
    err = float(np.max(np.abs(out_f - out_n))) if out_f.size else 0.0
    scale = float(np.sqrt(K)) * 1e-5 + 1e-6
    if err > scale * 10:
        raise RuntimeError(f"fastmlp result differs from numpy at {M}x{K}x{N} {mode}: {err}")
    return calls


def time_batch(f, n):
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n


def bench_one(calls, flops, rounds, target_s, settle):
    # Batch size so a batch lasts ~target_s (at least one call).
    t1 = time_batch(calls["numpy"], 1)
    n = max(1, min(20000, int(target_s / max(t1, 1e-7))))
    samples = {k: [] for k in calls}
    for _ in range(rounds):
        for name, f in calls.items():
            if settle > 0:
                time.sleep(settle)  # the previous library's idle threads stop spinning
            f()  # warm-up: wakes this library's pool
            samples[name].append(time_batch(f, n))
    out = {}
    for name, s in samples.items():
        med = statistics.median(s)
        out[name] = {"median_s": med, "gflops": flops / med / 1e9, "best_s": min(s),
                     "samples_s": s, "batch": n}
    return out


def fma_peak(threads):
    """{threads: GFLOP/s} of a tight FMA loop on the SIMD path in use (bench/fma_peak.c: AVX-512
    where present, else AVX2+FMA), or None without a compiler."""
    import shutil
    import subprocess
    import tempfile

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = os.path.join(tempfile.mkdtemp(), "fma_peak")
    try:
        subprocess.run([cc, "-O2", "-fopenmp", os.path.join(HERE, "fma_peak.c"), "-o", exe],
                       check=True, capture_output=True)
        out = {}
        for nt in threads:
            r = subprocess.run([exe], check=True, capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS=str(nt)))
            for line in r.stdout.splitlines():  # "isa avx2 threads N best X GFLOP/s"
                f = line.split()
                if int(f[3]) == nt:
                    out[nt] = float(f[5])
        return out or None
    except (subprocess.CalledProcessError, OSError, ValueError, IndexError):
        return None


def set_threads(nt):
    fastmlp.set_num_threads(nt)
    if torch is not None:
        torch.set_num_threads(nt)
    if threadpoolctl is not None:
        threadpoolctl.threadpool_limits(nt, user_api="blas")


def openblas_info():
    if threadpoolctl is None:
        return []
    return [{k: v for k, v in d.items() if k in ("internal_api", "version", "architecture",
                                                    "num_threads", "filepath")}
            for d in threadpoolctl.threadpool_info()]


def plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    threads = sorted({r["threads"] for r in results})
    fig, axes = plt.subplots(len(threads), 1, figsize=(14, 4.5 * len(threads)), squeeze=False)
    for ax, nt in zip(axes[:, 0], threads):
        rows = [r for r in results if r["threads"] == nt]
        labels = [f"{r['shape']} {r['mode']}" for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["ratio_vs_numpy"] for r in rows], 0.4, label="fastmlp vs numpy/OpenBLAS")
        if all("ratio_vs_torch" in r for r in rows):
            ax.bar(x + 0.2, [r["ratio_vs_torch"] for r in rows], 0.4, label="fastmlp vs torch")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.95, color="r", lw=0.6, ls="--")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_ylabel("speed ratio (>1: fastmlp faster)")
        ax.set_title(f"SGEMM, {nt} thread(s), median of interleaved rounds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


ONLY_CHOICES = ("squares", "mlp")  # read by `python -m fastmlp bench --only`


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="store_true",
                    help="import fastmlp from this checkout's python/ (an in-place build) instead of "
                         "the installed package")
    ap.add_argument("--quick", action="store_true", help="squares up to 1024, fewer rounds")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--only", choices=ONLY_CHOICES, default=None, help="one shape family")
    ap.add_argument("--settle", type=float, default=0.15,
                    help="seconds of idle before each library's turn (default 0.15)")
    ap.add_argument("--peak", action="store_true", help="also measure the FMA peak (bench/fma_peak.c)")
    args = ap.parse_args()

    libs = ["fastmlp", "numpy"] + (["torch"] if torch is not None and not args.no_torch else [])
    rounds = args.rounds or (5 if args.quick else 7)
    squares = [s for s in SQUARES if s <= (1024 if args.quick else 4096)]
    cases = []
    if args.only != "mlp":
        cases += [((s, s, s), "square") for s in squares]
    if args.only != "squares":
        cases += [(s, "mlp") for s in MLP]
    rng = np.random.default_rng(0)
    results = []
    for nt in args.threads:
        set_threads(nt)
        for (M, K, N), family in cases:
            for mode in MODES:
                calls = make_calls(M, K, N, mode, rng, libs)
                flops = 2.0 * M * N * K
                big = flops > 2e10
                r = bench_one(calls, flops, max(3, rounds // 2) if big else rounds,
                              target_s=0.0 if big else 0.02, settle=args.settle)
                row = {"shape": f"{M}x{K}x{N}", "M": M, "K": K, "N": N, "mode": mode,
                       "family": family, "threads": nt, "flops": flops, "libs": r,
                       "ratio_vs_numpy": r["numpy"]["median_s"] / r["fastmlp"]["median_s"]}
                if "torch" in r:
                    row["ratio_vs_torch"] = r["torch"]["median_s"] / r["fastmlp"]["median_s"]
                results.append(row)
                line = (f"t={nt} {row['shape']:>15} {mode}: fastmlp {r['fastmlp']['median_s']*1e6:10.1f} us "
                        f"{r['fastmlp']['gflops']:6.1f} GF | numpy {r['numpy']['median_s']*1e6:10.1f} us "
                        f"{r['numpy']['gflops']:6.1f} GF | ratio {row['ratio_vs_numpy']:.2f}")
                if "torch" in r:
                    line += f" | torch {r['torch']['gflops']:6.1f} GF ratio {row['ratio_vs_torch']:.2f}"
                print(line, flush=True)

    peak = fma_peak(args.threads) if args.peak else None
    if peak:
        print("FMA peak GFLOP/s:", peak)
    meta = {
        "fma_peak_gflops": peak,
        "settle_s": args.settle,
        "cpu_path": fastmlp.get_cpu_path(),
        "cpu_paths": fastmlp.supported_cpu_paths(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "fastmlp": getattr(fastmlp, "__version__", "dev"),
        "threadpools": openblas_info(),
        "openblas_coretype": [d.get("architecture") for d in openblas_info()
                              if d.get("internal_api") == "openblas"],
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "machine": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "rounds": rounds,
        "quick": args.quick,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "note": "interleaved medians on a shared machine; ratio = numpy_time / fastmlp_time",
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gemm.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print(f"wrote {path}")
    png = os.path.join(args.out, "gemm.png")
    if plot(results, png):
        print(f"wrote {png}")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
