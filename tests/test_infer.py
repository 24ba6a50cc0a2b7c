"""Inference: the native forward plan (ops.InferPlan / _C.infer_forward, csrc/cpu/mlp_infer.cpp),
trainer.predict on it (out=, no re-extraction, no allocation after the first call) and the eager
``with no_grad(): model(x)`` forward of an nn.Sequential chain in one native call."""
import copy
import pickle
import tracemalloc

import numpy as np
import pytest

import fastmlp
from fastmlp import nn, ops, trainer
from fit_helpers import chain_net

ACT = {"identity": None, "relu": (1, 0.0, 0.0), "tanh": (2, 0.0, 0.0), "sigmoid": (3, 0.0, 0.0),
       "gelu": (4, 0.0, 0.0), "leaky_relu": (7, 0.1, 0.0), "elu": (8, 1.0, 0.0)}
PATHS = ["rows", "tiles", "gemm", "reference"]


def f64_act(a, name):
    if name == "identity":
        return a
    if name == "relu":
        return np.maximum(a, 0)
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-a))
    if name == "gelu":
        from math import erf
        return 0.5 * a * (1 + np.vectorize(erf)(a / np.sqrt(2)))
    if name == "leaky_relu":
        return np.where(a > 0, a, 0.1 * a)
    if name == "elu":
        return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))
    raise KeyError(name)


def make(sizes, seed, bias=True):
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
          for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.standard_normal(o).astype(np.float32) * 0.1 if bias else None for o in sizes[1:]]
    return ws, bs


def ref64(ws, bs, acts, X):
    a = X.astype(np.float64)
    for w, b, act in zip(ws, bs, acts):
        a = a @ w.T.astype(np.float64) + (0 if b is None else b)
        a = f64_act(a, act)
    return a


@pytest.mark.parametrize("sizes", [(10, 20, 1), (3, 100, 1), (7, 13, 29, 10), (20, 300, 4),
                                   (5, 1), (20, 64, 64, 10)])
@pytest.mark.parametrize("act", ["relu", "tanh", "gelu", "leaky_relu", "identity"])
def test_every_path_matches_float64(cpu_path, sizes, act):
    ws, bs = make(sizes, 3, bias=act != "identity")
    acts = [act] * (len(ws) - 1) + ["identity"]
    plan = ops.InferPlan(ws, bs, [ACT[a] for a in acts])
    rng = np.random.default_rng(4)
    for n in (1, 3, 8, 17, 64, 300):
        X = rng.standard_normal((n, sizes[0])).astype(np.float32)
        want = ref64(ws, bs, acts, X)
        tol = 2e-5 * max(1.0, np.abs(want).max()) * np.sqrt(max(sizes))
        for path in PATHS:
            got = ops.infer(plan, X, path=path)
            assert got.shape == (n, sizes[-1]) and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=f"{path} n={n}")


@pytest.mark.parametrize("path", PATHS[:3])
def test_thread_count_does_not_change_results(cpu_path, threads, path):
    ws, bs = make((20, 256, 256, 10), 5)
    plan = ops.InferPlan(ws, bs, [ACT["relu"], ACT["tanh"], None])
    X = np.random.default_rng(6).standard_normal((300, 20)).astype(np.float32)
    threads(1)
    one = ops.infer(plan, X, path=path)
    threads(2)
    two = ops.infer(plan, X, path=path)
    np.testing.assert_array_equal(one, two)


def test_rows_and_tiles_paths_do_not_depend_on_neighbour_rows(cpu_path):
    ws, bs = make((7, 13, 29, 10), 8)
    plan = ops.InferPlan(ws, bs, [ACT["relu"], ACT["relu"], None])
    X = np.random.default_rng(9).standard_normal((600, 7)).astype(np.float32)
    for path in ("rows", "tiles"):
        full = ops.infer(plan, X, path=path)
        np.testing.assert_array_equal(ops.infer(plan, X[3:300:2].copy(), path=path), full[3:300:2])
        np.testing.assert_array_equal(ops.infer(plan, X[5:6].copy(), path=path), full[5:6])


def test_nan_propagates_through_relu(cpu_path):
    ws, bs = make((4, 8, 2), 1)
    plan = ops.InferPlan(ws, bs, [ACT["relu"], None])
    X = np.ones((20, 4), np.float32)
    X[3, 0] = np.nan
    for path in PATHS:
        got = ops.infer(plan, X, path=path)
        assert np.isnan(got[3]).all() and np.isfinite(np.delete(got, 3, 0)).all(), path


def test_path_choice():
    ws, bs = make((10, 20, 1), 0)
    plan = ops.InferPlan(ws, bs, [ACT["relu"], None])
    assert plan.choose(1) == "rows"
    assert plan.choose(64) == "tiles"
    ws, bs = make((784, 256, 256, 10), 0)
    assert ops.InferPlan(ws, bs, [ACT["relu"]] * 2 + [None]).choose(256) == "tiles"


def seq(sizes, act=nn.ReLU, seed=0, dropout=0.0):
    return chain_net(sizes, act, dropout, seed)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU])
def test_predict_and_no_grad_forward_match_torch(cpu_path, act):
    torch = pytest.importorskip("torch")
    m = seq((20, 64, 32, 10), act)
    tm = torch.nn.Sequential(*[
        torch.nn.Linear(x.in_features, x.out_features) if isinstance(x, nn.Linear)
        else getattr(torch.nn, type(x).__name__)() for x in m])
    with torch.no_grad():
        for fl, tl in zip(m, tm):
            if isinstance(fl, nn.Linear):
                tl.weight.copy_(torch.from_numpy(fl.weight.numpy()))
                tl.bias.copy_(torch.from_numpy(fl.bias.numpy()))
    for n in (1, 5, 16, 100, 600):
        X = np.random.default_rng(n).standard_normal((n, 20)).astype(np.float32)
        with torch.no_grad():
            want = tm(torch.from_numpy(X)).numpy()
        np.testing.assert_allclose(trainer.predict(m, X), want, rtol=1e-5, atol=1e-5)
        with fastmlp.no_grad():
            y = m(fastmlp.from_numpy(X))
        assert not y.requires_grad
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m(fastmlp.from_numpy(X)).detach().numpy(), want, rtol=1e-5,
                                   atol=1e-5)


def test_predict_out_and_new_array_per_call():
    m = seq((10, 20, 1))
    X = np.random.default_rng(0).standard_normal((7, 10)).astype(np.float32)
    a, b = trainer.predict(m, X), trainer.predict(m, X)
    assert a is not b and not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, b)
    out = np.full((7, 1), np.nan, np.float32)
    assert trainer.predict(m, X, out=out) is out
    np.testing.assert_array_equal(out, a)
    assert fastmlp.predict(m, X).shape == (7, 1)
    with pytest.raises(ValueError, match=r"out must have shape \(7, 1\)"):
        trainer.predict(m, X, out=np.empty((7, 2), np.float32))
    with pytest.raises(TypeError, match="out must be a float32"):
        trainer.predict(m, X, out=np.empty((7, 1)))
    with pytest.raises(ValueError, match="writable C-contiguous"):
        trainer.predict(m, X, out=np.empty((7, 2), np.float32)[:, :1])
    ro = np.empty((7, 1), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable C-contiguous"):
        trainer.predict(m, X, out=ro)
    with pytest.raises(ValueError, match=r"predict: X must have shape \(n, 10\), got \(7, 3\)"):
        trainer.predict(m, X[:, :3])
    # conversions still work: float64, strided, lists
    np.testing.assert_allclose(trainer.predict(m, X.astype(np.float64)), a, rtol=1e-6)
    Xs = np.repeat(X, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(trainer.predict(m, Xs), a)
    np.testing.assert_allclose(trainer.predict(m, X.tolist()), a, rtol=1e-6)
    assert trainer.predict(m, np.empty((0, 10), np.float32)).shape == (0, 1)


def test_plan_follows_parameter_changes():
    m = seq((6, 16, 3))
    X = np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32)

    def eager():
        return m(fastmlp.from_numpy(X)).detach().numpy()

    first = trainer.predict(m, X)
    # in place (an optimizer step): the plan reads the parameters in place
    opt = fastmlp.optim.SGD(m.parameters(), lr=0.5)
    loss = nn.MSELoss()(m(fastmlp.from_numpy(X)), fastmlp.from_numpy(np.ones((40, 3), np.float32)))
    loss.backward()
    opt.step()
    second = trainer.predict(m, X)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, eager(), rtol=1e-5, atol=1e-6)
    with fastmlp.no_grad():
        np.testing.assert_allclose(m(fastmlp.from_numpy(X)).numpy(), second, rtol=1e-5, atol=1e-6)
    # a parameter's array replaced, a layer replaced, a state dict loaded, a mode switch
    m[0].weight.data = fastmlp.from_numpy(np.zeros((16, 6), np.float32))
    np.testing.assert_allclose(trainer.predict(m, X), eager(), rtol=1e-5, atol=1e-6)
    m[2] = nn.Linear(16, 3)
    np.testing.assert_allclose(trainer.predict(m, X), eager(), rtol=1e-5, atol=1e-6)
    other = seq((6, 16, 3), seed=7)
    m.load_state_dict(other.state_dict())
    np.testing.assert_allclose(trainer.predict(m, X), trainer.predict(other, X), rtol=1e-6)
    with fastmlp.no_grad():
        np.testing.assert_allclose(m(fastmlp.from_numpy(X)).numpy(), trainer.predict(other, X),
                                   rtol=1e-6)


def test_dropout_in_training_mode_keeps_the_layer_loop():
    m = seq((8, 32, 2), dropout=0.5)
    X = np.random.default_rng(2).standard_normal((50, 8)).astype(np.float32)
    with fastmlp.no_grad():
        m.train()
        y = m(fastmlp.from_numpy(X)).numpy()
        assert m.__dict__["_infer"][2] is None  # dropout active: not one native call
        m.eval()
        z = m(fastmlp.from_numpy(X)).numpy()
        assert m.__dict__["_infer"][2] is not None
    assert not np.allclose(y, z)
    np.testing.assert_allclose(z, m(fastmlp.from_numpy(X)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_models_outside_the_native_forward_still_work():
    fastmlp.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))
    x = fastmlp.from_numpy(np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32))
    with fastmlp.no_grad():
        y = m(x)
    np.testing.assert_allclose(y.numpy(), m(x).detach().numpy(), rtol=1e-6)
    m64 = seq((4, 8, 2)).double()
    with fastmlp.no_grad():
        y = m64(fastmlp.from_numpy(np.ones((3, 4))))
    assert y.numpy().dtype == np.float64


def test_pickle_and_deepcopy_after_predict():
    m = seq((10, 20, 1))
    X = np.random.default_rng(0).standard_normal((9, 10)).astype(np.float32)
    want = trainer.predict(m, X)
    with fastmlp.no_grad():
        m(fastmlp.from_numpy(X))
    for c in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        np.testing.assert_array_equal(trainer.predict(c, X), want)
        with fastmlp.no_grad():
            np.testing.assert_array_equal(c(fastmlp.from_numpy(X)).numpy(), want)


def test_no_allocation_after_the_first_call():
    m = seq((20, 64, 64, 10))
    X = np.random.default_rng(0).standard_normal((256, 20)).astype(np.float32)
    out = np.empty((256, 10), np.float32)
    trainer.predict(m, X, out=out)
    plan = trainer.extract_chain(m).infer
    grows = plan.info()["workspace_grows"]
    for n in (256, 100, 1, 17):
        trainer.predict(m, X[:n], out=out[:n])
    assert plan.info()["workspace_grows"] == grows
    tracemalloc.start()
    try:
        trainer.predict(m, X, out=out)
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            trainer.predict(m, X, out=out)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grew = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grew < 4096, f"{grew} bytes allocated over 200 predict calls with out="
    assert plan.info()["workspace_grows"] == grows


@pytest.mark.parametrize("act", [nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Hardtanh, nn.ReLU6,
                                 nn.Sigmoid, nn.SiLU, lambda: nn.GELU(approximate="tanh")])
def test_no_grad_forward_matches_the_layer_loop_for_every_activation(cpu_path, act):
    fastmlp.manual_seed(1)
    m = nn.Sequential(nn.Linear(12, 40), act(), nn.Linear(40, 24), nn.Identity(), act(),
                      nn.Dropout(0.3), nn.Linear(24, 3)).eval()
    X = (3 * np.random.default_rng(2).standard_normal((70, 12))).astype(np.float32)
    want = m(fastmlp.from_numpy(X)).detach().numpy()  # grad mode: the layer loop
    for n in (1, 7, 70):
        with fastmlp.no_grad():
            got = m(fastmlp.from_numpy(X[:n])).numpy()
        np.testing.assert_allclose(got, want[:n], rtol=1e-5, atol=1e-5)
    assert m.__dict__["_infer"][2] is not None
    np.testing.assert_allclose(trainer.predict(m, X), want, rtol=1e-5, atol=1e-5)


def test_one_plan_from_several_threads():
    import threading

    ws, bs = make((20, 128, 128, 4), 11)
    plan = ops.InferPlan(ws, bs, [ACT["relu"], ACT["tanh"], None])
    X = np.random.default_rng(12).standard_normal((512, 20)).astype(np.float32)
    want = ops.infer(plan, X)
    errors = []

    def work(k):
        try:
            for i in range(20):
                n = 1 + (k * 37 + i * 53) % 512
                np.testing.assert_array_equal(ops.infer(plan, X[:n]), ops.infer(plan, X)[:n]
                                              if n >= 8 else ops.infer(plan, X[:n], path="rows"))
                np.testing.assert_array_equal(ops.infer(plan, X), want)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]


# The tiles path's thread plans (mlp_infer.cpp forward_tiles): at 2 threads a batch of fewer
# than 4 sample tiles (n <= 48) is one team splitting each layer (orphaned omp for, the
# non-ReLU activations split too), a larger one splits the samples into per-thread chunks in
# their own workspace slices; a net whose slice exceeds 128 Ki floats takes smaller chunks.
@pytest.mark.parametrize("sizes", [(20, 64, 64, 1), (20, 256, 256, 10), (9, 600, 600, 3)])
def test_tiles_thread_plans_match_float64_and_one_thread(cpu_path, threads, sizes):
    ws, bs = make(sizes, 21)
    acts = ["relu", "tanh", "identity"]
    plan = ops.InferPlan(ws, bs, [ACT[a] for a in acts])
    X = np.random.default_rng(22).standard_normal((1000, sizes[0])).astype(np.float32)
    for n in (16, 40, 64, 100, 300, 1000):
        want = ref64(ws, bs, acts, X[:n])
        tol = 2e-5 * max(1.0, np.abs(want).max()) * np.sqrt(max(sizes))
        threads(1)
        one = ops.infer(plan, X[:n], path="tiles")
        threads(2)
        two = ops.infer(plan, X[:n], path="tiles")
        np.testing.assert_array_equal(one, two, err_msg=f"n={n}")
        np.testing.assert_allclose(two, want, rtol=0, atol=tol, err_msg=f"n={n}")
        # a row's result does not depend on the batch (nor on the thread that ran it)
        np.testing.assert_array_equal(two[n // 2:n // 2 + 1],
                                      ops.infer(plan, X[n // 2:n // 2 + 1].copy(), path="tiles"))


def test_no_allocation_after_the_first_call_at_two_threads(threads):
    threads(2)
    m = seq((20, 256, 256, 1))
    X = np.random.default_rng(0).standard_normal((1024, 20)).astype(np.float32)
    out = np.empty((1024, 1), np.float32)
    trainer.predict(m, X, out=out)
    plan = trainer.extract_chain(m).infer
    grows = plan.info()["workspace_grows"]
    for n in (1024, 16, 40, 64, 300, 1, 1024):
        trainer.predict(m, X[:n], out=out[:n])
    assert plan.info()["workspace_grows"] == grows
