"""The general fused trainer (fastmlp.fit with any activation, loss, optimizer, schedule) against
PyTorch's eager loop from the same weights and the same sample order: one epoch equal within
1e-5 relative (issue 13's "same math as the eager API")."""
import zlib

import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.trainer import fit, predict

torch = pytest.importorskip("torch")

F = fastmlp.nn.functional
TF = torch.nn.functional
ACTS = {"relu": (fastmlp.relu, torch.relu), "tanh": (fastmlp.tanh, torch.tanh),
        "sigmoid": (fastmlp.sigmoid, torch.sigmoid),
        "gelu": (F.gelu, TF.gelu),
        "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
        "silu": (F.silu, TF.silu),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: TF.leaky_relu(x, 0.1)),
        "elu": (lambda x: F.elu(x, alpha=0.7), lambda x: TF.elu(x, alpha=0.7)),
        "softplus": (lambda x: F.softplus(x, beta=2.0, threshold=3.0),
                     lambda x: TF.softplus(x, beta=2.0, threshold=3.0)),
        "hardtanh": (lambda x: F.hardtanh(x, -0.5, 0.8), lambda x: TF.hardtanh(x, -0.5, 0.8))}


class FNet(nn.Module):
    def __init__(self, sizes, act):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.act = act

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i < len(self.layers) - 1:
                x = ACTS[self.act][0](x)
        return x


def torch_net(fnet, act):
    layers = []
    for i, l in enumerate(fnet.layers):
        t = torch.nn.Linear(l.in_features, l.out_features)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(l.weight.numpy().copy()))
            t.bias.copy_(torch.from_numpy(l.bias.numpy().copy()))
        layers.append(t)
    fn = ACTS[act][1]

    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(layers)

        def forward(self, x):
            for i, l in enumerate(self.layers):
                x = l(x)
                if i < len(self.layers) - 1:
                    x = fn(x)
            return x
    return T()


LOSSES = {
    "mse": lambda: (torch.nn.MSELoss(), "mse"),
    "l1": lambda: (torch.nn.L1Loss(), "l1"),
    "huber": lambda: (torch.nn.HuberLoss(delta=0.5), fastmlp.nn.HuberLoss(delta=0.5)),
    "smooth_l1": lambda: (torch.nn.SmoothL1Loss(beta=0.7), fastmlp.nn.SmoothL1Loss(beta=0.7)),
    "bce_with_logits": lambda: (torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 0.5])),
                                fastmlp.nn.BCEWithLogitsLoss(pos_weight=fastmlp.tensor([2.0, 0.5]))),
    "cross_entropy": lambda: (torch.nn.CrossEntropyLoss(label_smoothing=0.1,
                                                        weight=torch.tensor([1.0, 2.0, 0.5])),
                              fastmlp.nn.CrossEntropyLoss(label_smoothing=0.1,
                                                          weight=fastmlp.tensor([1.0, 2.0, 0.5]))),
}
OPTIMS = {
    "sgd": ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-3), 0.05),
    "sgd-damp": ("sgd", dict(momentum=0.5, dampening=0.3), 0.05),
    "adam": ("adam", dict(betas=(0.8, 0.99), weight_decay=1e-3), 0.01),
    "adam-amsgrad": ("adam", dict(amsgrad=True), 0.01),
    "adamw": ("adamw", dict(weight_decay=0.05), 0.01),
    # eps well above float32 rounding of a near-zero gradient (Adam's m / sqrt(v) turns a
    # rounding-level gradient into a full step of either sign), for the bigger nets
    "adamw-eps": ("adamw", dict(weight_decay=0.05, eps=1e-4), 0.01),
    "rmsprop": ("rmsprop", dict(alpha=0.9, momentum=0.5, centered=True), 0.005),
    # eps 1e-4: with L1's sign gradients plain RMSprop's first steps divide by sqrt(v) ~ |g|, so
    # torch's own float32 and float64 runs differ by 2e-5 here with the default eps
    "rmsprop-plain": ("rmsprop", dict(eps=1e-4), 0.005),
    "adagrad": ("adagrad", dict(lr_decay=0.01, initial_accumulator_value=0.1), 0.05),
}
TORCH_OPT = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
             "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}


def data(loss, n, fin, fout, rng):
    X = rng.standard_normal((n, fin)).astype(np.float32)
    if loss == "cross_entropy":
        return X, rng.integers(0, fout, n).astype(np.int64)
    if loss == "bce_with_logits":
        return X, (rng.random((n, fout)) < 0.4).astype(np.float32)
    return X, rng.standard_normal((n, fout)).astype(np.float32)


def run_case(act, loss, opt, sizes, n=48, bs=16, epochs=2, sched=None, atol=2e-6):
    rng = np.random.default_rng(zlib.crc32(f"{act}/{loss}/{opt}".encode()))
    fastmlp.manual_seed(3)
    fout = 3 if loss == "cross_entropy" else (2 if loss == "bce_with_logits" else sizes[-1])
    sizes = list(sizes[:-1]) + [fout]
    m = FNet(sizes, act)
    X, Y = data(loss, n, sizes[0], fout, rng)
    name, hyper, lr = OPTIMS[opt]
    order = np.stack([rng.permutation(n) for _ in range(epochs)])
    total = epochs * (n // bs)

    def torch_run(dtype):
        t = torch_net(m, act).to(dtype)
        tl, _ = LOSSES[loss]()
        tl = tl.to(dtype) if hasattr(tl, "to") else tl
        topt = TORCH_OPT[name](t.parameters(), lr=lr, **hyper)
        tsched = None
        if sched == "onecycle":
            tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=lr, total_steps=total,
                                                         cycle_momentum=False)
        for e in range(epochs):
            for i in range(0, n, bs):
                idx = order[e, i:i + bs]
                out = t(torch.from_numpy(X[idx]).to(dtype))
                target = torch.from_numpy(Y[idx])
                if target.is_floating_point():
                    target = target.to(dtype)
                lv = tl(out, target)
                topt.zero_grad()
                lv.backward()
                topt.step()
                if tsched is not None:
                    tsched.step()
        return [q.detach().double().numpy() for q in t.state_dict().values()]

    ref32 = torch_run(torch.float32)
    _, fl = LOSSES[loss]()
    kw = dict(hyper)
    lr_schedule = None
    if sched == "onecycle":
        ref = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        rs = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=lr, total_steps=total,
                                                 cycle_momentum=False)
        lrs = []
        for _ in range(total):
            lrs.append(ref.param_groups[0]["lr"])
            ref.step()
            rs.step()
        lr_schedule = lambda k: lrs[k]  # noqa: E731
    h = fit(m, X, Y, epochs=epochs, batch_size=bs, lr=lr, loss=fl, optimizer=name,
            permutation=order, progress=False, lr_schedule=lr_schedule, **kw)
    ref64 = None
    for (k, p), q in zip(m.state_dict().items(), ref32):
        p = p.numpy()
        tol = atol * max(1.0, np.abs(q).max())
        if not np.allclose(p, q, rtol=1e-5, atol=tol):
            # Some combinations amplify float32 rounding (sign gradients of L1 into RMSprop's
            # normalisation, clipped activations): then fastmlp must be as close to PyTorch's
            # float32 run as that run is to its own float64 one.
            if ref64 is None:
                ref64 = dict(zip(m.state_dict().keys(), torch_run(torch.float64)))
            tol = max(tol, 2.0 * np.abs(q - ref64[k]).max())
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=tol, err_msg=f"{act}/{loss}/{opt}: {k}")
    with fastmlp.no_grad():
        np.testing.assert_allclose(predict(m, X), m(fastmlp.tensor(X)).numpy(), rtol=1e-5, atol=1e-6)
    return h


@pytest.mark.parametrize("opt", sorted(OPTIMS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("act", sorted(ACTS))
def test_fit_equals_torch_eager_loop(act, loss, opt):
    run_case(act, loss, opt, (5, 7, 6, 1))


@pytest.mark.parametrize("act", sorted(ACTS))
def test_fit_gemm_sized_net_equals_torch(act):
    run_case(act, "cross_entropy", "adamw-eps", (64, 96, 80, 3), n=96, bs=32)


def test_per_step_schedule_inside_native_loop():
    run_case("tanh", "huber", "adam", (6, 16, 16, 1), sched="onecycle")


def test_optimizer_instance_state_used_and_left_updated():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    Y = rng.standard_normal((40, 1)).astype(np.float32)
    order = np.arange(40)
    m1 = FNet((4, 8, 1), "tanh")
    m2 = FNet((4, 8, 1), "tanh")
    m2.load_state_dict(m1.state_dict())
    # one fit of 2 epochs == two fits of 1 epoch with the same optimizer spec carried over
    fit(m1, X, Y, epochs=2, batch_size=10, lr=0.01, optimizer="adam", permutation=order,
        progress=False)
    t = torch_net(m2, "tanh")
    topt = torch.optim.Adam(t.parameters(), lr=0.01)
    for _ in range(2):
        for i in range(0, 40, 10):
            lv = torch.nn.MSELoss()(t(torch.from_numpy(X[i:i + 10])), torch.from_numpy(Y[i:i + 10]))
            topt.zero_grad()
            lv.backward()
            topt.step()
    for p, q in zip(m1.state_dict().values(), t.state_dict().values()):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_frozen_parameters_are_not_updated():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 4)).astype(np.float32)
    Y = rng.standard_normal((32, 1)).astype(np.float32)
    m = FNet((4, 8, 1), "relu")
    m.layers[0].weight.requires_grad = False
    w0 = m.layers[0].weight.numpy().copy()
    b0 = m.layers[0].bias.numpy().copy()
    fit(m, X, Y, epochs=2, batch_size=8, lr=0.1, optimizer="adam", progress=False)
    np.testing.assert_array_equal(m.layers[0].weight.numpy(), w0)
    assert not np.array_equal(m.layers[0].bias.numpy(), b0)


def test_early_stopping_restores_best_and_callback_stops():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    Y = rng.standard_normal((64, 1)).astype(np.float32)
    m = FNet((4, 16, 1), "tanh")
    h = fit(m, X, Y, epochs=50, batch_size=16, lr=0.5, optimizer="sgd", loss="huber",
            validation_data=(X[:16], Y[:16]), patience=2, progress=False, seed=0)
    assert len(h.loss) < 50 and "best_epoch" in h
    best = h.best_epoch
    from fastmlp.training_spec import LossSpec
    np.testing.assert_allclose(LossSpec("huber").value(predict(m, X[:16]), Y[:16]),
                               h.val_loss[best], rtol=1e-5)
    seen = []
    h = fit(m, X, Y, epochs=10, batch_size=16, lr=0.01, optimizer="adam",
            on_epoch_end=lambda hist: seen.append(len(hist.loss)) or len(hist.loss) == 3,
            progress=False)
    assert seen == [1, 2, 3] and len(h.loss) == 3


def test_classification_accuracy_and_sample_weight():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    m = FNet((2, 32, 32, 2), "tanh")
    h = fit(m, X, y, epochs=60, batch_size=32, lr=0.01, optimizer="adam", loss="cross_entropy",
            validation_data=(X, y), progress=False, seed=1)
    assert h.val_accuracy[-1] > 0.9
    # a zero weight removes a sample: same result as leaving it out (no shuffle, batch = n)
    m1, m2 = FNet((2, 8, 2), "relu"), FNet((2, 8, 2), "relu")
    m2.load_state_dict(m1.state_dict())
    w = np.ones(300, np.float32)
    w[::3] = 0
    fit(m1, X, y, epochs=1, batch_size=300, lr=0.1, optimizer="sgd", loss="cross_entropy",
        sample_weight=w, shuffle=False, progress=False)
    keep = w > 0
    fit(m2, X[keep], y[keep], epochs=1, batch_size=300, lr=0.1, optimizer="sgd",
        loss="cross_entropy", shuffle=False, progress=False)
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 2)),
    lambda: nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.ELU(0.5),
                          nn.Linear(8, 8), nn.Softplus(beta=1.5), nn.Linear(8, 8), nn.Hardtanh(),
                          nn.Linear(8, 2)),
    lambda: nn.Sequential(nn.Linear(5, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 2), nn.Tanh()),
], ids=["gelu-silu", "mixed", "tanh-head"])
def test_module_activations_are_traced_with_their_parameters(make):
    m = make()
    x = np.random.default_rng(0).standard_normal((9, 5)).astype(np.float32)
    with fastmlp.no_grad():
        np.testing.assert_allclose(predict(m, x), m(fastmlp.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_softmax_head_is_refused_naming_it():
    m = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="Softmax"):
        fit(m, np.zeros((4, 4), np.float32), np.zeros(4, np.int64), epochs=1, batch_size=2,
            lr=0.1, loss="cross_entropy", progress=False)


def test_dropout_trains_with_pytorch_statistics():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((4096, 8)).astype(np.float32)
    Y = np.zeros((4096, 1), np.float32)
    m = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
    assert extract_dropout(m) == [0.5, 0.0]
    h = fit(m, X, Y, epochs=1, batch_size=4096, lr=0.0, optimizer="sgd", progress=False, seed=5)
    # with lr 0 the loss is that of one dropout forward: compare with the mean over many eager
    # forwards with PyTorch-distributed masks (same expectation and spread)
    losses = []
    for _ in range(20):
        with fastmlp.enable_grad():
            out = m(fastmlp.tensor(X)).numpy()
        losses.append(float(np.mean(out.astype(np.float64) ** 2)))
    mu, sd = np.mean(losses), np.std(losses)
    assert abs(h.loss[0] - mu) < 5 * sd + 1e-3 * mu


def extract_dropout(m):
    from fastmlp.trainer import extract_chain
    return extract_chain(m).dropout


@pytest.mark.parametrize("bad, match", [
    (dict(loss="hinge"), "unknown loss"),
    (dict(optimizer="lion"), "unknown optimizer"),
    (dict(optimizer="adam", betas=(1.5, 0.9)), "Invalid beta parameter at index 0"),
    (dict(optimizer="adam", eps=-1.0), "Invalid epsilon value"),
    (dict(optimizer="adam", lr=1e39), "float32"),
    (dict(optimizer="adam", momentum=0.9), "momentum"),
    (dict(loss="cross_entropy"), "integer dtype"),
    (dict(sample_weight=np.ones(3)), r"sample_weight must have shape \(16,\)"),
    (dict(scheduler=object()), "scheduler must be an lr_scheduler"),
])
def test_bad_options_are_clear_errors_before_training(bad, match):
    m = FNet((3, 4, 1), "relu")
    before = [p.numpy().copy() for p in m.parameters()]
    X = np.zeros((16, 3), np.float32)
    Y = np.zeros((16, 1), np.float32)
    kw = dict(epochs=1, batch_size=4, lr=0.1, progress=False)
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        fit(m, X, Y, **kw)
    for p, q in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), q)
