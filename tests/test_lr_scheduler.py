"""fastmlp.optim.lr_scheduler against torch.optim.lr_scheduler: the same learning-rate (and
momentum/beta1) sequences, get_last_lr, state-dict round trips, closed forms, bad input."""
import pickle

import numpy as np
import pytest

import fastmlp
import fastmlp.optim as optim
from fastmlp.optim import lr_scheduler as fls

torch = pytest.importorskip("torch")
tls = torch.optim.lr_scheduler


def _opts(kind="SGD", groups=2, **kw):
    fps = [fastmlp.nn.Parameter(fastmlp.zeros(2)) for _ in range(groups)]
    tps = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    lrs = [0.1 * (i + 1) for i in range(groups)]
    fo = getattr(optim, kind)([{"params": [p], "lr": lr} for p, lr in zip(fps, lrs)], **kw)
    to = getattr(torch.optim, kind)([{"params": [p], "lr": lr} for p, lr in zip(tps, lrs)], **kw)
    return fo, to


def _lam(e):
    return 0.95 ** e


def _mul(e):
    return 0.9


CASES = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("LambdaLR", dict(lr_lambda=_lam)),
    ("MultiplicativeLR", dict(lr_lambda=_mul)),
    ("LinearLR", dict(start_factor=0.25, end_factor=0.9, total_iters=6)),
    ("ConstantLR", dict(factor=0.5, total_iters=4)),
    ("PolynomialLR", dict(total_iters=8, power=2.0)),
    ("OneCycleLR", dict(max_lr=[0.5, 1.0], total_steps=25)),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=25, anneal_strategy="linear", three_phase=True)),
    ("OneCycleLR", dict(max_lr=0.3, epochs=5, steps_per_epoch=5, pct_start=0.4,
                        cycle_momentum=False, div_factor=10.0, final_div_factor=100.0)),
]


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_same_sequence_as_torch(name, kw, kind):
    fo, to = _opts(kind, momentum=0.9) if kind == "SGD" else _opts(kind)
    fs = getattr(fls, name)(fo, **kw)
    ts = getattr(tls, name)(to, **kw)
    assert fs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
    for _ in range(24):
        fo.step()
        to.step()
        fs.step()
        ts.step()
        assert fs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        for fg, tg in zip(fo.param_groups, to.param_groups):
            assert fg["lr"] == pytest.approx(tg["lr"], rel=1e-12)
            if kind == "Adam":
                assert fg["betas"] == pytest.approx(tg["betas"], rel=1e-12)
            else:
                assert fg["momentum"] == pytest.approx(tg["momentum"], rel=1e-12)


def test_sequential_and_chained_match_torch():
    fo, to = _opts()
    fs = fls.SequentialLR(fo, [fls.LinearLR(fo, 0.1, total_iters=3),
                               fls.CosineAnnealingLR(fo, T_max=6)], milestones=[3])
    ts = tls.SequentialLR(to, [tls.LinearLR(to, 0.1, total_iters=3),
                               tls.CosineAnnealingLR(to, T_max=6)], milestones=[3])
    f2, t2 = _opts()
    fc = fls.ChainedScheduler([fls.ExponentialLR(f2, 0.9), fls.StepLR(f2, 2, 0.5)])
    tc = tls.ChainedScheduler([tls.ExponentialLR(t2, 0.9), tls.StepLR(t2, 2, 0.5)])
    for _ in range(12):
        for o in (fo, to, f2, t2):
            o.step()
        for s in (fs, ts, fc, tc):
            s.step()
        assert fs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        assert fc.get_last_lr() == pytest.approx(tc.get_last_lr(), rel=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", threshold_mode="abs", patience=1),
                                dict(factor=0.5, patience=2, cooldown=2, min_lr=[0.01, 0.05]),
                                dict(threshold=0.1, eps=0.05)])
def test_reduce_on_plateau_matches_torch(kw):
    fo, to = _opts()
    fs = fls.ReduceLROnPlateau(fo, **kw)
    ts = tls.ReduceLROnPlateau(to, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.97, 0.5, 0.6, 0.6, 0.6, 0.61, 0.62, 0.63, 0.4, 0.4] * 2
    for m in metrics:
        fs.step(m)
        ts.step(m)
        assert fs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        assert fs.num_bad_epochs == ts.num_bad_epochs and fs.best == ts.best


def test_reduce_on_plateau_needs_a_metric():
    fo, _ = _opts()
    s = fls.ReduceLROnPlateau(fo)
    with pytest.raises(TypeError, match="metric"):
        s.step()


@pytest.mark.parametrize("name,kw", CASES[:9] + [CASES[9]])
def test_state_dict_round_trip(name, kw):
    fo, _ = _opts()
    s = getattr(fls, name)(fo, **kw)
    for _ in range(5):
        fo.step()
        s.step()
    sd = s.state_dict()
    if name not in ("LambdaLR", "MultiplicativeLR"):
        sd = pickle.loads(pickle.dumps(sd))
    f2, _ = _opts()
    f2.load_state_dict(fo.state_dict())
    s2 = getattr(fls, name)(f2, **kw)
    s2.load_state_dict(sd)
    for g, lr in zip(f2.param_groups, s.get_last_lr()):
        g["lr"] = lr
    for _ in range(6):
        for o, sch in ((fo, s), (f2, s2)):
            o.step()
            sch.step()
        assert s.get_last_lr() == pytest.approx(s2.get_last_lr(), rel=1e-12)


def test_plateau_and_sequential_state_round_trip():
    fo, _ = _opts()
    s = fls.ReduceLROnPlateau(fo, patience=1)
    for m in (1.0, 1.0, 1.0):
        s.step(m)
    s2 = fls.ReduceLROnPlateau(_opts()[0], patience=5)
    s2.load_state_dict(pickle.loads(pickle.dumps(s.state_dict())))
    assert s2.patience == 1 and s2.num_bad_epochs == s.num_bad_epochs
    fo, to = _opts()
    fs = fls.SequentialLR(fo, [fls.ConstantLR(fo, 0.5, 2), fls.ExponentialLR(fo, 0.9)], [2])
    for _ in range(3):
        fo.step()
        fs.step()
    sd = fs.state_dict()
    assert len(sd["_schedulers"]) == 2 and sd["last_epoch"] == 3


def test_closed_form_with_epoch():
    fo, to = _opts()
    fs = fls.StepLR(fo, 2, 0.5)
    ts = tls.StepLR(to, 2, 0.5)
    with pytest.warns(UserWarning):
        fs.step(7)
    with pytest.warns(UserWarning):
        ts.step(7)
    assert fs.get_last_lr() == pytest.approx(ts.get_last_lr())


@pytest.mark.parametrize("make,exc,msg", [
    (lambda o: fls.OneCycleLR(o, 0.1), ValueError, "total_steps OR"),
    (lambda o: fls.OneCycleLR(o, 0.1, total_steps=0), ValueError, "positive integer total_steps"),
    (lambda o: fls.OneCycleLR(o, 0.1, total_steps=5, anneal_strategy="x"), ValueError, "anneal"),
    (lambda o: fls.OneCycleLR(o, [0.1], total_steps=5), ValueError, "same length"),
    (lambda o: fls.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be < 1.0"),
    (lambda o: fls.ReduceLROnPlateau(o, mode="up"), ValueError, "mode up is unknown"),
    (lambda o: fls.LinearLR(o, start_factor=0), ValueError, "Starting multiplicative factor"),
    (lambda o: fls.ConstantLR(o, factor=2), ValueError, "between 0 and 1"),
    (lambda o: fls.StepLR("sgd", 2), TypeError, "is not an Optimizer"),
    (lambda o: fls.SequentialLR(o, [fls.StepLR(o, 2)], [1]), ValueError, "one more"),
])
def test_bad_input(make, exc, msg):
    fo, _ = _opts()
    with pytest.raises(exc, match=msg):
        make(fo)


def test_onecycle_too_many_steps():
    fo, to = _opts()
    s = fls.OneCycleLR(fo, 0.1, total_steps=3)
    for _ in range(3):
        s.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        s.step()
