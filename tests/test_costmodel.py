"""The measured path cost model of the fused CPU trainers (fastmlp.costmodel): its cache (round
trip, corrupt / foreign files ignored, an unwritable directory kept in memory), the
FASTMLP_COSTMODEL=rule override, no calibration outside the ambiguous region, a choice that
depends on shapes and the model only (never the thread count: fits stay bitwise equal across
thread counts), and fits on either chosen path agreeing within the cross-path tolerances of
test_small_path.py / test_fit_small_path.py. No test measures time: calibrations here use a tiny
probe grid, and the decisions are tested on hand-written models."""
import json
import math
import os

import numpy as np
import pytest

import fastmlp
from fastmlp import _C, costmodel, nn, trainer
from fit_helpers import chain_net

TINY = dict(widths=(128, 256), batches=(16, 64), max_work=256 * 256 * 16, repeats=1)


@pytest.fixture
def cm(tmp_path, monkeypatch):
    """The measured model with a private cache dir and a tiny probe grid; forgotten afterwards."""
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FASTMLP_COSTMODEL", "measured")
    monkeypatch.setattr(costmodel, "WIDTHS", TINY["widths"])
    monkeypatch.setattr(costmodel, "BATCHES", TINY["batches"])
    monkeypatch.setattr(costmodel, "MAX_PROBE_WORK", TINY["max_work"])
    monkeypatch.setattr(costmodel, "REPEATS", 1)
    costmodel.clear_memory()
    yield costmodel
    costmodel.clear_memory()


@pytest.fixture
def no_measure(monkeypatch):
    """Any calibration fails the test."""
    def boom(*a, **k):
        raise AssertionError("calibrated")
    monkeypatch.setattr(costmodel, "measure", boom)


def write_model(trainers=("train", "fit"), small_below=256 * 256, isa=None, cpu=None,
                log_ratio=None, **extra):
    """A cache file whose model says: the small path for largest layers of < small_below weights,
    the gemm path from there on (every batch), for the current CPU path (or log_ratio: the table
    itself, widths 128..1024 x batches 16..1024)."""
    widths, batches = [128, 256, 512, 1024], [16, 64, 256, 1024]
    lr = log_ratio or [[-1.0 if w * w < small_below else 1.0 for _ in batches] for w in widths]
    isa = isa or fastmlp.get_cpu_path()
    ident = {"cpu": cpu or costmodel.cpu_model(), "build": costmodel.build_id()}
    ents = {f"{isa}/{t}": {"trainer": t, "isa": isa, "widths": widths, "batches": batches,
                           "log_ratio": lr, "measured_at": "test"} for t in trainers}
    doc = {"format": costmodel.FORMAT, "version": costmodel.VERSION, **ident, "entries": ents,
           **extra}
    path = costmodel.cache_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f)
    costmodel.clear_memory()
    return path


def net(sizes, seed=0, act=nn.ReLU):
    return chain_net(sizes, act, seed=seed)


@pytest.fixture
def record_paths(monkeypatch):
    """The path= each of fit's native calls gets: {'train': [...], 'fit': [...]}."""
    used = {"train": [], "fit": []}
    for t, name in (("train", "mlp_train"), ("fit", "mlp_fit")):
        orig = getattr(_C, name)

        def wrapped(*a, _orig=orig, _t=t, **kw):
            used[_t].append(kw.get("path"))
            return _orig(*a, **kw)
        monkeypatch.setattr(trainer._kernels, name, wrapped)
    return used


def data(n, d_in, d_out, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d_in)).astype(np.float32),
            rng.standard_normal((n, d_out)).astype(np.float32))


# --------------------------------------------------------------------------------------------
# the cache

def test_calibration_round_trip(cm):
    e = cm.calibrate("train")["train"]
    assert e["widths"] == [128, 256] and e["batches"] == [16, 64]
    assert all(math.isfinite(v) for row in e["log_ratio"] for v in row)
    assert e["small_s"][1][1] is None  # 256*256*64 > max_work: extrapolated, not timed
    path = cm.cache_file()
    assert os.path.exists(path) and "saved to" in e["source"]
    doc = json.load(open(path))
    assert doc["cpu"] == cm.cpu_model() and doc["build"] == cm.build_id()
    cm.clear_memory()
    got = cm.get_model("train", calibrate_if_missing=False)
    assert got["log_ratio"] == e["log_ratio"] and got["source"].startswith("cached in")
    assert cm.get_model("fit", calibrate_if_missing=False) is None  # measured per trainer
    # a second trainer's calibration keeps the first one's entry in the file
    cm.calibrate("fit")
    assert set(json.load(open(path))["entries"]) == {f"{e['isa']}/train", f"{e['isa']}/fit"}
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


def test_calibration_runs_at_the_library_thread_count(cm, threads):
    """The paths scale differently with threads: the table is measured at the count the fits run
    with (wall time on several threads, CPU time on one), and the count is restored after."""
    threads(2)
    e = cm.measure("train", threads=None)
    assert e["threads"] == 2 and e["clock"].startswith("wall time")
    assert fastmlp.get_num_threads() == 2
    e = cm.measure("train", threads=1)
    assert e["threads"] == 1 and e["clock"].startswith("process CPU time")
    assert fastmlp.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads"):
        cm.measure("train", threads=0)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": "other"}',
                                     "\x00\xff garbage", ""])
def test_corrupt_cache_file_is_ignored_and_remeasured(cm, content):
    path = cm.cache_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="latin-1") as f:
        f.write(content)
    assert cm.get_model("train", calibrate_if_missing=False) is None
    assert any("ignored" in line for line in cm.status_lines())
    path_, why = cm.decide("train", [(20, 256), (256, 256), (256, 1)], 64)
    assert path_ in ("small", "gemm") and why.startswith("model")
    assert json.load(open(path))["format"] == cm.FORMAT  # replaced by the new measurement


def test_bad_entries_and_foreign_files_are_ignored(cm, no_measure):
    write_model(cpu="some other CPU")
    assert cm.get_model("train", calibrate_if_missing=False) is None
    p = write_model()
    doc = json.load(open(p))
    isa = fastmlp.get_cpu_path()
    doc["entries"][f"{isa}/fit"]["log_ratio"][0] = [1.0]  # wrong shape
    doc["entries"][f"{isa}/train"]["log_ratio"][0][0] = "x"
    json.dump(doc, open(p, "w"))
    cm.clear_memory()
    assert cm.get_model("train", calibrate_if_missing=False) is None
    assert cm.get_model("fit", calibrate_if_missing=False) is None


def test_unwritable_cache_dir_keeps_the_model_in_memory(cm, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(blocker / "cache"))
    cm.clear_memory()
    e = cm.calibrate("train")["train"]
    assert "in memory only" in e["source"]
    assert cm.get_model("train", calibrate_if_missing=False) is e
    assert any("not saved" in line for line in cm.status_lines())


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTMLP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert costmodel.cache_dir() == str(tmp_path / "fastmlp")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert costmodel.cache_dir() == str(tmp_path / "home" / ".cache" / "fastmlp")


# --------------------------------------------------------------------------------------------
# the decision

def test_env_rule_leaves_the_choice_to_the_compiled_rule(cm, no_measure, monkeypatch,
                                                         record_paths):
    monkeypatch.setenv("FASTMLP_COSTMODEL", "rule")
    assert cm.decide("train", [(20, 512), (512, 512), (512, 1)], 256)[0] == "auto"
    X, Y = data(128, 20, 1)
    fastmlp.fit(net([20, 256, 256, 1]), X, Y, epochs=1, batch_size=64, lr=0.01, progress=False)
    fastmlp.fit(net([20, 256, 256, 1], act=nn.Tanh), X, Y, epochs=1, batch_size=64, lr=0.01,
                progress=False)
    assert record_paths == {"train": ["auto"], "fit": ["auto"]}
    assert not os.path.exists(cm.cache_file())


def test_no_calibration_outside_the_ambiguous_region(cm, no_measure, record_paths):
    X, Y = data(96, 20, 1)
    fastmlp.fit(net([20, 64, 64, 1]), X, Y, epochs=1, batch_size=64, lr=0.01, progress=False)
    fastmlp.fit(net([20, 300, 300, 1]), X, Y, epochs=1, batch_size=8, lr=0.01, progress=False)
    fastmlp.fit(net([20, 100, 100, 1], act=nn.GELU), X, Y, epochs=1, batch_size=32, lr=0.01,
                progress=False)
    normed = nn.Sequential(nn.Linear(20, 256), nn.LayerNorm(256), nn.ReLU(), nn.Linear(256, 1))
    fastmlp.fit(normed, X, Y, epochs=1, batch_size=32, lr=0.01, progress=False)
    assert record_paths == {"train": ["small", "small"], "fit": ["small", "gemm"]}
    assert cm.decide("fit", [(20, 512), (512, 512)], 256, has_norm=True)[0] == "gemm"
    assert not os.path.exists(cm.cache_file())


def test_lazy_calibration_on_first_ambiguous_fit(cm, record_paths):
    X, Y = data(64, 20, 1)
    assert cm.get_model("train", calibrate_if_missing=False) is None
    fastmlp.fit(net([20, 128, 128, 1]), X, Y, epochs=1, batch_size=32, lr=0.01, progress=False)
    assert record_paths["train"][0] in ("small", "gemm")
    assert cm.get_model("train", calibrate_if_missing=False) is not None
    assert os.path.exists(cm.cache_file())


def test_decision_follows_the_model_and_not_the_threads(cm, no_measure, threads):
    write_model(small_below=512 * 512)
    cases = [([(20, 256), (256, 256), (256, 1)], 64, "small"),
             ([(20, 700), (700, 700), (700, 1)], 64, "gemm"),
             ([(784, 1024), (1024, 10)], 1024, "gemm"),
             ([(20, 2048), (2048, 2048), (2048, 1)], 4096, "gemm"),  # clamped to the table
             ([(20, 300), (300, 300), (300, 1)], 16, "small"),  # interpolated
             ([(20, 400), (400, 400), (400, 1)], 16, "gemm")]
    for t in (1, 2, 1):
        threads(t)
        for shapes, b, want in cases:
            assert cm.choose_path("train", shapes, b) == want
            assert cm.choose_path("fit", shapes, b) == want


def write_flat_model(value):
    """A cache file whose model measures log(t_small / t_gemm) = value everywhere."""
    p = write_model()
    doc = json.load(open(p))
    for e in doc["entries"].values():
        e["log_ratio"] = [[value] * len(e["batches"]) for _ in e["widths"]]
    json.dump(doc, open(p, "w"))
    costmodel.clear_memory()


def test_a_tie_keeps_the_compiled_rule(cm, no_measure):
    shapes = lambda w: [(20, w), (w, w), (w, 1)]  # noqa: E731
    for value in (0.03, -0.03):
        write_flat_model(value)
        for w, b in ((256, 64), (256, 1024), (600, 64), (600, 32), (1024, 256), (150, 128)):
            for t in ("train", "fit"):
                want = "small" if cm.rule_small(t, w * w, b) else "gemm"
                assert cm.choose_path(t, shapes(w), b) == want
    write_flat_model(0.2)  # a clear difference overrides the rule
    assert cm.choose_path("train", shapes(256), 64) == "gemm"
    write_flat_model(-0.2)
    assert cm.choose_path("fit", shapes(600), 256) == "small"


@pytest.mark.parametrize("sizes,B", [((20, 256, 256, 1), 64), ((20, 512, 512, 1), 64),
                                     ((20, 513, 512, 1), 64), ((20, 600, 600, 1), 63),
                                     ((784, 1024, 10), 256), ((20, 150, 150, 1), 16)])
def test_rule_small_is_the_compiled_rule(sizes, B):
    # mlp_train reports the path its 'auto' took; mlp_fit's rule has the same form (its bound is
    # 200 x 200) and is pinned by test_fit_small_path.py's automatic-choice tests
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((b, a)) * 0.01).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    X, Y = data(B, sizes[0], sizes[-1])
    r = _C.mlp_train(ws, bs, [True] * (len(ws) - 1) + [False], X, Y, batch_size=B, lr=0.0)
    params = max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert r["small_path"] == costmodel.rule_small("train", params, B)


def test_interpolation_and_extrapolation():
    e = {"widths": [128, 256], "batches": [16, 64, 256],
         "log_ratio": costmodel._fill([[-1.0, 0.0, 0.5], [-2.0, 1.0, None]], [16, 64, 256])}
    assert e["log_ratio"][1][2] == pytest.approx(1.5)  # parallel to the row above
    assert costmodel._interp(e, 128 * 128, 32) == pytest.approx(-0.5)
    assert costmodel._interp(e, 128 * 256, 64) == pytest.approx(0.5)
    assert costmodel._interp(e, 10, 1) == pytest.approx(-1.0)  # clamped
    assert costmodel._interp(e, 10 ** 9, 10 ** 6) == pytest.approx(1.5)
    assert costmodel._fill([[1.0, None], [None, None]], [16, 64]) == [[1.0, 1.0], [1.0, 1.0]]


def test_calibration_failure_falls_back_to_the_rule(cm, monkeypatch):
    calls = []

    def fail(*a, **k):
        calls.append(1)
        raise RuntimeError("no luck")
    monkeypatch.setattr(costmodel, "measure", fail)
    for _ in range(3):
        path, why = cm.decide("train", [(20, 256), (256, 256), (256, 1)], 64)
        assert path == "auto" and "no luck" in why
    assert len(calls) == 1  # not retried on every fit


# --------------------------------------------------------------------------------------------
# results: thread independence and either path within the cross-path tolerances

def _fit_result(sizes, act, batch, n=160, **kw):
    model = net(sizes, act=act)
    X, Y = data(n, sizes[0], sizes[-1], seed=3)
    h = fastmlp.fit(model, X, Y, epochs=2, batch_size=batch, lr=0.01, seed=5, progress=False,
                    **kw)
    return np.array(h["loss"]), [p.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
def test_fit_bitwise_equal_across_threads_under_the_model(cm, no_measure, threads, act,
                                                          record_paths):
    for small_below in (10 ** 9, 1):  # a model choosing the small path, then the gemm path
        write_model(small_below=small_below)
        out = []
        for t in (1, 2):
            threads(t)
            out.append(_fit_result([20, 130, 130, 3], act, 32))
        np.testing.assert_array_equal(out[0][0], out[1][0])
        for a, b in zip(out[0][1], out[1][1]):
            np.testing.assert_array_equal(a, b)
    key = "train" if act is nn.ReLU else "fit"
    assert record_paths[key] == ["small"] * 4 + ["gemm"] * 4


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
def test_either_choice_gives_the_same_fit(cm, no_measure, cpu_path, act, record_paths):
    res = {}
    for small_below, name in ((10 ** 9, "small"), (1, "gemm")):
        write_model(small_below=small_below)
        res[name] = _fit_result([20, 128, 128, 2], act, 32, n=96)
    key = "train" if act is nn.ReLU else "fit"
    assert record_paths[key] == ["small", "small", "gemm", "gemm"]
    (ls, ps), (lg, pg) = res["small"], res["gemm"]
    np.testing.assert_allclose(ls, lg, rtol=2e-5)
    for a, b in zip(ps, pg):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


# --------------------------------------------------------------------------------------------
# inference: the plan's tiles -> gemm crossover (ops.InferPlan asks the model once, when made)

WIDE = [(20, 256), (256, 256), (256, 1)]


def infer_plan(sizes, seed=0):
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
          for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.standard_normal(o).astype(np.float32) * 0.1 for o in sizes[1:]]
    acts = [(1, 0.0, 0.0)] * (len(ws) - 1) + [None]
    return fastmlp.ops.InferPlan(ws, bs, acts), ws, bs


def test_infer_calibration_times_both_paths(cm):
    e = cm.calibrate("infer")["infer"]
    assert e["trainer"] == "infer" and e["widths"] == [128, 256] and e["batches"] == [16, 64]
    # every cell is timed (a forward is a third of a step), none extrapolated
    assert all(v is not None and v > 0 for row in e["small_s"] + e["gemm_s"] for v in row)
    assert cm.get_model("infer", calibrate_if_missing=False) is e


@pytest.mark.parametrize("table, want", [
    ([[1.0] * 4] * 4, 16),                         # gemm everywhere: from the first batch on
    ([[-1.0] * 4] * 4, None),                      # tiles everywhere: never
    ([[-1.0, -1.0, 1.0, 1.0]] * 4, 256),           # gemm from 256 on (interpolated between)
    ([[-1.0, 1.0, -1.0, 1.0]] * 4, 1024),          # gemm only where every larger batch is gemm
    ([[0.01] * 4] * 4, None),                      # a tie: the compiled rule (the tiles)
])
def test_infer_crossover_from_the_model(cm, no_measure, table, want):
    write_model(trainers=("infer",), log_ratio=table)
    assert cm.infer_gemm_from(WIDE) == want
    plan, ws, bs = infer_plan([20, 256, 256, 1])
    info = plan.info()
    assert info["gemm_from"] == want and info["gemm_from_source"] == "set"
    for n in (8, 16, 100, 256, 1024, 3000):
        expect = "tiles" if want is None or n < want else "gemm"
        assert plan.choose(n) == expect, n
    # the automatic path gives the forced path's bits, and the float64 answer
    X = np.random.default_rng(3).standard_normal((300, 20)).astype(np.float32)
    got = fastmlp.ops.infer(plan, X)
    np.testing.assert_array_equal(got, fastmlp.ops.infer(plan, X, path=plan.choose(300)))
    a = X.astype(np.float64)
    for i, (w, b) in enumerate(zip(ws, bs)):
        a = a @ w.T.astype(np.float64) + b
        a = np.maximum(a, 0) if i < 2 else a
    np.testing.assert_allclose(got, a, rtol=0, atol=1e-4 * max(1.0, np.abs(a).max()))


def test_infer_crossover_not_asked_outside_the_region_or_under_the_rule(cm, no_measure,
                                                                        monkeypatch):
    assert cm.infer_gemm_from([(20, 64), (64, 64), (64, 1)]) == -1  # under 128 x 128 weights
    plan, _, _ = infer_plan([20, 64, 64, 1])
    assert plan.info()["gemm_from_source"] == "compiled rule"
    monkeypatch.setenv("FASTMLP_COSTMODEL", "rule")
    assert cm.infer_gemm_from(WIDE) == -1
    plan, _, _ = infer_plan([20, 256, 256, 1])
    assert plan.info()["gemm_from_source"] == "compiled rule"
    assert plan.choose(4) == "rows" and plan.choose(4096) == "tiles"


def test_infer_failed_calibration_leaves_the_compiled_rule(cm, no_measure):
    assert cm.infer_gemm_from(WIDE) == -1  # measure raises: the rule, once per process
    plan, _, _ = infer_plan([20, 256, 256, 1])
    assert plan.info()["gemm_from_source"] == "compiled rule"


def test_infer_set_gemm_from_checks_its_argument_and_follows_the_cpu_path(cpu_path):
    plan, _, _ = infer_plan([20, 256, 256, 1])
    _C.infer_set_gemm_from(plan.capsule, 100)
    assert plan.choose(99) == "tiles" and plan.choose(100) == "gemm" and plan.choose(7) == "rows"
    assert plan.info()["gemm_from"] == 100
    other = [p for p in fastmlp.supported_cpu_paths() if p != fastmlp.get_cpu_path()]
    if other:  # set for the CPU path current then: another path takes its compiled rule
        here = fastmlp.get_cpu_path()
        try:
            fastmlp.set_cpu_path(other[0])
            assert plan.choose(4096) == "tiles"
            assert plan.info()["gemm_from_source"] == "compiled rule"
        finally:
            fastmlp.set_cpu_path(here)
        assert plan.choose(4096) == "gemm"
    _C.infer_set_gemm_from(plan.capsule, None)
    assert plan.choose(1 << 20) == "tiles" and plan.info()["gemm_from"] is None
    _C.infer_set_gemm_from(plan.capsule, -1)
    assert plan.info()["gemm_from_source"] == "compiled rule"
    for bad in (0, -2):
        with pytest.raises(ValueError, match="rows"):
            _C.infer_set_gemm_from(plan.capsule, bad)


# --------------------------------------------------------------------------------------------
# the command line

def test_cli_calibrate_and_info(cm, capsys):
    from fastmlp.__main__ import main
    assert main(["info"]) == 0
    assert "none cached" in capsys.readouterr().out
    assert main(["calibrate", "--trainer", "train"]) == 0
    out = capsys.readouterr().out
    assert "w \\ batch" in out and "saved to" in out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"{fastmlp.get_cpu_path()}/train: cached in" in out or "measured" in out
