"""GPU checks for bench/gpu_check.sh: kernel comparison vs the CPU path, sgemm vs cuBLAS, training.

    python bench/gpu_check.py compare --out DIR   every CUDA op vs fastmlp's CPU path and float64
    python bench/gpu_check.py gemm    --out DIR   sgemm vs cupy.matmul (cuBLAS FP32; run with
                                                  CUPY_TF32=0), interleaved, medians, GFLOP/s
    python bench/gpu_check.py train   --out DIR   fastmlp.nn on CPU vs CUDA vs PyTorch CUDA eager
                                                  (reports "skipped" when fastmlp.nn cannot move a
                                                  model to the GPU)
    python bench/gpu_check.py fit     --out DIR   fastmlp.fit on the GPU (fused epochs) vs PyTorch
                                                  CUDA eager: seed net samples/s, 784-1024-1024-10
                                                  batch 256 step time; first-epoch loss vs torch
    python bench/gpu_check.py fit_norm --out DIR  fastmlp.fit with LayerNorm / BatchNorm1d layers on
                                                  the GPU vs the same fit on the CPU (losses, running
                                                  statistics, eval predictions) and the fused GPU
                                                  step time vs PyTorch CUDA eager on the same net

Each writes DIR/<command>.json; exit status 1 when a correctness check fails. Speed is reported,
never asserted (the sgemm target, >= 0.85x cuBLAS at 4096^2, is printed as met / missed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

os.environ.setdefault("CUPY_TF32", "0")


def versions():
    v = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("cupy", "torch", "fastmlp"):
        try:
            v[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001
            v[name] = f"missing ({e})"
    try:
        import fastmlp.cuda as fc

        v["device"] = fc.get_device_name(0)
        v["cuda_runtime"] = fc._load().runtime_version()
        v["cuda_driver"] = fc._load().driver_version()
    except Exception as e:  # noqa: BLE001
        v["device"] = f"unavailable ({e})"
    v["CUPY_TF32"] = os.environ.get("CUPY_TF32")
    return v


def write(out, name, payload):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=str)
    print(f"wrote {path}")


def write_skipped(out, name, report, why):
    """A section that cannot run here: say why, write its report, and do not fail the check."""
    report["status"] = f"skipped: {why}"
    print(report["status"])
    write(out, name, report)
    return 0


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- compare -----------------------------------------------------------------------------------

def cmd_compare(args):
    import cupy as cp

    from fastmlp import ops

    rng = np.random.default_rng(0)
    cases, bad = [], 0

    def record(op, shape, got, cpu, ref, rtol, atol):
        nonlocal bad
        got, cpu, ref = (np.asarray(x, np.float64) for x in (got, cpu, ref))

        def maxdiff(x, y):  # NaN where both are NaN counts as equal; a lone NaN as infinitely off
            d = np.abs(x - y)
            d[np.isnan(x) & np.isnan(y)] = 0.0
            d[np.isnan(d)] = np.inf
            return float(np.max(d, initial=0.0))

        err_ref, err_cpu = maxdiff(got, ref), maxdiff(got, cpu)
        lim = atol + rtol * float(np.nanmax(np.abs(ref), initial=0.0))
        ok = bool(err_ref <= lim and err_cpu <= lim and np.array_equal(np.isnan(got), np.isnan(ref)))
        bad += not ok
        cases.append(dict(op=op, shape=shape, max_err_vs_float64=err_ref, max_err_vs_cpu=err_cpu,
                          limit=lim, ok=ok))
        if not ok:
            print(f"MISMATCH {op} {shape}: err vs float64 {err_ref:.3g}, vs cpu {err_cpu:.3g}, limit {lim:.3g}")

    def view(x, trans):
        return np.ascontiguousarray(x.T).T if trans else x

    def gview(x, trans):
        return cp.asarray(np.ascontiguousarray(x.T)).T if trans else cp.asarray(x)

    shapes = [(1, 1, 1), (3, 5, 7), (64, 10, 20), (64, 20, 10), (97, 89, 83), (128, 128, 128),
              (255, 257, 129), (64, 1024, 784), (256, 1024, 784), (1024, 784, 256), (64, 64, 4096),
              (1000, 1000, 1000), (2048, 2048, 2048), (1, 4096, 4096), (4096, 3, 4096)]
    for M, N, K in shapes:
        for ta in (False, True):
            for tb in (False, True):
                for epi in ("plain", "alpha_beta_bias_relu"):
                    a, b, c, bias = rnd(rng, M, K), rnd(rng, K, N), rnd(rng, M, N), rnd(rng, N)
                    kw = dict(alpha=0.75, beta=0.5, bias=bias, relu=True) if epi != "plain" else {}
                    ref = 0.75 * (a.astype(np.float64) @ b) + 0.5 * c + bias if kw else a.astype(np.float64) @ b
                    if kw:
                        ref = np.maximum(ref, 0)
                    cpu = c.copy()
                    ops.matmul(view(a, ta), view(b, tb), out=cpu, **kw)
                    gout = cp.asarray(c)
                    gkw = dict(kw, bias=cp.asarray(bias)) if kw else {}
                    ops.matmul(gview(a, ta), gview(b, tb), out=gout, **gkw)
                    record(f"gemm_{'T' if ta else 'N'}{'T' if tb else 'N'}_{epi}", [M, N, K],
                           cp.asnumpy(gout), cpu, ref, 1e-4, 2e-6 * K + 1e-6)
    for B, C in [(1, 1), (7, 3), (64, 10), (256, 1024), (1000, 37), (65536, 10), (3, 100000)]:
        x, g, bias = rnd(rng, B, C), rnd(rng, B, C), rnd(rng, C)
        x.reshape(-1)[:2] = [np.nan, 0.0]
        gx, gg = cp.asarray(x), cp.asarray(g)
        record("relu_forward", [B, C], cp.asnumpy(ops.relu(gx)), ops.relu(x), np.where(x > 0, x, np.where(np.isnan(x), x, 0)), 0, 0)
        record("relu_backward", [B, C], cp.asnumpy(ops.relu_backward(gg, gx)), ops.relu_backward(g, x), np.where(x > 0, g, 0), 0, 0)
        xf = np.nan_to_num(x)
        record("bias_forward", [B, C], cp.asnumpy(ops.bias_add(cp.asarray(xf), cp.asarray(bias))),
               ops.bias_add(xf, bias), xf.astype(np.float64) + bias, 1e-7, 0)
        record("bias_backward", [B, C], cp.asnumpy(ops.bias_grad(gg)), ops.bias_grad(g),
               g.astype(np.float64).sum(0), 1e-6, 1e-6)
        t = rnd(rng, B, C)
        loss = ops.mse_loss(cp.asarray(xf), cp.asarray(t))
        ref = np.mean((xf.astype(np.float64) - t) ** 2)
        record("mse_forward", [B, C], [float(loss)], [ops.mse_loss(xf, t)], [ref], 1e-6, 0)
        record("mse_backward", [B, C], cp.asnumpy(ops.mse_loss_backward(cp.asarray(xf), cp.asarray(t))),
               ops.mse_loss_backward(xf, t), 2.0 * (xf.astype(np.float64) - t) / xf.size, 1e-6, 1e-12)
    for opts in (dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=0.01),
                 dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True)):
        shapes_p = [(1024, 784), (1024,), (10, 1024), (10,)]
        ps = [rnd(rng, *s) for s in shapes_p]
        bs = [np.zeros(s, np.float32) for s in shapes_p] if opts.get("momentum") else None
        gps = [cp.asarray(p) for p in ps]
        gbs = None if bs is None else [cp.asarray(b) for b in bs]
        ref = [p.astype(np.float64) for p in ps]
        rbuf = [np.zeros(s) for s in shapes_p]
        for step in range(3):
            gs = [rnd(rng, *s) for s in shapes_p]
            ops.sgd_step_many(ps, gs, bs, first_step=step == 0, **opts)
            ops.sgd_step_many(gps, [cp.asarray(g) for g in gs], gbs, first_step=step == 0, **opts)
            for i, g in enumerate(gs):  # float64 torch.optim.SGD
                d = -g.astype(np.float64) if opts.get("maximize") else g.astype(np.float64)
                d = d + opts.get("weight_decay", 0.0) * ref[i]
                m = opts.get("momentum", 0.0)
                if m:
                    rbuf[i] = d if step == 0 else m * rbuf[i] + (1 - opts.get("dampening", 0.0)) * d
                    d = d + m * rbuf[i] if opts.get("nesterov") else rbuf[i]
                ref[i] = ref[i] - opts["lr"] * d
        for i, s in enumerate(shapes_p):
            record(f"sgd_step_many {sorted(opts.items())}", list(s), cp.asnumpy(gps[i]), ps[i], ref[i], 1e-5, 1e-6)
    print(f"compare: {len(cases) - bad}/{len(cases)} cases agree")
    write(args.out, "compare", dict(versions=versions(), cases=cases, failures=bad))
    return 1 if bad else 0


# ---- gemm benchmark ------------------------------------------------------------------------------

def cmd_gemm(args):
    import cupy as cp

    import fastmlp._cuda as fc
    from fastmlp import ops

    rng = np.random.default_rng(1)
    cases = []
    for n in (1024, 2048, 4096, 8192):
        cases.append(("square", "NN", n, n, n))
    for n in (4096,):
        cases += [("square", "NT", n, n, n), ("square", "TN", n, n, n)]
    for B in (64, 256, 1024):
        for fin, fout in ((784, 1024), (1024, 1024), (1024, 10)):
            cases.append((f"mlp fwd {fin}->{fout} b{B}", "NT", B, fout, fin))     # X @ W^T
            cases.append((f"mlp dX {fin}->{fout} b{B}", "NN", B, fin, fout))      # dY @ W
            cases.append((f"mlp dW {fin}->{fout} b{B}", "TN", fout, fin, B))      # dY^T @ X

    start, end = cp.cuda.Event(), cp.cuda.Event()

    def timed(fn, reps):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return cp.cuda.get_elapsed_time(start, end) / reps * 1e-3  # seconds per call

    results, bad = [], 0
    for label, tr, M, N, K in cases:
        a = cp.asarray(rnd(rng, K, M)).T if tr[0] == "T" else cp.asarray(rnd(rng, M, K))
        b = cp.asarray(rnd(rng, N, K)).T if tr[1] == "T" else cp.asarray(rnd(rng, K, N))
        out_f, out_c = cp.empty((M, N), cp.float32), cp.empty((M, N), cp.float32)
        f_fast = lambda: ops.matmul(a, b, out=out_f)  # noqa: E731
        f_cublas = lambda: cp.matmul(a, b, out=out_c)  # noqa: E731
        for f in (f_fast, f_cublas):
            for _ in range(2):
                f()
        cp.cuda.get_current_stream().synchronize()
        err = float(cp.max(cp.abs(out_f - out_c)))
        scale = float(cp.max(cp.abs(out_c))) or 1.0
        ok = err <= 1e-4 * scale + 2e-6 * K
        bad += not ok
        t1 = max(timed(f_cublas, 1), 1e-6)
        reps = max(1, min(200, int(0.01 / t1)))  # ~10 ms per measurement
        rounds = 7 if M * N * K >= 2 ** 36 else 11
        tf, tc = [], []
        for _ in range(rounds):  # interleaved A B A B ...
            tf.append(timed(f_fast, reps))
            tc.append(timed(f_cublas, reps))
        mf, mc = statistics.median(tf), statistics.median(tc)
        flop = 2.0 * M * N * K
        r = dict(case=label, trans=tr, M=M, N=N, K=K, plan=fc.sgemm_plan(M, N, K),
                 fastmlp_ms=mf * 1e3, cublas_ms=mc * 1e3, fastmlp_gflops=flop / mf / 1e9,
                 cublas_gflops=flop / mc / 1e9, ratio=mc / mf, reps=reps, rounds=rounds,
                 max_abs_diff=err, ok=ok)
        results.append(r)
        print(f"{label:28s} {tr} M={M:5d} N={N:5d} K={K:5d} [{r['plan']:>16s}] "
              f"fastmlp {r['fastmlp_gflops']:8.0f} GF/s  cuBLAS {r['cublas_gflops']:8.0f} GF/s  "
              f"ratio {r['ratio']:.2f}{'' if ok else '  MISMATCH %.3g' % err}", flush=True)
    target = next(r for r in results if r["case"] == "square" and r["M"] == 4096 and r["trans"] == "NN")
    met = target["ratio"] >= 0.85
    print(f"target sgemm >= 0.85x cuBLAS FP32 at 4096^2 NN: ratio {target['ratio']:.3f} -> "
          f"{'MET' if met else 'MISSED'}")
    write(args.out, "gemm", dict(versions=versions(), protocol="interleaved, median of rounds, CUDA "
                                 "events, CUPY_TF32=0", results=results,
                                 target_4096_ratio=target["ratio"], target_met=met, mismatches=bad))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(12, 5))
        names = [f"{r['case']} {r['trans']}" for r in results]
        ax.bar(range(len(results)), [r["ratio"] for r in results])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.85, color="r", lw=0.8, ls="--")
        ax.set_xticks(range(len(results)))
        ax.set_xticklabels(names, rotation=75, fontsize=7)
        ax.set_ylabel("fastmlp sgemm / cuBLAS FP32 throughput")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "gemm.png"), dpi=110)
    except Exception as e:  # noqa: BLE001
        print(f"(no plot: {e})")
    return 1 if bad else 0


# ---- training ----------------------------------------------------------------------------------

def to_numpy(t):
    for get in (lambda t: t.detach().cpu().numpy(), lambda t: t.cpu().numpy(), lambda t: t.numpy(),
                lambda t: __import__("cupy").asnumpy(t.data), lambda t: np.asarray(t.data)):
        try:
            return np.asarray(get(t), dtype=np.float64)
        except Exception:  # noqa: BLE001
            continue
    raise TypeError(f"cannot read {type(t).__name__} back as numpy")


def fm_tensor(fm, x):
    for make in (lambda: fm.tensor(x), lambda: fm.from_numpy(x), lambda: fm.Tensor(x)):
        try:
            return make()
        except Exception:  # noqa: BLE001
            continue
    raise TypeError("fastmlp has no tensor()/from_numpy()/Tensor() accepting a numpy array")


def load_weights(fm, fmodel, tmodel):
    """Copy a torch model's weights into a fastmlp model (several API spellings tried)."""
    sd = {k: v.detach().cpu().numpy().copy() for k, v in tmodel.state_dict().items()}
    errors = []
    for attempt in (lambda: fmodel.load_state_dict({k: fm_tensor(fm, v) for k, v in sd.items()}),
                    lambda: fmodel.load_state_dict(sd)):
        try:
            attempt()
            return
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    raise RuntimeError(f"could not load weights: {errors}")


def build_models(fm, fnn, torch, sizes, seed):
    torch.manual_seed(seed)
    tl, fl = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        tl.append(torch.nn.Linear(a, b))
        fl.append(fnn.Linear(a, b))
        if i < len(sizes) - 2:
            tl.append(torch.nn.ReLU())
            fl.append(fnn.ReLU())
    tmodel, fmodel = torch.nn.Sequential(*tl), fnn.Sequential(*fl)
    load_weights(fm, fmodel, tmodel)
    return tmodel, fmodel


def train_fastmlp(fm, fnn, foptim, model, X, Y, batch, steps, lr, device, sync):
    model = model.to(device)
    opt = foptim.SGD(model.parameters(), lr=lr, momentum=0.9)
    lossf = fnn.MSELoss()
    xs = [fm_tensor(fm, X[i * batch:(i + 1) * batch]).to(device) for i in range(len(X) // batch)]
    ys = [fm_tensor(fm, Y[i * batch:(i + 1) * batch]).to(device) for i in range(len(X) // batch)]
    losses, t0 = [], None
    for s in range(steps):
        if s == 2:
            sync()
            t0 = time.perf_counter()
        i = s % len(xs)
        opt.zero_grad()
        loss = lossf(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        losses.append(loss)
    sync()
    dt = time.perf_counter() - t0
    return [float(to_numpy(v)) for v in losses], (steps - 2) * batch / dt, model


def train_torch(torch, model, X, Y, batch, steps, lr, device):
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    lossf = torch.nn.MSELoss()
    xs = [torch.from_numpy(X[i * batch:(i + 1) * batch]).to(device) for i in range(len(X) // batch)]
    ys = [torch.from_numpy(Y[i * batch:(i + 1) * batch]).to(device) for i in range(len(X) // batch)]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    losses, t0 = [], None
    for s in range(steps):
        if s == 2:
            sync()
            t0 = time.perf_counter()
        i = s % len(xs)
        opt.zero_grad()
        loss = lossf(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    sync()
    dt = time.perf_counter() - t0
    return [float(v) for v in losses], (steps - 2) * batch / dt


def cmd_train(args):
    report = dict(versions=versions(), nets=[])
    try:
        import torch

        import fastmlp as fm
        import fastmlp.cuda
        import fastmlp.nn as fnn
        import fastmlp.optim as foptim
    except Exception as e:  # noqa: BLE001
        return write_skipped(args.out, "train", report, repr(e))
    if not torch.cuda.is_available():
        return write_skipped(args.out, "train", report, "torch has no CUDA")
    bad = 0
    rng = np.random.default_rng(2)
    nets = [("seed 10-20-1", [10, 20, 1], 64, 200, 0.05, 4096),
            ("784-1024-1024-10", [784, 1024, 1024, 10], 256, 60, 0.01, 8192)]
    for name, sizes, batch, steps, lr, n in nets:
        entry = dict(net=name, batch=batch, steps=steps, lr=lr)
        try:
            X = rnd(rng, n, sizes[0])
            Y = np.tanh(X[:, : sizes[-1]] * 0.5 + 0.1).astype(np.float32)
            tm, f_cpu = build_models(fm, fnn, torch, sizes, seed=0)
            _, f_gpu = build_models(fm, fnn, torch, sizes, seed=0)
            l_cpu, sps_cpu, _ = train_fastmlp(fm, fnn, foptim, f_cpu, X, Y, batch, steps, lr, "cpu", lambda: None)
            l_gpu, sps_gpu, _ = train_fastmlp(fm, fnn, foptim, f_gpu, X, Y, batch, steps, lr, "cuda",
                                              fastmlp.cuda.synchronize)
            l_t, sps_t = train_torch(torch, tm, X, Y, batch, steps, lr, "cuda")
            d_dev = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(l_gpu, l_cpu))
            d_t = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(l_gpu, l_t))
            ok = d_dev < 1e-2 and d_t < 1e-2
            entry.update(status="ok" if ok else "MISMATCH", final_loss_fastmlp_cpu=l_cpu[-1],
                         final_loss_fastmlp_cuda=l_gpu[-1], final_loss_torch_cuda=l_t[-1],
                         max_rel_loss_diff_cuda_vs_cpu=d_dev, max_rel_loss_diff_vs_torch=d_t,
                         samples_per_s_fastmlp_cpu=sps_cpu, samples_per_s_fastmlp_cuda=sps_gpu,
                         samples_per_s_torch_cuda=sps_t, speedup_vs_torch_cuda=sps_gpu / sps_t)
            bad += not ok
            print(f"{name}: loss cpu {l_cpu[-1]:.5f} cuda {l_gpu[-1]:.5f} torch {l_t[-1]:.5f}; "
                  f"samples/s fastmlp cuda {sps_gpu:,.0f}, torch cuda {sps_t:,.0f} "
                  f"({sps_gpu / sps_t:.2f}x), fastmlp cpu {sps_cpu:,.0f} -> {entry['status']}")
        except Exception as e:  # noqa: BLE001  (API not there yet: report, do not fail)
            entry.update(status=f"skipped: {e!r}", traceback=traceback.format_exc(limit=3))
            print(f"{name}: skipped ({e!r})")
        report["nets"].append(entry)
    report["status"] = "failed" if bad else "done"
    write(args.out, "train", report)
    return 1 if bad else 0


# ---- fit: the fused GPU trainer ------------------------------------------------------------------

def torch_eager_step_seconds(torch, model, opt, lossf, xs, ys, k):
    """Seconds per PyTorch CUDA eager step over k steps cycling the pre-sliced GPU batches."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(k):
        i = s % len(xs)
        opt.zero_grad()
        loss = lossf(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / k


def cmd_fit(args):
    report = dict(versions=versions(), protocol="interleaved rounds (fused epoch, torch eager steps), "
                  "medians; GPU data resident; torch eager iterates pre-sliced GPU batches in order",
                  nets=[])
    try:
        import cupy as cp
        import torch

        import fastmlp as fm
        import fastmlp.nn as fnn
        from fastmlp.trainer import fit
    except Exception as e:  # noqa: BLE001
        return write_skipped(args.out, "fit", report, repr(e))
    if not torch.cuda.is_available():
        return write_skipped(args.out, "fit", report, "torch has no CUDA")
    bad = 0
    rng = np.random.default_rng(3)
    # name, sizes, batch, samples per epoch, lr, rounds, torch steps per round
    nets = [("seed 10-20-1", [10, 20, 1], 64, 65536, 0.05, 5, 300),
            ("784-1024-1024-10", [784, 1024, 1024, 10], 256, 256 * 64, 0.01, 5, 64)]
    for name, sizes, batch, n, lr, rounds, tsteps in nets:
        entry = dict(net=name, batch=batch, samples_per_epoch=n, lr=lr, momentum=0.9)
        try:
            X = rnd(rng, n, sizes[0])
            Y = np.tanh(X[:, : sizes[-1]] * 0.5 + 0.1).astype(np.float32)
            tm, fmod = build_models(fm, fnn, torch, sizes, seed=0)
            tm = tm.to("cuda")
            fmod = fmod.to("cuda")
            Xg, Yg = cp.asarray(X), cp.asarray(Y)
            # Correctness: one epoch in order from the same weights vs torch eager (same batches).
            h = fit(fmod, Xg, Yg, epochs=1, batch_size=batch, lr=lr, momentum=0.9, shuffle=False,
                    progress=False)
            topt = torch.optim.SGD(tm.parameters(), lr=lr, momentum=0.9)
            lossf = torch.nn.MSELoss()
            xs = [torch.from_numpy(X[i:i + batch]).cuda() for i in range(0, n, batch)]
            ys = [torch.from_numpy(Y[i:i + batch]).cuda() for i in range(0, n, batch)]
            tl = []
            for xb, yb in zip(xs, ys):
                topt.zero_grad()
                loss = lossf(tm(xb), yb)
                loss.backward()
                topt.step()
                tl.append(loss.detach() * xb.shape[0])
            t_epoch_loss = float(torch.stack(tl).sum()) / n
            rel = abs(h["loss"][0] - t_epoch_loss) / max(abs(t_epoch_loss), 1e-12)
            ok = rel < 1e-3
            bad += not ok
            entry.update(first_epoch_loss_fastmlp=h["loss"][0], first_epoch_loss_torch=t_epoch_loss,
                         rel_diff=rel, check="ok" if ok else "MISMATCH")

            def torch_steps(k):
                return torch_eager_step_seconds(torch, tm, topt, lossf, xs, ys, k)

            torch_steps(5)  # warm
            fused, eager = [], []
            for r in range(rounds):  # interleaved: fused epoch, torch steps, ...
                h = fit(fmod, Xg, Yg, epochs=1, batch_size=batch, lr=lr, momentum=0.9, seed=r,
                        progress=False)
                fused.append(h["seconds"] / h["steps"])
                eager.append(torch_steps(tsteps))
            mf, me = statistics.median(fused), statistics.median(eager)
            entry.update(fastmlp_fused_step_ms=mf * 1e3, torch_eager_step_ms=me * 1e3,
                         fastmlp_fused_samples_per_s=batch / mf, torch_eager_samples_per_s=batch / me,
                         speedup_vs_torch_eager=me / mf, rounds=rounds)
            if name.startswith("seed"):  # the CPU fused trainer on the same data, for scale
                cmod = build_models(fm, fnn, torch, sizes, seed=0)[1]
                hc = fit(cmod, X, Y, epochs=2, batch_size=batch, lr=lr, momentum=0.9, seed=0,
                         progress=False)
                entry["fastmlp_cpu_fused_samples_per_s"] = float(np.median(hc["epoch_samples_per_sec"]))
            print(f"{name} batch {batch}: fused GPU {mf * 1e3:.3f} ms/step ({batch / mf:,.0f} samples/s), "
                  f"torch CUDA eager {me * 1e3:.3f} ms/step ({batch / me:,.0f} samples/s) -> "
                  f"{me / mf:.2f}x; first-epoch loss {entry['first_epoch_loss_fastmlp']:.6f} vs torch "
                  f"{t_epoch_loss:.6f} ({entry['check']})"
                  + (f"; CPU fused {entry['fastmlp_cpu_fused_samples_per_s']:,.0f} samples/s"
                     if "fastmlp_cpu_fused_samples_per_s" in entry else ""), flush=True)
        except Exception as e:  # noqa: BLE001
            entry.update(check="error", error=repr(e), traceback=traceback.format_exc(limit=5))
            print(f"{name}: ERROR {e!r}")
            bad += 1
        report["nets"].append(entry)
    report["status"] = "failed" if bad else "done"
    write(args.out, "fit", report)
    return 1 if bad else 0


def cmd_fit_norm(args):
    report = dict(versions=versions(), protocol="GPU fused fit vs CPU fused fit from the same seed "
                  "(losses rtol 1e-3, buffers and eval predictions atol 1e-3); step times: medians of "
                  "interleaved rounds (fused epoch, torch eager steps), GPU data resident", nets=[])
    try:
        import cupy as cp
        import torch

        import fastmlp as fm
        import fastmlp.nn as fnn
        from fastmlp.trainer import fit, predict
    except Exception as e:  # noqa: BLE001
        return write_skipped(args.out, "fit_norm", report, repr(e))
    if not torch.cuda.is_available():
        return write_skipped(args.out, "fit_norm", report, "torch has no CUDA")
    bad = 0
    rng = np.random.default_rng(5)
    n, din, hid, classes, batch = 8192, 64, 256, 10, 128
    X = rnd(rng, n, din)
    y = (np.abs(X[:, :classes]).argmax(1)).astype(np.int64)

    def layers(nnm, case):  # the same architecture from fastmlp.nn or torch.nn
        if case == "layernorm":
            return [nnm.Linear(din, hid), nnm.LayerNorm(hid), nnm.GELU(), nnm.Linear(hid, hid),
                    nnm.Tanh(), nnm.LayerNorm(hid), nnm.Linear(hid, classes)]
        mom = None if case == "batchnorm-momentum-none" else 0.1
        return [nnm.Linear(din, hid, bias=False), nnm.BatchNorm1d(hid, momentum=mom), nnm.ReLU(),
                nnm.Linear(hid, hid), nnm.SiLU(), nnm.BatchNorm1d(hid, momentum=mom),
                nnm.Linear(hid, classes)]

    for case in ("layernorm", "batchnorm", "batchnorm-momentum-none", "batchnorm-eval"):
        entry = dict(net=f"{din}-{hid}-{hid}-{classes} {case}", batch=batch, samples_per_epoch=n)
        try:
            def model(device):
                fm.manual_seed(0)
                m = fnn.Sequential(*layers(fnn, case))
                if case == "batchnorm-eval":
                    m[1].eval()
                    m[5].eval()
                return m.to(device) if device != "cpu" else m

            cpu, gpu = model("cpu"), model("cuda")
            Xg, yg = cp.asarray(X), cp.asarray(y)
            kw = dict(epochs=2, batch_size=batch, loss="cross_entropy", optimizer="adam", lr=1e-3,
                      seed=1, progress=False)
            hc, hg = fit(cpu, X, y, **kw), fit(gpu, Xg, yg, **kw)
            rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(hg["loss"], hc["loss"]))
            buf = max((float(np.max(np.abs(to_numpy(bg) - to_numpy(bc))))
                       for bg, bc in zip(gpu.buffers(), cpu.buffers())), default=0.0)
            cpu.eval(), gpu.eval()
            pred = float(np.max(np.abs(np.asarray(predict(gpu, X), np.float64) - predict(cpu, X))))
            ok = rel < 1e-3 and buf < 1e-3 and pred < 1e-3
            bad += not ok
            entry.update(loss_gpu=hg["loss"], loss_cpu=hc["loss"], loss_rel_diff=rel,
                         buffer_max_abs_diff=buf, predict_max_abs_diff=pred,
                         check="ok" if ok else "MISMATCH")
            gpu.train()
            if case == "batchnorm-eval":
                gpu[1].eval()
                gpu[5].eval()
            torch.manual_seed(0)
            tm = torch.nn.Sequential(*layers(torch.nn, case)).cuda()
            topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
            lossf = torch.nn.CrossEntropyLoss()
            Xt, yt = torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
            xs = [Xt[i:i + batch] for i in range(0, n, batch)]
            ys = [yt[i:i + batch] for i in range(0, n, batch)]

            def torch_steps(k):
                return torch_eager_step_seconds(torch, tm, topt, lossf, xs, ys, k)

            torch_steps(5)
            fused, eager = [], []
            for r in range(3):
                h = fit(gpu, Xg, yg, epochs=1, batch_size=batch, loss="cross_entropy",
                        optimizer="adam", lr=1e-3, seed=r, progress=False)
                fused.append(h["seconds"] / h["steps"])
                eager.append(torch_steps(64))
            mf, me = statistics.median(fused), statistics.median(eager)
            entry.update(fastmlp_fused_step_ms=mf * 1e3, torch_eager_step_ms=me * 1e3,
                         speedup_vs_torch_eager=me / mf)
            print(f"{entry['net']}: loss rel {rel:.2e}, buffers {buf:.2e}, predict {pred:.2e} "
                  f"({entry['check']}); fused GPU {mf * 1e3:.3f} ms/step, torch CUDA eager "
                  f"{me * 1e3:.3f} ms/step -> {me / mf:.2f}x", flush=True)
        except Exception as e:  # noqa: BLE001
            entry.update(check="error", error=repr(e), traceback=traceback.format_exc(limit=5))
            print(f"{entry['net']}: ERROR {e!r}")
            bad += 1
        report["nets"].append(entry)
    report["status"] = "failed" if bad else "done"
    write(args.out, "fit_norm", report)
    return 1 if bad else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["compare", "gemm", "train", "fit", "fit_norm"])
    p.add_argument("--out", default=os.environ.get("FASTMLP_GPU_OUT", "bench/results/gpu"))
    args = p.parse_args(argv)
    return {"compare": cmd_compare, "gemm": cmd_gemm, "train": cmd_train,
            "fit": cmd_fit, "fit_norm": cmd_fit_norm}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
