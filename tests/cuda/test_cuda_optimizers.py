"""GPU: the multi-tensor Adam/AdamW/RMSprop/Adagrad steps on CuPy arrays give the CPU kernels'
numbers (the same optimizer.h rule; sqrt/div are IEEE-exact on both, so bitwise except where
nvcc contracts a multiply-add), one launch per call; the optimizers step GPU parameters."""
import numpy as np
import pytest

import fastmlp
from fastmlp import ops
import fastmlp.optim as optim

cp = pytest.importorskip("cupy")

SHAPES = [(20, 10), (20,), (1,), (1024, 784)]

CASES = [
    ("adam", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, amsgrad=True), 3),
    ("adamw", dict(beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1, decoupled_weight_decay=True), 2),
    ("rmsprop", dict(alpha=0.9, eps=1e-8, momentum=0.5, centered=True, weight_decay=0.01), 3),
    ("adagrad", dict(lr_decay=0.1, eps=1e-10, maximize=True), 1),
]


@pytest.mark.parametrize("kind,kw,n_slots", CASES)
def test_matches_cpu_kernels(kind, kw, n_slots):
    rng = np.random.default_rng(3)
    ps = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    sts = [[np.zeros(s, np.float32) for s in SHAPES] for _ in range(n_slots)]
    gps = [cp.asarray(p) for p in ps]
    gsts = [[cp.asarray(a) for a in lst] for lst in sts]
    fn = {"adam": ops.adam_step_many, "adamw": ops.adam_step_many,
          "rmsprop": ops.rmsprop_step_many, "adagrad": ops.adagrad_step_many}[kind]
    for step in range(1, 5):
        gs = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        steps = [step] * len(SHAPES)
        if kind in ("adam", "adamw"):
            amsgrad = kw.get("amsgrad", False)
            fn(ps, gs, sts[0], sts[1], sts[2] if amsgrad else None, steps, lr=0.01, **kw)
            fn(gps, [cp.asarray(g) for g in gs], gsts[0], gsts[1], gsts[2] if amsgrad else None,
               steps, lr=0.01, **kw)
        elif kind == "rmsprop":
            fn(ps, gs, *sts, steps, lr=0.01, **kw)
            fn(gps, [cp.asarray(g) for g in gs], *gsts, steps, lr=0.01, **kw)
        else:
            fn(ps, gs, sts[0], steps, lr=0.01, **kw)
            fn(gps, [cp.asarray(g) for g in gs], gsts[0], steps, lr=0.01, **kw)
    for p, gp in zip(ps, gps):
        np.testing.assert_allclose(cp.asnumpy(gp), p, rtol=1e-5, atol=1e-6)


def test_adam_optimizer_steps_gpu_parameters():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    w = rng.standard_normal((30, 20)).astype(np.float32)
    p = fastmlp.nn.Parameter(fastmlp.tensor(w).cuda())
    tp = torch.nn.Parameter(torch.tensor(w))
    o = optim.Adam([p], lr=0.01, amsgrad=True)
    to = torch.optim.Adam([tp], lr=0.01, amsgrad=True, foreach=False)
    for _ in range(5):
        g = rng.standard_normal((30, 20)).astype(np.float32)
        p.grad = fastmlp.tensor(g).cuda()
        tp.grad = torch.tensor(g)
        o.step()
        to.step()
    np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)
