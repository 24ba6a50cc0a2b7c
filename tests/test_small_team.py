"""The small path's persistent OpenMP team (csrc/cpu/mlp_train_small.h: one team per epoch for
the ReLU trainer and the general trainer, products split over it by orphaned worksharing): the
results are bitwise the same on 1 and 2 threads for every kind of step the team runs (SGD with
momentum / nesterov / weight decay, scikit-learn mode, frozen parameters, both weight-gradient
kernels, partial last batches; Adam / AdamW / RMSprop, Tanh / GELU / SiLU, Huber / cross-entropy,
dropout), a thread-count change between fits changes nothing, and a non-finite loss ends the
team's epoch where one thread ends it."""
import numpy as np
import pytest

import fastmlp
from fastmlp import _C, nn
from fastmlp import trainer
from test_small_path import data as _data, init as _init


# (sizes, batch, n, options): steps of 250 kFLOP or more (kSmallTeamMinFlops), so that every one
# runs on a team at 2 threads on the AVX2 and generic paths; on AVX-512 a step without the
# data-parallel halves (batch < 32, sklearn mode, a layer over 256 x 256 weights; 8192 on the
# other paths) takes the tile team
# from 1.5 MFLOP (kTileTeamMinFlopsAvx512), which the 160-wide and the 128 x 96 cases reach
RELU_CASES = [
    ((20, 64, 64, 1), 16, 200, {}),
    ((20, 160, 160, 1), 16, 120, {}),
    ((13, 128, 96, 2), 37, 150, {"mode": "sklearn", "momentum": 0.9, "alpha": 1e-3}),
    ((20, 64, 64, 1), 64, 300, {"momentum": 0.9, "nesterov": True}),
    ((20, 96, 48, 3), 100, 250, {"momentum": 0.5, "dampening": 0.1, "weight_decay": 1e-3}),
    ((13, 40, 40, 2), 37, 150, {"mode": "sklearn", "momentum": 0.9, "alpha": 1e-3}),
    # 20-128-128-1 batch 200: the tile team with the dot tiles' dW on AVX2 / generic; on AVX-512
    # the halves (up to 256 x 256 weights a layer there) with the register tiles' dW (reg_gw_fits:
    # up to 256 samples there) but for the 20-input layer; batch 300: the dot tiles in the halves
    # on AVX-512. 20-288-288-1 (over 256 x 256): the tile team on every path, at batch 200 with
    # the register tiles' dW on AVX-512, at 300 the dot tiles'. Batch 256 in halves of 128: the
    # register tiles on AVX-512
    ((20, 128, 128, 1), 200, 450, {"momentum": 0.9}),
    ((20, 128, 128, 1), 300, 700, {"momentum": 0.9}),
    ((20, 288, 288, 1), 200, 450, {"momentum": 0.9}),
    ((20, 288, 288, 1), 300, 700, {}),
    ((20, 64, 64, 1), 256, 600, {}),
]


def _relu_train(t, sizes, B, n, kw, frozen=None, epochs=2, lr=0.01):
    fastmlp.set_num_threads(t)
    ws, bs = _init(sizes, 7)
    X, Y = _data(n, sizes[0], sizes[-1], 8)
    relu = [True] * (len(sizes) - 2) + [False]
    r = _C.mlp_train(ws, bs, relu, X, Y, epochs=epochs, seed=3, lr=lr, batch_size=B, path="small",
                     weight_bufs=[np.zeros_like(x) for x in ws],
                     bias_bufs=[np.zeros_like(x) for x in bs], frozen=frozen, **kw)
    assert r["small_path"]
    return ws + bs, r


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("case", RELU_CASES, ids=[f"{c[0]}-b{c[1]}" for c in RELU_CASES])
def test_relu_trainer_team_bitwise(cpu_path, threads, case):
    sizes, B, n, kw = case
    p1, r1 = _relu_train(1, sizes, B, n, kw)
    p2, r2 = _relu_train(2, sizes, B, n, kw)
    _same(p1, p2)
    assert r1["losses"] == r2["losses"] and r1["steps"] == r2["steps"]


def test_relu_trainer_team_frozen(cpu_path, threads):
    frozen = [(False, True), (True, False), (False, False)]
    p1, r1 = _relu_train(1, (20, 64, 64, 1), 32, 160, {"momentum": 0.9}, frozen=frozen)
    p2, r2 = _relu_train(2, (20, 64, 64, 1), 32, 160, {"momentum": 0.9}, frozen=frozen)
    _same(p1, p2)
    assert r1["losses"] == r2["losses"]


def test_relu_trainer_team_nonfinite_stop(threads):
    # a diverging rate: the team stops at the same batch as one thread, before its update
    out = []
    for t in (1, 2):
        p, r = _relu_train(t, (20, 160, 160, 1), 16, 400, {}, epochs=3, lr=1e3)
        assert r["nonfinite"] is not None
        out.append((p, r))
    _same(out[0][0], out[1][0])
    assert out[0][1]["nonfinite"][:2] == out[1][1]["nonfinite"][:2]
    assert out[0][1]["steps"] == out[1][1]["steps"]
    np.testing.assert_array_equal(out[0][1]["losses"], out[1][1]["losses"])


def _net(sizes, act, dropout=0.0, norm=False, seed=0):
    fastmlp.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if norm:
                mods.append(nn.LayerNorm(b))
            mods.append(act())
            if dropout:
                mods.append(nn.Dropout(dropout))
    return nn.Sequential(*mods)


FIT_CASES = [
    # (sizes, activation, loss, optimizer, hyper, batch, n, dropout, layernorm)
    ([6, 64, 64, 1], nn.Tanh, "huber", "adam", {}, 64, 300, 0.0, False),
    ([6, 64, 64, 1], nn.Tanh, "huber", "adam", {}, 50, 230, 0.0, False),
    ([20, 96, 48, 5], nn.GELU, "cross_entropy", "adamw", {"weight_decay": 0.05}, 32, 200, 0.0, False),
    ([9, 64, 64, 2], nn.Tanh, "huber", "adam", {"amsgrad": True}, 64, 200, 0.3, False),
    ([8, 80, 40, 3], nn.SiLU, "mse", "rmsprop", {"momentum": 0.5, "centered": True}, 100, 250, 0.2,
     False),
    # every layer on the register-tile dW (in >= 8, out >= 2, batch <= 64): the backward's dW
    # then waits where the next layer transposes into the shared buffer, and runs without a
    # barrier where it does not (the three dZ buffers); a partial last batch
    ([16, 48, 48, 48, 2], nn.Tanh, "mse", "adam", {}, 64, 200, 0.0, False),
    ([12, 40, 40, 3], nn.GELU, "huber", "adam", {}, 48, 170, 0.0, False),
    # batch 200: the register-tile dW on AVX-512 (reg_gw_fits), the dot tiles elsewhere
    ([6, 64, 64, 1], nn.Tanh, "huber", "adam", {}, 200, 450, 0.0, False),
    # a batch under 32 (no halves) over 1.5 MFLOP a step: the tile team on every path
    ([20, 160, 160, 2], nn.Tanh, "mse", "adam", {}, 16, 120, 0.0, False),
    # LayerNorm chains go to the gemm path; bitwise there too
    ([6, 64, 64, 1], nn.Tanh, "huber", "adam", {}, 64, 200, 0.0, True),
]


def _fit_train(t, sizes, act, loss, optim, hyper, B, n, dropout, norm, epochs=2):
    fastmlp.set_num_threads(t)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], n).astype(np.int64)
    else:
        y = rng.standard_normal((n, sizes[-1])).astype(np.float32)
    model = _net(sizes, act, dropout, norm)
    h = fastmlp.fit(model, X, y, epochs=epochs, batch_size=B, loss=loss, optimizer=optim, lr=0.01,
                    seed=5, progress=False, **hyper)
    return np.array(h["loss"]), [p.numpy().copy() for p in model.parameters()]


@pytest.fixture
def record_path(monkeypatch):
    """The paths fit's native mlp_fit calls took (the auto choice)."""
    used = []
    orig = _C.mlp_fit

    def wrapped(*a, **kw):
        r = orig(*a, **kw)
        used.append(kw.get("path", "auto"))
        return r
    monkeypatch.setattr(trainer._kernels, "mlp_fit", wrapped)
    return used


@pytest.mark.parametrize("case", FIT_CASES,
                         ids=[f"{c[1].__name__}-{c[2]}-{c[3]}-b{c[5]}-p{c[7]}-n{int(c[8])}"
                              for c in FIT_CASES])
def test_general_trainer_team_bitwise(cpu_path, threads, record_path, case):
    l1, p1 = _fit_train(1, *case)
    l2, p2 = _fit_train(2, *case)
    assert record_path  # the general trainer ran
    np.testing.assert_array_equal(l1, l2)
    _same(p1, p2)


def test_thread_change_between_fits(threads):
    # fit at 2 threads, then 1, then 2 again, continuing on the same model and optimizer,
    # equals three fits at 1 thread
    def run(counts):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((256, 6)).astype(np.float32)
        y = rng.standard_normal((256, 1)).astype(np.float32)
        model = _net([6, 64, 64, 1], nn.Tanh)
        opt = fastmlp.optim.Adam(model.parameters(), lr=0.01)
        relu = _net([6, 64, 64, 1], nn.ReLU, seed=1)
        losses = []
        for t in counts:
            fastmlp.set_num_threads(t)
            losses += fastmlp.fit(model, X, y, epochs=1, batch_size=64, loss="huber",
                                  optimizer=opt, seed=2, progress=False)["loss"]
            losses += fastmlp.fit(relu, X, y, epochs=1, batch_size=16, lr=0.01, seed=2,
                                  progress=False)["loss"]
        return losses, [p.numpy().copy() for p in model.parameters()] + \
            [p.numpy().copy() for p in relu.parameters()]
    l1, p1 = run([1, 1, 1])
    l2, p2 = run([2, 1, 2])
    assert l1 == l2
    _same(p1, p2)


def test_general_trainer_team_nonfinite_stop(threads):
    out = []
    for t in (1, 2):
        fastmlp.set_num_threads(t)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((400, 6)).astype(np.float32)
        y = rng.standard_normal((400, 1)).astype(np.float32) * 1e3
        model = _net([6, 64, 64, 1], nn.Tanh)
        with pytest.raises(trainer.NonFiniteLossError):
            fastmlp.fit(model, X, y, epochs=3, batch_size=32, loss="mse", optimizer="sgd",
                        lr=1e6, seed=1, progress=False)
        out.append([p.numpy().copy() for p in model.parameters()])
    _same(out[0], out[1])
