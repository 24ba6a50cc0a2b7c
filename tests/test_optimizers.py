"""Adam, AdamW, RMSprop, Adagrad (and SGD through the shared base): step-by-step parity with
torch.optim from identical weights and gradients, the multi-tensor kernel against its per-element
reference and per-tensor calls, thread-count independence, state dicts loadable from PyTorch's,
and bad hyper-parameters refused with PyTorch's messages."""
import pickle

import numpy as np
import pytest

import fastmlp
from fastmlp import ops
import fastmlp.optim as optim

torch = pytest.importorskip("torch")

SHAPES = [(7, 5), (5,), (1,), (30, 41)]  # threads: test_kernel_matches_reference_and_per_tensor
STEPS = 22


def _grads(rng, n):
    return [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(n)]


def _run_pair(fm_cls, th_cls, kwargs, rng, steps=STEPS, dtype=np.float32):
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = _grads(rng, steps)
    fp = [fastmlp.nn.Parameter(fastmlp.tensor(a.copy())) for a in init]
    tp = [torch.nn.Parameter(torch.tensor(a.copy())) for a in init]
    fo = fm_cls(fp, **kwargs)
    to = th_cls(tp, foreach=False, **kwargs)
    for k in range(steps):
        for p, q, g in zip(fp, tp, grads[k]):
            p.grad = fastmlp.tensor(g.astype(dtype))
            q.grad = torch.tensor(g.astype(dtype))
        fo.step()
        to.step()
    return fp, tp, fo, to


def _close(fp, tp, rtol=1e-6, atol=1e-7):
    # 1e-6 relative to each element and (for elements that cancelled towards 0) to the
    # parameter's scale: PyTorch's kernels fuse multiply-adds, ours round each operation.
    for p, q in zip(fp, tp):
        want = q.detach().numpy()
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=rtol, atol=max(atol, rtol * scale))


ADAM_CASES = [
    {}, {"lr": 0.01, "betas": (0.8, 0.9)}, {"weight_decay": 0.1}, {"amsgrad": True},
    {"maximize": True, "weight_decay": 0.05, "amsgrad": True}, {"eps": 1e-3, "lr": 0.05},
    {"betas": (0.3, 0.5)},  # 1 - beta1 >= 0.5: lerp's other form
]


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam_matches_torch(kw, cpu_path, rng):
    fp, tp, fo, to = _run_pair(optim.Adam, torch.optim.Adam, kw, rng)
    _close(fp, tp)
    for p, q in zip(fp, tp):
        a, b = fo.state[p], to.state[q]
        np.testing.assert_allclose(a["exp_avg"].numpy(), b["exp_avg"].numpy(), rtol=1e-6, atol=3e-7)
        np.testing.assert_allclose(a["exp_avg_sq"].numpy(), b["exp_avg_sq"].numpy(), rtol=1e-6, atol=1e-10)
        assert a["step"] == float(b["step"])


@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.3, "lr": 0.01}, {"amsgrad": True},
                                {"maximize": True}, {"weight_decay": 0}])
def test_adamw_matches_torch(kw, cpu_path, rng):
    fp, tp, _, _ = _run_pair(optim.AdamW, torch.optim.AdamW, kw, rng)
    _close(fp, tp)


RMS_CASES = [{}, {"alpha": 0.9, "lr": 0.001}, {"momentum": 0.9}, {"centered": True},
             {"centered": True, "momentum": 0.5, "weight_decay": 0.1},
             {"maximize": True, "momentum": 0.3}, {"alpha": 0.3, "centered": True}]


@pytest.mark.parametrize("kw", RMS_CASES)
def test_rmsprop_matches_torch(kw, cpu_path, rng):
    fp, tp, _, _ = _run_pair(optim.RMSprop, torch.optim.RMSprop, kw, rng)
    _close(fp, tp, rtol=2e-6, atol=1e-6)


ADAGRAD_CASES = [{}, {"lr_decay": 0.05}, {"weight_decay": 0.1},
                 {"initial_accumulator_value": 0.5, "eps": 1e-6}, {"maximize": True, "lr": 0.1}]


@pytest.mark.parametrize("kw", ADAGRAD_CASES)
def test_adagrad_matches_torch(kw, cpu_path, rng):
    fp, tp, _, _ = _run_pair(optim.Adagrad, torch.optim.Adagrad, kw, rng)
    _close(fp, tp)


@pytest.mark.parametrize("cls,kw", [(optim.Adam, {"amsgrad": True, "weight_decay": 0.1}),
                                    (optim.RMSprop, {"centered": True, "momentum": 0.9}),
                                    (optim.Adagrad, {"lr_decay": 0.01})])
def test_float64_params_match_torch(cls, kw, rng):
    th = getattr(torch.optim, cls.__name__)
    fp, tp, _, _ = _run_pair(cls, th, kw, rng, steps=8, dtype=np.float64)
    _close(fp, tp, rtol=1e-12, atol=1e-14)


KINDS = [
    ("adam", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, amsgrad=True), 3),
    ("adamw", dict(beta1=0.7, beta2=0.99, eps=1e-8, weight_decay=0.1), 2),
    ("rmsprop", dict(alpha=0.9, eps=1e-8, momentum=0.5, centered=True, weight_decay=0.01), 3),
    ("rmsprop", dict(alpha=0.99, eps=1e-8), 1),
    ("adagrad", dict(lr_decay=0.1, eps=1e-10, maximize=True), 1),
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.01), 1),
]


def _state_for(kind, kw, shape, n_slots, rng):
    slots = [np.abs(rng.standard_normal(shape)).astype(np.float32) for _ in range(n_slots)]
    if kind == "rmsprop" and kw.get("centered"):
        slots[2] *= 0.1  # grad_avg**2 below square_avg
    return slots


@pytest.mark.parametrize("kind,kw,n_slots", KINDS)
def test_kernel_matches_reference_and_per_tensor(kind, kw, n_slots, rng, threads, cpu_path):
    # every CPU path (optim_step_many's loops are compiled for the baseline and for AVX2)
    shapes = [(3,), (1000, 70), (1,), (9000,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    states = [_state_for(kind, kw, s, n_slots, rng) for s in shapes]
    steps = [1, 5, 2, 40]

    def run(reference, per_tensor, nthreads):
        threads(nthreads)
        p = [a.copy() for a in params]
        st = [[x.copy() for x in s] for s in states]
        lists = [[st[i][j] for i in range(len(p))] if j < n_slots else None for j in range(3)]
        if per_tensor:
            for i in range(len(p)):
                one = [None if lst is None else [lst[i]] for lst in lists]
                ops.optim_step_many(kind, [p[i]], [grads[i]], *one, [steps[i]], lr=0.01, **kw)
        else:
            ops.optim_step_many(kind, p, grads, *lists, steps, lr=0.01, reference=reference, **kw)
        return p, st

    want = run(True, False, 1)
    for args in [(False, False, 1), (False, False, 2), (False, True, 2)]:
        got = run(*args)
        for a, b in zip(got[0], want[0]):
            np.testing.assert_array_equal(a, b)  # bitwise: same rule, element-wise
        for sa, sb in zip(got[1], want[1]):
            for a, b in zip(sa, sb):
                np.testing.assert_array_equal(a, b)


def test_state_dict_from_torch_continues_identically(rng):
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = _grads(rng, 12)
    tp = [torch.nn.Parameter(torch.tensor(a.copy())) for a in init]
    to = torch.optim.Adam(tp, lr=0.01, amsgrad=True, weight_decay=0.01, foreach=False)

    def tstep(k):
        for q, g in zip(tp, grads[k]):
            q.grad = torch.tensor(g)
        to.step()

    for k in range(6):
        tstep(k)
    fp = [fastmlp.nn.Parameter(fastmlp.tensor(q.detach().numpy().copy())) for q in tp]
    fo = optim.Adam(fp, lr=0.5)  # hyper-parameters come from the loaded state dict
    fo.load_state_dict(to.state_dict())
    assert fo.param_groups[0]["lr"] == 0.01 and fo.param_groups[0]["amsgrad"]
    for k in range(6, 12):
        tstep(k)
        for p, g in zip(fp, grads[k]):
            p.grad = fastmlp.tensor(g)
        fo.step()
    _close(fp, tp)
    # and back: fastmlp's state dict (as torch tensors) loads into torch
    sd = fo.state_dict()
    conv = {"param_groups": sd["param_groups"],
            "state": {k: {n: (torch.tensor(v.numpy()) if hasattr(v, "numpy") else v)
                          for n, v in st.items()} for k, st in sd["state"].items()}}
    to2 = torch.optim.Adam([torch.nn.Parameter(q.detach().clone()) for q in tp], foreach=False)
    to2.load_state_dict(conv)
    assert float(to2.state_dict()["state"][0]["step"]) == 12.0


@pytest.mark.parametrize("cls", [optim.RMSprop, optim.Adagrad, optim.AdamW])
def test_state_dict_round_trip_and_pickle(cls, rng):
    p = fastmlp.nn.Parameter(fastmlp.tensor(rng.standard_normal(4).astype(np.float32)))
    o = cls([p], lr=0.01)
    for _ in range(3):
        p.grad = fastmlp.tensor(rng.standard_normal(4).astype(np.float32))
        o.step()
    q = fastmlp.nn.Parameter(fastmlp.tensor(p.detach().numpy().copy()))
    o2 = cls([q], lr=0.5)
    o2.load_state_dict(pickle.loads(pickle.dumps(o.state_dict())))
    g = rng.standard_normal(4).astype(np.float32)
    p.grad = fastmlp.tensor(g)
    q.grad = fastmlp.tensor(g)
    o.step()
    o2.step()
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_add_param_group_and_zero_grad():
    a = fastmlp.nn.Parameter(fastmlp.ones(3))
    b = fastmlp.nn.Parameter(fastmlp.ones(2))
    o = optim.Adam([a], lr=0.1)
    o.add_param_group({"params": [b], "lr": 0.01})
    assert o.param_groups[1]["betas"] == (0.9, 0.999) and o.param_groups[1]["lr"] == 0.01
    for p in (a, b):
        p.grad = fastmlp.ones(p.shape)
    o.step()
    assert a.detach().numpy()[0] == pytest.approx(0.9, rel=1e-6)
    assert b.detach().numpy()[0] == pytest.approx(0.99, rel=1e-6)
    o.zero_grad(set_to_none=False)
    assert a.grad is not None and float(a.grad.sum()) == 0.0
    o.zero_grad()
    assert a.grad is None and b.grad is None


@pytest.mark.parametrize("make,msg", [
    (lambda p: optim.Adam(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.Adam(p, betas=(1.5, 0.9)), "Invalid beta parameter at index 0: 1.5"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (lambda p: optim.Adam(p, eps=-1), "Invalid epsilon value: -1"),
    (lambda p: optim.AdamW(p, weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (lambda p: optim.Adam(p, lr=1e39), "Invalid learning rate: 1e+39"),
    (lambda p: optim.RMSprop(p, alpha=-0.5), "Invalid alpha value: -0.5"),
    (lambda p: optim.RMSprop(p, momentum=-1), "Invalid momentum value: -1"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), "Invalid lr_decay value: -1"),
    (lambda p: optim.Adagrad(p, initial_accumulator_value=-1),
     "Invalid initial_accumulator_value value: -1"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum"),
    (lambda p: optim.SGD(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=1e40), "Invalid momentum value: 1e+40"),
])
def test_bad_hyperparameters(make, msg):
    p = [fastmlp.nn.Parameter(fastmlp.ones(2))]
    with pytest.raises(ValueError, match=msg.replace("+", r"\+")) as e:
        make(p)
    pickle.loads(pickle.dumps(e.value))


def test_torch_refuses_the_same(cpu_path):
    p = [torch.nn.Parameter(torch.ones(2))]
    for kw, msg in [({"lr": -1}, "Invalid learning rate: -1"),
                    ({"betas": (1.5, 0.9)}, "Invalid beta parameter at index 0: 1.5"),
                    ({"eps": -1}, "Invalid epsilon value: -1")]:
        with pytest.raises(ValueError, match=msg):
            torch.optim.Adam(p, **kw)


def test_kernel_bad_arrays():
    p = [np.ones(3, np.float32)]
    with pytest.raises(ValueError, match="exp_avg"):
        ops.adam_step_many(p, [np.ones(3, np.float32)], [np.ones(4, np.float32)],
                           [np.ones(3, np.float32)], None, [1], lr=0.1, beta1=0.9, beta2=0.99,
                           eps=1e-8)
    with pytest.raises(ValueError, match="step counts"):
        ops.adam_step_many(p, [np.ones(3, np.float32)], [np.ones(3, np.float32)],
                           [np.ones(3, np.float32)], None, [0], lr=0.1, beta1=0.9, beta2=0.99,
                           eps=1e-8)
    with pytest.raises(ValueError, match="max_exp_avg_sqs"):
        ops.adam_step_many(p, [np.ones(3, np.float32)], [np.ones(3, np.float32)],
                           [np.ones(3, np.float32)], None, [1], lr=0.1, beta1=0.9, beta2=0.99,
                           eps=1e-8, amsgrad=True)
    with pytest.raises(TypeError):
        ops.rmsprop_step_many([np.ones(3)], [np.ones(3)], [np.ones(3)], None, None, [1], lr=0.1,
                              alpha=0.9, eps=1e-8)
    with pytest.raises(ValueError, match="grad"):
        ops.adagrad_step_many(p, [np.ones(2, np.float32)], [np.ones(3, np.float32)], [1], lr=0.1)
    a = np.ones(3, np.float32)
    with pytest.raises(ValueError):  # the state aliases the parameter
        ops.adagrad_step_many([a], [np.ones(3, np.float32)], [a], [1], lr=0.1)


def test_nan_propagates_like_torch():
    g = np.array([np.nan, 1.0, np.inf], np.float32)
    fp = fastmlp.nn.Parameter(fastmlp.ones(3))
    tp = torch.nn.Parameter(torch.ones(3))
    fo = optim.Adam([fp], amsgrad=True)
    to = torch.optim.Adam([tp], amsgrad=True, foreach=False)
    for _ in range(2):
        fp.grad = fastmlp.tensor(g)
        tp.grad = torch.tensor(g)
        fo.step()
        to.step()
    np.testing.assert_array_equal(fp.detach().numpy(), tp.detach().numpy())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, rng):
    gs = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    fp = [fastmlp.nn.Parameter(fastmlp.zeros(s)) for s in SHAPES]
    tp = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
    for p, q, g in zip(fp, tp, gs):
        p.grad = fastmlp.tensor(g)
        q.grad = torch.tensor(g)
    a = fastmlp.nn.utils.clip_grad_norm_(fp, max_norm, norm_type=norm_type)
    b = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type=norm_type, foreach=False)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    for p, q in zip(fp, tp):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6, atol=1e-9)


def test_clip_grad_nonfinite_and_value(rng):
    p = fastmlp.nn.Parameter(fastmlp.zeros(3))
    p.grad = fastmlp.tensor(np.array([1.0, np.inf, 2.0], np.float32))
    with pytest.raises(RuntimeError, match="non-finite"):
        fastmlp.nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert float(fastmlp.nn.utils.clip_grad_norm_([], 1.0)) == 0.0
    g = rng.standard_normal((4, 5)).astype(np.float32) * 3
    p = fastmlp.nn.Parameter(fastmlp.zeros((4, 5)))
    q = torch.nn.Parameter(torch.zeros((4, 5)))
    p.grad = fastmlp.tensor(g)
    q.grad = torch.tensor(g)
    fastmlp.nn.utils.clip_grad_value_(p, 0.7)
    torch.nn.utils.clip_grad_value_(q, 0.7)
    np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
