"""LayerNorm and BatchNorm1d in the general fused trainer (issue 13): one or more epochs of
``fastmlp.fit`` equal the eager loop (PyTorch, and fastmlp's own eager modules) from the same
weights, order and dropout masks, within 1e-5 relative; running statistics and
num_batches_tracked as the modules leave them; predict in eval mode."""
import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.tracing import TraceError
from fastmlp.trainer import extract_chain, fit, predict

torch = pytest.importorskip("torch")

SEED = 1234
DSEED = SEED ^ 0x5DEECE66D  # the fused trainer's dropout stream (trainer.fit)
_M64 = (1 << 64) - 1


def _mix(z):
    """fastmlp/dropout.h's dropout_mix64 on uint64 numpy arrays (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def keep_mask(step, layer, shape, p):
    """The fused trainer's dropout factor for chain layer ``layer`` at global step ``step``."""
    with np.errstate(over="ignore"):
        k = _mix(np.array([(DSEED + 0x9E3779B97F4A7C15 * (step + 1)) & _M64], np.uint64))
        k = _mix(k ^ np.uint64((0xD1B54A32D192ED03 * (layer + 1)) & _M64))
        idx = np.arange(int(np.prod(shape)), dtype=np.uint64)
        u = (_mix(k + idx * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)).astype(np.float64) \
            / 16777216.0
    return ((u >= p) / (1.0 - p)).reshape(shape)


# A chain is a list of layers; each layer (in_, out, ops): ops in forward order after the Linear,
# each ("act", name) / ("bn", kwargs) / ("ln", kwargs) / ("drop", p).
ACTS = {"relu": (nn.ReLU, torch.nn.ReLU), "gelu": (nn.GELU, torch.nn.GELU),
        "tanh": (nn.Tanh, torch.nn.Tanh), "silu": (nn.SiLU, torch.nn.SiLU),
        "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid),
        "leaky_relu": (lambda: nn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1))}


class TorchDrop(torch.nn.Module):
    """Dropout with the fused trainer's masks (the step is set by the loop)."""

    def __init__(self, layer, p, clock):
        super().__init__()
        self.layer, self.p, self.clock = layer, p, clock

    def forward(self, x):
        if not self.training:
            return x
        m = keep_mask(self.clock[0], self.layer, tuple(x.shape), self.p)
        return x * torch.from_numpy(m).to(x.dtype)


def _bias(ops, bn_bias):
    # A Linear bias right before a BatchNorm1d has a gradient of pure float32 rounding (the norm
    # removes it), which Adam turns into full lr steps of either sign in every run alike: such
    # a bias is compared with SGD only (bias=False before the norm otherwise, as usual).
    return bn_bias or not ops or ops[0][0] != "bn"


def build(spec, bn_bias=True):
    """(fastmlp model, torch model factory(dtype, clock)) with the same initial weights."""
    fastmlp.manual_seed(11)  # the same Linear initialisation in every run (no flaky draws)
    fmods = []
    for i, (a, b, ops) in enumerate(spec):
        fmods.append(nn.Linear(a, b, bias=_bias(ops, bn_bias)))
        for kind, v in ops:
            if kind == "act":
                fmods.append(ACTS[v][0]())
            elif kind == "bn":
                fmods.append(nn.BatchNorm1d(b, **v))
            elif kind == "ln":
                fmods.append(nn.LayerNorm(b, **v))
            else:
                fmods.append(nn.Dropout(v))
    fm = nn.Sequential(*fmods)
    rng = np.random.default_rng(7)
    for mod in fm:  # affine parameters away from 1/0 so their gradients matter
        if isinstance(mod, (nn.BatchNorm1d, nn.LayerNorm)):
            if mod.weight is not None:
                mod.weight.data = fastmlp.tensor(rng.uniform(0.5, 1.5, mod.weight.shape).astype(np.float32))
            if mod.bias is not None:
                mod.bias.data = fastmlp.tensor(rng.uniform(-0.3, 0.3, mod.bias.shape).astype(np.float32))
    init = {k: v.numpy().copy() for k, v in fm.state_dict().items()}

    def torch_model(dtype, clock):
        tmods, layer = [], 0
        for a, b, ops in spec:
            tmods.append(torch.nn.Linear(a, b, bias=_bias(ops, bn_bias)))
            for kind, v in ops:
                if kind == "act":
                    tmods.append(ACTS[v][1]())
                elif kind == "bn":
                    tmods.append(torch.nn.BatchNorm1d(b, **v))
                elif kind == "ln":
                    tmods.append(torch.nn.LayerNorm(b, **v))
                else:
                    tmods.append(TorchDrop(layer, v, clock))
            layer += 1
        t = torch.nn.Sequential(*tmods).to(dtype)
        t.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in init.items()})
        return t.to(dtype)

    return fm, torch_model, init


TORCH_OPT = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
OPTS = {"sgd": ("sgd", dict(momentum=0.9, weight_decay=1e-3), 0.05),
        "adam": ("adam", dict(betas=(0.8, 0.99), eps=1e-6), 0.01),
        "adamw": ("adamw", dict(weight_decay=0.05, eps=1e-6), 0.01)}


def torch_loop(tmodel_factory, dtype, X, Y, order, bs, opt, loss, train_mode=True):
    clock = [0]
    t = tmodel_factory(dtype, clock)
    t.train(train_mode)
    name, hyper, lr = OPTS[opt]
    topt = TORCH_OPT[name](t.parameters(), lr=lr, **hyper)
    lf = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()
    n = len(X)
    for e in range(order.shape[0]):
        for i in range(0, n, bs):
            idx = order[e, i:i + bs]
            out = t(torch.from_numpy(X[idx]).to(dtype))
            tgt = torch.from_numpy(Y[idx])
            lv = lf(out, tgt.to(dtype) if tgt.is_floating_point() else tgt)
            topt.zero_grad()
            lv.backward()
            topt.step()
            clock[0] += 1
    return t, topt


def check_against(fm, t, t64, what):
    ref = {k: v.detach().double().numpy() for k, v in t.state_dict().items()}
    ref64 = {k: v.detach().double().numpy() for k, v in t64.state_dict().items()}
    for k, p in fm.state_dict().items():
        p = p.numpy().astype(np.float64)
        q, q64 = ref[k], ref64[k]
        # As test_fit_general: within 1e-5 relative of PyTorch, or of PyTorch's float64 run by a
        # few times PyTorch's own float32 error (batch statistics of a few rows, and Adam's steps
        # on gradients that are sums with cancellation, amplify rounding in either float32 run).
        # 8x: on an AMD Zen 4 (AVX-512) one weight of 7680 in the 'wide' AdamW case was 6.6x
        # PyTorch's own float32 error from the float64 run (1.38e-5 where PyTorch's was 2.1e-6,
        # on the generic and AVX-512 paths; the AVX2 path within 5x).
        tol = 2e-6 * max(1.0, np.abs(q).max())
        np.testing.assert_allclose(
            p, q64, rtol=1e-5, atol=max(tol, 8.0 * np.abs(q - q64).max()), err_msg=f"{what}: {k}")


CASES = {
    "bn-relu-dropout": [(6, 16, [("bn", {}), ("act", "relu"), ("drop", 0.3)]), (16, 3, [])],
    "gelu-ln": [(6, 16, [("act", "gelu"), ("ln", {})]), (16, 3, [])],
    "ln-tanh": [(6, 12, [("ln", {"eps": 1e-3}), ("act", "tanh")]), (12, 3, [])],
    "silu-bn-noaffine": [(6, 12, [("act", "silu"), ("bn", {"affine": False})]), (12, 3, [])],
    "bn-cumulative": [(6, 12, [("bn", {"momentum": None}), ("act", "sigmoid")]), (12, 3, [])],
    "bn-untracked": [(6, 12, [("bn", {"track_running_stats": False}), ("act", "leaky_relu")]),
                     (12, 3, [])],
    "ln-noaffine-nobias": [(6, 12, [("ln", {"elementwise_affine": False}), ("act", "relu")]),
                           (12, 10, [("act", "gelu"), ("ln", {"bias": False}), ("drop", 0.2)]),
                           (10, 3, [])],
    "deep-mixed": [(6, 20, [("ln", {}), ("act", "silu")]),
                   (20, 16, [("bn", {"momentum": 0.3}), ("act", "relu"), ("drop", 0.25)]),
                   (16, 3, [("bn", {})])],
    "bn-only": [(6, 12, [("bn", {"eps": 1e-3})]), (12, 3, [])],
}


def run_case(case, opt, loss="mse", n=44, bs=8, epochs=2, train_mode=True):
    spec = CASES[case]
    fm, tf, _ = build(spec, bn_bias=opt == "sgd")
    fm.train(train_mode)
    rng = np.random.default_rng(len(case) * 31 + len(opt))
    X = rng.standard_normal((n, 6)).astype(np.float32) * 2 + 0.5
    if loss == "mse":
        Y = rng.standard_normal((n, 3)).astype(np.float32)
    else:
        Y = rng.integers(0, 3, n).astype(np.int64)
    order = np.stack([rng.permutation(n) for _ in range(epochs)])
    t, topt = torch_loop(tf, torch.float32, X, Y, order, bs, opt, loss, train_mode)
    t64, _ = torch_loop(tf, torch.float64, X, Y, order, bs, opt, loss, train_mode)
    name, hyper, lr = OPTS[opt]
    h = fit(fm, X, Y, epochs=epochs, batch_size=bs, lr=lr, optimizer=name, permutation=order,
            loss="mse" if loss == "mse" else "cross_entropy", seed=SEED, progress=False, **hyper)
    assert h["steps"] == epochs * -(-n // bs)
    check_against(fm, t, t64, f"{case}/{opt}")
    # predict: eval mode (running statistics), as the eager model.eval() forward
    fm.eval()
    t.eval()
    with fastmlp.no_grad():
        eager = fm(fastmlp.tensor(X)).numpy()
    pred = predict(fm, X)
    np.testing.assert_allclose(pred, eager, rtol=1e-5, atol=1e-5)
    t64.eval()
    tp = t(torch.from_numpy(X)).detach().double().numpy()
    tp64 = t64(torch.from_numpy(X).double()).detach().numpy()
    np.testing.assert_allclose(pred, tp, rtol=1e-4, atol=max(1e-4, 2 * np.abs(tp - tp64).max()))
    return fm, h


@pytest.mark.parametrize("opt", sorted(OPTS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_with_norms_equals_torch_eager_loop(case, opt, cpu_path):
    run_case(case, opt)


def test_cross_entropy_and_a_gemm_sized_net(cpu_path):
    CASES["wide"] = [(6, 96, [("bn", {}), ("act", "gelu")]),
                     (96, 80, [("act", "relu"), ("ln", {}), ("drop", 0.1)]), (80, 3, [])]
    try:
        run_case("wide", "adamw", loss="cross_entropy", n=96, bs=32)
    finally:
        del CASES["wide"]


def test_batchnorm_in_eval_mode_trains_on_running_statistics(cpu_path):
    # The eager loop with the model in eval mode normalises with the running statistics (and
    # does not update them): fit follows the model's mode, as it does for Dropout.
    spec = [(6, 12, [("bn", {}), ("act", "tanh")]), (12, 3, [])]
    CASES["eval"] = spec
    try:
        fm, _ = run_case("eval", "sgd", train_mode=False)
    finally:
        del CASES["eval"]
    assert int(fm[1].num_batches_tracked) == 0
    np.testing.assert_array_equal(fm[1].running_mean.numpy(), 0.0)


def _fastmlp_eager(fm, X, Y, order, bs, opt):
    name, hyper, lr = OPTS[opt]
    cls = {"sgd": fastmlp.optim.SGD, "adam": fastmlp.optim.Adam, "adamw": fastmlp.optim.AdamW}[name]
    o = cls(fm.parameters(), lr=lr, **hyper)
    lf = nn.MSELoss()
    for e in range(order.shape[0]):
        for i in range(0, len(X), bs):
            idx = order[e, i:i + bs]
            lv = lf(fm(fastmlp.tensor(X[idx])), fastmlp.tensor(Y[idx]))
            o.zero_grad()
            lv.backward()
            o.step()


@pytest.mark.parametrize("case", ["gelu-ln", "bn-cumulative", "silu-bn-noaffine", "ln-tanh"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_fit_equals_fastmlp_eager_modules(case, opt, cpu_path):
    fm, _, init = build(CASES[case], bn_bias=opt == "sgd")
    fe, _, _ = build(CASES[case], bn_bias=opt == "sgd")
    fe.load_state_dict(fm.state_dict())
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6)).astype(np.float32)
    Y = rng.standard_normal((40, 3)).astype(np.float32)
    order = np.stack([rng.permutation(40) for _ in range(2)])
    _fastmlp_eager(fe, X, Y, order, 8, opt)
    name, hyper, lr = OPTS[opt]
    fit(fm, X, Y, epochs=2, batch_size=8, lr=lr, optimizer=name, permutation=order,
        progress=False, **hyper)
    for (k, p), q in zip(fm.state_dict().items(), fe.state_dict().values()):
        q = q.numpy().astype(np.float64)
        np.testing.assert_allclose(p.numpy(), q, rtol=1e-5, atol=2e-6 * max(1.0, np.abs(q).max()),
                                   err_msg=f"{case}/{opt}: {k}")


def test_optimizer_instance_state_of_norm_parameters_written_back():
    fm, tf, _ = build(CASES["gelu-ln"])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 6)).astype(np.float32)
    Y = rng.standard_normal((32, 3)).astype(np.float32)
    order = np.arange(32)[None]
    o = fastmlp.optim.Adam(fm.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    fit(fm, X, Y, epochs=1, batch_size=8, optimizer=o, permutation=order, progress=False)
    t, topt = torch_loop(tf, torch.float32, X, Y, order, 8, "adam", "mse")
    ln_w = fm[2].weight
    st = o.state[ln_w]
    assert int(st["step"].item()) == 4
    tst = topt.state[t[2].weight]
    np.testing.assert_allclose(st["exp_avg"].numpy(), tst["exp_avg"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(st["exp_avg_sq"].numpy(), tst["exp_avg_sq"].numpy(), rtol=1e-5,
                               atol=1e-9)
    # a second fit continues from that state, as a second eager epoch would
    fit(fm, X, Y, epochs=1, batch_size=8, optimizer=o, permutation=order, progress=False)
    assert int(o.state[ln_w]["step"].item()) == 8


def test_tracing_leaves_running_statistics_alone_and_predict_is_eval():
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, momentum=None), nn.ReLU(), nn.Linear(8, 1))
    m[1].running_mean.numpy()[...] = 0.25
    X = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    predict(m, X)  # traces in training mode
    assert int(m[1].num_batches_tracked) == 0
    np.testing.assert_array_equal(m[1].running_mean.numpy(), 0.25)
    m.eval()
    with fastmlp.no_grad():
        np.testing.assert_allclose(predict(m, X), m(fastmlp.tensor(X)).numpy(), rtol=1e-6, atol=1e-6)
    # without running statistics, eval normalises with the batch's (PyTorch): one row is refused
    u = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.Linear(8, 1))
    with fastmlp.no_grad():
        np.testing.assert_allclose(predict(u, X), u(fastmlp.tensor(X)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        predict(u, X[:1])


def test_describe_names_the_norms():
    m = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 6),
                      nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, 1))
    assert extract_chain(m).describe() == \
        "4 -> 8 gelu LayerNorm -> 6 BatchNorm1d relu dropout(0.1) -> 1"


def test_batch_of_one_sample_is_refused_before_training():
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    X = np.ones((9, 4), np.float32)
    with pytest.raises(ValueError, match="batch of 1 sample"):
        fit(m, X, np.ones((9, 1), np.float32), epochs=1, batch_size=4, lr=0.1, progress=False)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    # drop_last avoids it; LayerNorm has no such limit
    fit(m, X, np.ones((9, 1), np.float32), epochs=1, batch_size=4, lr=0.1, drop_last=True,
        progress=False)
    ln = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    fit(ln, X, np.ones((9, 1), np.float32), epochs=1, batch_size=4, lr=0.1, progress=False)


class DropBeforeNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.n, self.d, self.b = nn.Linear(4, 8), nn.LayerNorm(8), nn.Dropout(0.2), nn.Linear(8, 1)

    def forward(self, x):
        return self.b(self.n(self.d(self.a(x))))


@pytest.mark.parametrize("model, match", [
    (DropBeforeNorm(), r"dropout is applied before LayerNorm"),
    (nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.BatchNorm1d(8), nn.Linear(8, 1)),
     r"two normalisation layers \(LayerNorm then BatchNorm1d\)"),
    (nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 1)), r"BatchNorm1d to its input before the first"),
])
def test_chains_the_trainer_cannot_run_are_refused(model, match):
    with pytest.raises(TraceError, match=match):
        fit(model, np.ones((8, 4), np.float32), np.ones((8, 1), np.float32), epochs=1,
            batch_size=4, lr=0.1, progress=False)


def test_restore_best_weights_restores_norm_state():
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    rng = np.random.default_rng(3)
    X = rng.standard_normal((32, 4)).astype(np.float32)
    Y = rng.standard_normal((32, 1)).astype(np.float32)
    snaps = []

    def cb(h):
        snaps.append({k: v.numpy().copy() for k, v in m.state_dict().items()})

    h = fit(m, X, Y, epochs=6, batch_size=8, lr=0.5, progress=False, patience=6,
            validation_data=(X[:8], Y[:8] + 5.0 * np.sin(np.arange(8))[:, None].astype(np.float32)),
            on_epoch_end=cb, seed=1)
    best = snaps[h["best_epoch"]]
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), best[k], err_msg=k)


def test_results_do_not_depend_on_the_thread_count(threads):
    spec = [(6, 300, [("bn", {}), ("act", "relu")]), (300, 260, [("act", "gelu"), ("ln", {})]),
            (260, 3, [])]
    rng = np.random.default_rng(2)
    X = rng.standard_normal((128, 6)).astype(np.float32)
    Y = rng.standard_normal((128, 3)).astype(np.float32)
    out = []
    for nt in (1, 2):
        threads(nt)
        fm, _, _ = build(spec)
        if out:
            fm.load_state_dict(out[0][0])
        before = {k: v.numpy().copy() for k, v in fm.state_dict().items()}
        fit(fm, X, Y, epochs=1, batch_size=64, lr=0.01, optimizer="adam", shuffle=False,
            progress=False)
        fm.eval()
        out.append((before, {k: v.numpy().copy() for k, v in fm.state_dict().items()},
                    predict(fm, X)))
    for k in out[0][1]:
        np.testing.assert_array_equal(out[0][1][k], out[1][1][k], err_msg=k)
    np.testing.assert_array_equal(out[0][2], out[1][2])
