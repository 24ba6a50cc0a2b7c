"""fastmlp.distributed, nn.parallel.DistributedDataParallel, DistributedSampler, fit(distributed=True).

Two kinds of test:
- real MPI: tests/distributed/train.py under ``mpiexec -n 2`` (twice) and ``-n 3``, and as one plain
  process (the reference), each a subprocess with a timeout (a hang fails, it never blocks CI);
  skipped with the reason when mpi4py or mpiexec is missing (.ci/run installs mpi4py + mpich);
- in process, no MPI: world size 1, the sampler against PyTorch's, the grad hooks, DDP's buckets
  against a recording backend, the fused trainer's all-reduce hook with ranks as threads, and the
  NCCL backend's calls against a stand-in CuPy (there is no GPU here: the real NCCL path is untested).
"""
import os
import shutil
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import fastmlp
import fastmlp.distributed as dist
from fastmlp import nn, optim
from fastmlp.distributed.backends import NcclBackend, SingleProcess
from fastmlp.nn.parallel import DistributedDataParallel as DDP
from fastmlp.utils.data import DataLoader, DistributedSampler, TensorDataset

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "distributed")
TIMEOUT = 60


# ---- real MPI -------------------------------------------------------------------------------------

def _mpiexec():
    """The mpiexec to use, or None; the mpich wheel puts it next to the interpreter."""
    for cand in (os.path.join(os.path.dirname(sys.executable), "mpiexec"), shutil.which("mpiexec")):
        if cand and os.path.exists(cand):
            return cand
    return None


def _need_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install mpi4py mpich): the MPI tests need it")
    exe = _mpiexec()
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install mpich provides one)")
    return exe


def _env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    # Children must import this checkout's fastmlp, whatever `python` the launcher finds.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _run(script, out_dir, nproc=None, timeout=TIMEOUT):
    cmd = [sys.executable, os.path.join(SCRIPTS, script), str(out_dir)]
    if nproc is not None:
        cmd = [_need_mpi(), "-n", str(nproc)] + cmd
    try:
        return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (a hang):\n{e.stdout}\n{e.stderr}")


def _train(tmp_path_factory, nproc, tag):
    d = tmp_path_factory.mktemp(f"dist_{tag}")
    r = _run("train.py", d, nproc)
    assert r.returncode == 0, f"train.py with {nproc} processes failed:\n{r.stdout}\n{r.stderr}"
    with np.load(d / "results.npz") as z:
        res = {k: z[k] for k in z.files}
    res["dir"] = d
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    _need_mpi()
    return {"1": _train(tmp_path_factory, None, "1"), "2": _train(tmp_path_factory, 2, "2"),
            "2b": _train(tmp_path_factory, 2, "2b"), "3": _train(tmp_path_factory, 3, "3")}


def _keys(res):
    return [k for k in res if k not in ("world", "kinds", "checks", "dir")]


def test_mpi_runs_have_the_right_world(runs):
    assert [int(runs[k]["world"]) for k in ("1", "2", "3")] == [1, 2, 3]


@pytest.mark.parametrize("n", ["2", "3"])
def test_mpi_checks_inside_the_run(runs, n):
    """All ranks end with bitwise-equal weights; resuming from rank 0's checkpoint (eager and fit)
    continues exactly as never stopping."""
    checks = [str(c) for c in runs[n]["checks"]]
    assert checks and all(c.endswith("=True") for c in checks), checks


def test_mpi_repeated_runs_are_bitwise_identical(runs):
    for k in _keys(runs["2"]):
        np.testing.assert_array_equal(runs["2"][k], runs["2b"][k], err_msg=k)


@pytest.mark.parametrize("n", ["2", "3"])
def test_mpi_n_processes_equal_one_process_same_global_batch(runs, n):
    """N ranks x (global batch 12 / N) == 1 process x batch 12 on the same order: eager DDP with
    SGD, SGD+momentum (+no_sync accumulation) and Adam when it exists; fit with SGD and momentum
    on the small and gemm paths, losses and validation losses too."""
    ref, got = runs["1"], runs[n]
    assert set(_keys(ref)) == set(_keys(got))
    for k in _keys(ref):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_mpi_adam_case(runs):
    if not hasattr(optim, "Adam"):
        pytest.skip("fastmlp.optim.Adam does not exist on this branch; the Adam case runs once it does")
    assert "eager_adam" in runs["2"]


def test_checkpoint_from_rank0_loads_in_one_process(runs):
    for name, width in (("eager_ckpt.pt", 16), ("fit_ckpt.pt", 300)):
        state = fastmlp.load(str(runs["2"]["dir"] / name))
        net = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                            nn.Linear(width, 2))
        net.load_state_dict(state["model"])
        assert np.isfinite(net(fastmlp.zeros(3, 6)).numpy()).all()
    assert state["fit"]["epoch"] == 2 and state["fit"]["steps"] == 10  # 2 epochs of 5 batches


def test_mpi_a_failing_rank_ends_every_rank(tmp_path):
    r = _run("fail.py", tmp_path, 2, timeout=30)
    assert r.returncode != 0
    assert "rank 1 fails on purpose" in r.stderr
    # the exception travels in the hook's first line too, so that line alone names it
    assert "raised an uncaught exception (RuntimeError: rank 1 fails on purpose)" in r.stderr


# ---- world size 1, no MPI ---------------------------------------------------------------------------

def test_single_process_without_mpi_is_world_size_one():
    code = ("import sys, fastmlp.distributed as d, numpy as np; d.init(); a = np.arange(3.0); "
            "d.all_reduce(a); d.broadcast(a, 0); d.barrier(); "
            "print(d.get_rank(), d.get_world_size(), d.get_backend(), 'mpi4py' in sys.modules, a.sum())")
    env = {k: v for k, v in os.environ.items() if k not in dist._MPI_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "single", "False", "3.0"]


def test_uninitialised_defaults_and_errors():
    if dist.is_initialized():
        pytest.skip("initialised by another test")
    assert dist.get_rank() == 0 and dist.get_world_size() == 1
    with pytest.raises(RuntimeError, match="init"):
        dist.all_reduce(np.ones(2))
    with pytest.raises(ValueError, match="backend"):
        dist.init("gloo")


@pytest.fixture
def world(monkeypatch):
    """fastmlp.distributed initialised with a given backend object for one test."""
    def use(backend):
        monkeypatch.setattr(dist, "_backend", backend)
        return backend
    yield use
    dist._backend = None


def test_collectives_world_one(world):
    world(SingleProcess())
    t = fastmlp.tensor([1.0, 2.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    w = dist.all_reduce(t, async_op=True)
    assert w.wait() and w.is_completed()
    out = [fastmlp.zeros(2)]
    dist.all_gather(out, t)
    np.testing.assert_array_equal(out[0].numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match="src"):
        dist.broadcast(t, src=1)
    with pytest.raises(ValueError, match="op"):
        dist.all_reduce(t, op="xor")
    with pytest.raises(TypeError, match="Tensor or an array"):
        dist.all_reduce([1.0, 2.0])


def test_save_on_rank0_writes_a_loadable_file(world, tmp_path):
    world(SingleProcess())
    net = nn.Linear(3, 2)
    dist.save_on_rank0({"model": net.state_dict()}, str(tmp_path / "c.pt"))
    sd = fastmlp.load(str(tmp_path / "c.pt"))["model"]
    np.testing.assert_array_equal(sd["weight"].numpy(), net.weight.detach().numpy())


# ---- DistributedSampler ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 12, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 7])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_matches_torch_without_shuffle(n, replicas, drop_last):
    pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchDS

    for rank in range(replicas):
        try:
            want = list(TorchDS(list(range(n)), num_replicas=replicas, rank=rank, shuffle=False,
                                drop_last=drop_last))
        except Exception as e:  # noqa: BLE001 - PyTorch refuses: so must we
            with pytest.raises(type(e)):
                list(DistributedSampler(list(range(n)), replicas, rank, shuffle=False, drop_last=drop_last))
            continue
        s = DistributedSampler(list(range(n)), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(s) == want and len(s) == len(want)


def test_distributed_sampler_shuffle_by_epoch_partitions_the_permutation():
    ds = list(range(10))
    parts = [DistributedSampler(ds, 3, r, shuffle=True, seed=4) for r in range(3)]
    for e in range(3):
        for p in parts:
            p.set_epoch(e)
        got = [list(p) for p in parts]
        whole = DistributedSampler(ds, 1, 0, shuffle=True, seed=4)
        whole.set_epoch(e)
        perm = list(whole)
        padded = perm + perm[:2]  # 10 -> 12, the head repeated
        assert got == [padded[r::3] for r in range(3)]
    assert list(parts[0]) == list(parts[0])  # same epoch, same order
    parts[0].set_epoch(5)
    assert list(parts[0]) != got[0] or len(got[0]) == 1


def test_distributed_sampler_errors():
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(list(range(4)), num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="rank"):
        DistributedSampler(list(range(4)), num_replicas=2, rank=1.0)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(list(range(4)), sampler=DistributedSampler(list(range(4)), 1, 0), shuffle=True)


def test_dataloader_with_sampler_reads_the_sampler_order():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    ds = TensorDataset(fastmlp.from_numpy(X))
    s = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    dl = DataLoader(ds, batch_size=2, sampler=s)
    assert len(dl) == 3
    rows = np.concatenate([b[0].numpy() for b in dl])
    np.testing.assert_array_equal(rows, X[1::2])


# ---- post-accumulate-grad hooks -------------------------------------------------------------------

def test_post_accumulate_grad_hook_runs_after_accumulation_and_can_be_removed():
    lin = nn.Linear(3, 2)
    seen = []
    h = lin.weight.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))
    hb = lin.bias.register_post_accumulate_grad_hook(lambda p: seen.append("b"))
    x = fastmlp.randn(4, 3)
    lin(x).sum().backward()
    assert len(seen) == 2 and isinstance(seen[0], np.ndarray)
    np.testing.assert_array_equal(seen[0], lin.weight.grad.numpy())
    lin(x).sum().backward()  # accumulation into an existing .grad fires it too
    assert len(seen) == 4
    h.remove()
    hb.remove()
    lin(x).sum().backward()
    assert len(seen) == 4
    # the generic path (float64 / odd ops): through the tape's leaf accumulation
    w = fastmlp.tensor([1.0, 2.0], requires_grad=True)
    hits = []
    w.register_post_accumulate_grad_hook(lambda p: hits.append(float(p.grad.sum())))
    (w * 3).sum().backward()
    assert hits == [6.0]
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="require"):
        fastmlp.zeros(2).register_post_accumulate_grad_hook(print)


def test_queue_callback_runs_once_at_the_end_of_backward():
    from fastmlp.autograd import queue_callback

    lin = nn.Linear(2, 1)
    order = []
    lin.weight.register_post_accumulate_grad_hook(lambda p: (order.append("w"), queue_callback(
        lambda: order.append("end"))))
    lin(fastmlp.ones(1, 2)).sum().backward()
    assert order == ["w", "end"]


# ---- DDP with a recording backend --------------------------------------------------------------------

class _Recording(SingleProcess):
    """Two ranks that always hold the same gradients (so the sum is 2x): records every call."""

    name = "recording"
    size = 2

    def __init__(self):
        self.calls = []

    def bcast(self, a, src=0):
        self.calls.append(("bcast", a.size))
        return a

    def iallreduce(self, a, op="sum"):
        self.calls.append(("iallreduce", a.size))
        a *= 2
        return super().iallreduce(a, op)


def test_ddp_buckets_start_during_backward_and_average(world):
    be = world(_Recording())
    fastmlp.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    ref.load_state_dict(net.state_dict())
    model = DDP(net, bucket_cap_mb=100 / 2**20)  # 100 bytes: about one parameter per bucket
    assert be.calls == [("bcast", sum(p.numel() for p in net.parameters()))]
    assert model.module is net and list(model.state_dict())[0].startswith("module.")
    be.calls.clear()
    sizes = [b.flat.size for b in model._buckets]
    assert len(sizes) >= 4 and sum(sizes) == sum(p.numel() for p in net.parameters())
    # The first bucket (the last layer) is reduced before the first layer's gradient exists.
    first_grad_at_launch = []
    orig = be.iallreduce

    def spy(a, op="sum"):
        first_grad_at_launch.append(net[0].weight.grad is not None)
        return orig(a, op)

    be.iallreduce = spy
    x, y = fastmlp.randn(5, 4), fastmlp.randn(5, 3)
    nn.MSELoss()(model(x), y).backward()
    assert first_grad_at_launch[0] is False and first_grad_at_launch[-1] is True
    assert len(be.calls) == len(sizes)
    nn.MSELoss()(ref(x), y).backward()
    for p, q in zip(net.parameters(), ref.parameters()):  # (2 * g) / 2
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    # no_sync: no communication; the next synced backward reduces the accumulated sum
    be.calls.clear()
    with model.no_sync():
        nn.MSELoss()(model(x), y).backward()
    assert be.calls == []
    nn.MSELoss()(model(x), y).backward()
    assert len(be.calls) == len(sizes)
    nn.MSELoss()(ref(x), y).backward()
    nn.MSELoss()(ref(x), y).backward()
    for p, q in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)


def test_ddp_unused_parameter_is_reduced_as_zero(world):
    world(_Recording())

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, x):
            return self.a(x)

    m = Two()
    model = DDP(m)
    model(fastmlp.ones(1, 2)).sum().backward()
    assert m.a.weight.grad is not None
    np.testing.assert_array_equal(m.b.weight.grad.numpy(), 0)


def test_ddp_needs_init_and_a_module():
    if dist.is_initialized():
        pytest.skip("initialised by another test")
    with pytest.raises(RuntimeError, match="init"):
        DDP(nn.Linear(2, 2))


def test_ddp_rejects_non_modules(world):
    world(SingleProcess())
    with pytest.raises(TypeError, match="nn.Module"):
        DDP(lambda x: x)
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        DDP(nn.Linear(2, 2), bucket_cap_mb=0)


# ---- the fused trainer's all-reduce hook, ranks as threads --------------------------------------------

def _run_threads(n, fn):
    """fn(r) for r in range(n), each on a thread of its own; waits for them (TIMEOUT each)."""
    threads = [threading.Thread(target=fn, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)


class _ThreadGroup:
    """N ranks as threads of this process: allreduce sums every rank's buffer (fixed order)."""

    def __init__(self, n):
        self.n = n
        self.bar = threading.Barrier(n)
        self.slots = [None] * n

    def member(self, rank):
        g = self

        class Member(SingleProcess):
            name = "threads"
            size = g.n

            def __init__(self):
                self.rank = rank

            def allreduce(self, a, op="sum"):
                g.slots[rank] = a
                g.bar.wait()
                if rank == 0:
                    total = g.slots[0].copy()
                    for s in g.slots[1:]:
                        total += s
                    g.result = total
                g.bar.wait()
                a[...] = g.result
                g.bar.wait()
                return a

            def bcast(self, a, src=0):
                g.slots[rank] = a
                g.bar.wait()
                a[...] = g.slots[src]
                g.bar.wait()
                return a

            def allgather(self, a):
                g.slots[rank] = a
                g.bar.wait()
                out = np.stack([s.copy() for s in g.slots])
                g.bar.wait()
                return out

            def bcast_object(self, obj, src=0):
                g.slots[rank] = obj
                g.bar.wait()
                v = g.slots[src]
                g.bar.wait()
                return v

        return Member()


@pytest.mark.parametrize("width", [8, 300])  # the small path and the gemm path
@pytest.mark.parametrize("n", [2, 3])
def test_fit_distributed_hook_matches_one_process(width, n, monkeypatch):
    """fit(distributed=True) with N ranks as threads (the native loop calls back into Python for
    the one all-reduce per step): same weights, losses and val losses as one process; 29 rows
    at batch 6 leaves a last batch of 5 rows (uneven parts)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((29, 5)).astype(np.float32)
    Y = rng.standard_normal((29, 2)).astype(np.float32)
    kw = dict(epochs=2, batch_size=6, lr=0.05, momentum=0.5, seed=3, progress=False,
              validation_data=(X[:7], Y[:7]))

    def net(seed):
        fastmlp.manual_seed(seed)
        return nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, 2))

    ref = net(0)
    h_ref = fastmlp.fit(ref, X, Y, **kw)
    nets = [net(0)] + [net(10 + r) for r in range(1, n)]  # rank 0's weights are broadcast
    hists = _fit_on_threads(n, nets, X, Y, monkeypatch, **kw)
    for r in range(n):
        for p, q in zip(nets[r].parameters(), ref.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hists[r]["loss"], h_ref["loss"], rtol=1e-5)
        np.testing.assert_allclose(hists[r]["val_loss"], h_ref["val_loss"], rtol=1e-5)
        assert hists[r]["steps"] == h_ref["steps"]
        for p, q in zip(nets[r].parameters(), nets[0].parameters()):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def _fit_on_threads(n, nets, X, Y, monkeypatch, **kw):
    """fit(nets[r], X, Y, distributed=True, **kw) on rank r of n ranks as threads; returns the
    histories. kw values that are callables of the rank (e.g. an optimizer built on nets[r]) are
    called in the rank's thread."""
    from fastmlp import trainer

    group = _ThreadGroup(n)
    local = threading.local()
    monkeypatch.setattr(trainer, "_distributed_group", lambda: local.be)
    hists, errors = [None] * n, []

    def run(r):
        try:
            local.be = group.member(r)
            kwr = {k: (v(nets[r]) if k == "optimizer" and callable(v) else v) for k, v in kw.items()}
            hists[r] = fastmlp.fit(nets[r], X, Y, distributed=True, **kwr)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            group.bar.abort()

    _run_threads(n, run)
    assert not errors, errors
    return hists


def _general_case(case):
    """(net factory, X, y, fit keywords) of the general trainer's distributed cases."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((26, 5)).astype(np.float32)  # batch 6: a last batch of 2 rows
    if case == "adam":
        Y = rng.standard_normal((26, 2)).astype(np.float32)
        mods = lambda: [nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 2)]  # noqa: E731
        kw = dict(optimizer="adam", lr=0.01, weight_decay=1e-3, amsgrad=True,
                  sample_weight=rng.uniform(0.2, 2.0, 26), validation_data=(X[:9], Y[:9]))
    elif case == "adamw_ce":
        Y = rng.integers(0, 3, 26)
        mods = lambda: [nn.Linear(5, 12), nn.GELU(), nn.Linear(12, 3)]  # noqa: E731
        kw = dict(optimizer="adamw", lr=0.02, loss=nn.CrossEntropyLoss(label_smoothing=0.1),
                  class_weight=np.array([0.5, 2.0, 1.0]), sample_weight=rng.uniform(0.5, 1.5, 26),
                  validation_data=(X[:9], Y[:9]))
    elif case == "tanh_huber_rmsprop":
        Y = rng.standard_normal((26, 2)).astype(np.float32)
        mods = lambda: [nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(),  # noqa: E731
                        nn.Linear(12, 2)]
        kw = dict(optimizer="rmsprop", lr=0.005, momentum=0.5, centered=True,
                  loss=nn.HuberLoss(delta=0.5), validation_data=(X[:9], Y[:9]))
    elif case == "bce_adagrad":
        Y = (rng.standard_normal((26, 2)) > 0).astype(np.float32)
        mods = lambda: [nn.Linear(5, 12), nn.LeakyReLU(0.1), nn.Linear(12, 2)]  # noqa: E731
        kw = dict(optimizer="adagrad", lr=0.1,
                  loss=nn.BCEWithLogitsLoss(pos_weight=fastmlp.tensor([2.0, 0.5])),
                  lr_schedule=lambda step: 0.1 * 0.9 ** step,
                  sample_weight=rng.uniform(0.5, 1.5, 26), validation_data=(X[:9], Y[:9]))
    else:  # dropout: masks drawn per global row, as in one process
        Y = rng.standard_normal((26, 2)).astype(np.float32)
        mods = lambda: [nn.Linear(5, 12), nn.SiLU(), nn.Dropout(0.3), nn.Linear(12, 2)]  # noqa: E731
        kw = dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, loss="l1")

    def net(seed):
        fastmlp.manual_seed(seed)
        return nn.Sequential(*mods())

    return net, X, Y, dict(kw, epochs=2, batch_size=6, seed=3, progress=False)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("case", ["adam", "adamw_ce", "tanh_huber_rmsprop", "bce_adagrad",
                                  "dropout_sgd"])
def test_fit_distributed_general_trainer_matches_one_process(case, n, monkeypatch):
    """fit(distributed=True) on the general trainer (mlp_fit: any activation, loss, optimizer,
    sample and class weights, a per-step lr schedule, dropout), ranks as threads: the same weights, losses, val losses
    (and accuracy) as one process with the same global batch and order; every rank bitwise equal.
    26 rows at batch 6: the last batch of 2 rows leaves a rank empty with 3 ranks."""
    net, X, Y, kw = _general_case(case)
    ref = net(0)
    h_ref = fastmlp.fit(ref, X, Y, **kw)
    nets = [net(0)] + [net(10 + r) for r in range(1, n)]  # rank 0's weights are broadcast
    hists = _fit_on_threads(n, nets, X, Y, monkeypatch, **kw)
    for r in range(n):
        for p, q in zip(nets[r].parameters(), ref.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hists[r]["loss"], h_ref["loss"], rtol=1e-5)
        np.testing.assert_allclose(hists[r]["val_loss"], h_ref["val_loss"], rtol=1e-5)
        assert hists[r].get("val_accuracy") == h_ref.get("val_accuracy")
        assert hists[r]["steps"] == h_ref["steps"] == 10
        for p, q in zip(nets[r].parameters(), nets[0].parameters()):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
        assert hists[r]["loss"] == hists[0]["loss"]


def test_fit_distributed_general_trainer_optimizer_instance_from_rank0(monkeypatch):
    """An optim instance: rank 0's state and step count are broadcast, and every rank's instance
    is left updated as one process leaves its own (continuing with it continues the run)."""
    net, X, Y, kw = _general_case("adam")
    kw = {k: v for k, v in kw.items() if k not in ("optimizer", "lr", "weight_decay", "amsgrad")}
    ref = net(0)
    ropt = optim.Adam(ref.parameters(), lr=0.01)
    fastmlp.fit(ref, X, Y, optimizer=ropt, **dict(kw, epochs=1))
    h_ref = fastmlp.fit(ref, X, Y, optimizer=ropt, **dict(kw, epochs=1))
    nets = [net(0), net(11)]
    opts = [optim.Adam(nets[0].parameters(), lr=0.01), optim.Adam(nets[1].parameters(), lr=0.01)]
    _fit_on_threads(2, nets, X, Y, monkeypatch, optimizer=lambda m: opts[nets.index(m)],
                    **dict(kw, epochs=1))
    # rank 1's state is garbage now: rank 0's is broadcast at the next call
    for st in opts[1].state.values():
        st["exp_avg"]._data[...] = 123.0
    hists = _fit_on_threads(2, nets, X, Y, monkeypatch, optimizer=lambda m: opts[nets.index(m)],
                            **dict(kw, epochs=1))
    for r in range(2):
        for p, q in zip(nets[r].parameters(), ref.parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hists[r]["loss"], h_ref["loss"], rtol=1e-5)
        for p in nets[r].parameters():
            assert int(opts[r].state[p]["step"].item()) == 10


def test_mlp_fit_allreduce_hook_contract():
    """_C.mlp_fit's grad_allreduce: one call per step on the flat buffer (every gradient, then the
    loss share); 2 ranks as threads reproduce one process, the L2 term of
    scikit-learn's penalty included (global batch in its denominator); bad arguments raise."""
    from fastmlp.ops import cpu as C
    from fastmlp.trainer import extract_chain
    from fastmlp.training_spec import resolve_loss, resolve_optimizer

    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 3)).astype(np.float32)
    Y = rng.standard_normal((10, 2)).astype(np.float32)
    sk = {"loss_sum_outputs": True, "loss_scale": 0.5, "l2_weights": 0.3}

    def chain():
        fastmlp.manual_seed(1)
        return extract_chain(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))

    def run(chain, **extra):
        o = resolve_optimizer("sgd", 0.1, {}, [])
        layers = chain.spec_layers([(o.state_for(pw, w), o.state_for(pb, b)) for (pw, pb), w, b
                                    in zip(chain.params, chain.weights, chain.biases)])
        r = C.mlp_fit(layers, X, Y, loss=resolve_loss("mse", 2).as_dict(), optim=o.as_dict(),
                      epochs=1, batch_size=4, shuffle=False, sklearn=sk, **extra)
        return r, chain.weights + chain.biases

    ref, ref_w = run(chain())
    group = _ThreadGroup(2)
    res, outs, sizes = [None, None], [None, None], []
    chains = [chain(), chain()]  # here: manual_seed is global

    def thread(rank):
        m = group.member(rank)

        def reduce(buf):
            sizes.append((buf.dtype, buf.shape))
            m.allreduce(buf)

        res[rank], outs[rank] = run(chains[rank], grad_allreduce=reduce, rank=rank, world_size=2)

    _run_threads(2, thread)
    for r in range(2):
        assert res[r]["steps"] == ref["steps"] == 3
        np.testing.assert_allclose(res[r]["losses"], ref["losses"], rtol=1e-6)
        for a, b in zip(outs[r], ref_w):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # one call per step per rank, on every gradient (3*4 + 4 + 4*2 + 2) and the loss
    assert sizes == [(np.float32, (3 * 4 + 4 + 4 * 2 + 2 + 1,))] * 6

    def boom(buf):  # the callable's exception leaves mlp_fit as it is
        raise RuntimeError("network down")
    with pytest.raises(RuntimeError, match="network down"):
        run(chain(), grad_allreduce=boom, rank=0, world_size=2)
    with pytest.raises(TypeError, match="grad_allreduce"):
        run(chain(), grad_allreduce=3, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        run(chain(), grad_allreduce=lambda b: None, rank=2, world_size=2)


def test_fit_distributed_refuses_mismatched_ranks(monkeypatch):
    """Ranks given different data all raise the same clear error (none is left waiting)."""
    from fastmlp import trainer

    group = _ThreadGroup(2)
    local = threading.local()
    monkeypatch.setattr(trainer, "_distributed_group", lambda: local.be)
    errors = [None, None]

    def run(r):
        local.be = group.member(r)
        X = np.zeros((10 + r, 3), np.float32)
        try:
            fastmlp.fit(nn.Linear(3, 1), X, X[:, 0], epochs=1, batch_size=4, lr=0.1,
                        distributed=True, progress=False)
        except ValueError as e:
            errors[r] = e

    _run_threads(2, run)
    assert all(e is not None and "different problems" in str(e) for e in errors), errors


def test_fit_resume_continues_exactly_in_one_process(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    Y = rng.standard_normal((40, 1)).astype(np.float32)

    def net():
        fastmlp.manual_seed(5)
        return nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 1))

    kw = dict(batch_size=8, lr=0.05, momentum=0.9, progress=False)
    a = net()
    h = fastmlp.fit(a, X, Y, epochs=2, seed=11, **kw)
    fastmlp.save({"model": a.state_dict(), "fit": h["state"]}, str(tmp_path / "c.pt"))
    ck = fastmlp.load(str(tmp_path / "c.pt"))
    b = net()
    b.load_state_dict(ck["model"])
    h2 = fastmlp.fit(b, X, Y, epochs=1, resume=ck["fit"], **kw)
    c = net()
    h3 = fastmlp.fit(c, X, Y, epochs=3, seed=11, **kw)
    for p, q in zip(b.parameters(), c.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    assert h2["loss"] == h3["loss"][2:] and h2["state"]["epoch"] == 3
    with pytest.raises(ValueError, match="seed"):
        fastmlp.fit(net(), X, Y, epochs=1, seed=12, resume=ck["fit"], **kw)
    with pytest.raises(ValueError, match="momentum buffers"):
        fastmlp.fit(net(), X, Y, epochs=1, resume=dict(ck["fit"], momentum_buffers=None), **kw)
    with pytest.raises(TypeError, match="resume"):
        fastmlp.fit(net(), X, Y, epochs=1, resume=[1], **kw)


# ---- NCCL backend against a stand-in CuPy ----------------------------------------------------------

class _FakeGpuArray:
    """A host array that presents itself as a GPU array (__cuda_array_interface__)."""

    def __init__(self, a):
        self.a = a
        self.dtype = a.dtype
        self.shape = a.shape
        self.size = a.size
        self.__cuda_array_interface__ = {"data": (a.ctypes.data, False), "shape": a.shape,
                                         "typestr": a.dtype.str, "version": 3}
        self.flags = a.flags

    def __itruediv__(self, n):
        self.a /= n
        return self


def _fake_cupy(world_size, log):
    nccl = types.SimpleNamespace(
        NCCL_SUM=0, NCCL_PROD=1, NCCL_MAX=2, NCCL_MIN=3, NCCL_FLOAT32=7, NCCL_FLOAT64=8,
        NCCL_FLOAT16=6, NCCL_INT32=2, NCCL_INT64=4, NCCL_UINT8=1, NCCL_INT8=0,
        get_unique_id=lambda: (1, 2, 3))

    def view(ptr, count, dt):
        dtype = {7: np.float32, 8: np.float64}[dt]
        return np.ctypeslib.as_array((np.ctypeslib.ctypes.c_char * (count * np.dtype(dtype).itemsize))
                                     .from_address(ptr)).view(dtype)

    class Comm:
        def __init__(self, size, uid, rank):
            log.append(("init", size, uid, rank))

        def allReduce(self, send, recv, count, dt, op, stream):
            log.append(("allReduce", count, dt, op, stream))
            view(recv, count, dt)[...] = view(send, count, dt) * world_size  # every rank alike

        def broadcast(self, send, recv, count, dt, root, stream):
            log.append(("broadcast", count, dt, root))

        def allGather(self, send, recv, count, dt, stream):
            log.append(("allGather", count, dt))
            v = view(recv, count * world_size, dt)
            for r in range(world_size):
                v[r * count:(r + 1) * count] = view(send, count, dt)

        def destroy(self):
            log.append(("destroy",))

    nccl.NcclCommunicator = Comm

    class Stream:
        def __init__(self, non_blocking=False):
            self.ptr = 1234

        def wait_event(self, ev):
            log.append(("wait_event",))

        def synchronize(self):
            pass

    current = Stream()
    current.ptr = 0

    class Event:
        done = True

        def __init__(self, disable_timing=False):
            pass

        def record(self, stream):
            log.append(("record", stream.ptr))

    cuda = types.SimpleNamespace(
        nccl=nccl, Stream=Stream, Event=Event, get_current_stream=lambda: current,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 2),
        Device=lambda i: types.SimpleNamespace(use=lambda: log.append(("device", i))))
    return types.SimpleNamespace(cuda=cuda, empty=lambda shape, dtype: _FakeGpuArray(
        np.empty(shape, dtype)))


class _BootMpi(SingleProcess):
    size = 2
    rank = 1
    local_rank = 3

    def bcast_object(self, obj, src=0):
        return (9, 9, 9) if obj is None else obj


def test_nccl_backend_calls_with_a_stand_in_cupy():
    log = []
    be = NcclBackend(cupy=_fake_cupy(2, log), mpi=_BootMpi())
    assert ("device", 1) in log and ("init", 2, (9, 9, 9), 1) in log  # local rank 3 % 2 GPUs
    a = _FakeGpuArray(np.arange(4, dtype=np.float32))
    be.allreduce(a, "sum")
    np.testing.assert_array_equal(a.a, [0, 2, 4, 6])
    assert log[-1] == ("allReduce", 4, 7, 0, 0)
    req = be.iallreduce(a, "avg")  # on the communication stream, ordered by events
    assert log[-4:-1] == [("record", 0), ("wait_event",), ("allReduce", 4, 7, 0, 1234)]
    req.wait()
    np.testing.assert_array_equal(a.a, [0, 2, 4, 6])  # (2x) / 2
    assert req.test()
    g = be.allgather(_FakeGpuArray(np.ones(3, np.float64)))
    np.testing.assert_array_equal(g.a, np.ones((2, 3)))
    be.bcast(a, 0)
    assert log[-1] == ("broadcast", 4, 7, 0)
    with pytest.raises(TypeError, match="GPU arrays"):
        be.allreduce(np.ones(2, np.float32))
    be.close()
    assert log[-1] == ("destroy",)


def test_ddp_recovers_after_a_backward_that_raised(world):
    be = world(_Recording())
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model = DDP(net, bucket_cap_mb=40 / 2**20)
    boom = net[0].bias.register_post_accumulate_grad_hook(lambda p: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        model(fastmlp.ones(2, 3)).sum().backward()
    boom.remove()
    net.zero_grad()
    be.calls.clear()
    model(fastmlp.ones(2, 3)).sum().backward()
    assert len(be.calls) == len(model._buckets)
    assert all(p.grad is not None for p in net.parameters())
