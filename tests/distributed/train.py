"""Data-parallel training run by tests/test_distributed.py: under ``mpiexec -n N`` (N = 2, 3) and
as one plain process (the reference). Global batch 12 everywhere, so every rank count sees the
same batches on the same sample order. Rank 0 writes every result to ``OUT.npz``; the checks that
need all ranks (weights equal on every rank, resumed runs equal uninterrupted ones) are done here
and their outcome written there too.

usage: python train.py OUT_DIR
"""
import os
import sys

import numpy as np

import fastmlp
import fastmlp.distributed as dist
from fastmlp import nn, optim
from fastmlp.nn.parallel import DistributedDataParallel as DDP
from fastmlp.utils.data import DataLoader, DistributedSampler, TensorDataset

GLOBAL_BATCH = 12
out_dir = sys.argv[1]
dist.init()
rank, world = dist.get_rank(), dist.get_world_size()
assert GLOBAL_BATCH % world == 0
results, checks = {}, {}


def flat(model):
    return np.concatenate([p.detach().numpy().reshape(-1) for p in model.parameters()])


def same_on_all_ranks(vec):
    rows = [np.empty_like(vec) for _ in range(world)]
    dist.all_gather(rows, vec)
    return all(np.array_equal(rows[0], r) for r in rows)


def make_net(width, seed):
    fastmlp.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 2))


rng = np.random.default_rng(0)
X = rng.standard_normal((48, 6)).astype(np.float32)
Y = (np.sin(X[:, :2]) + 0.1 * rng.standard_normal((48, 2))).astype(np.float32)
ds = TensorDataset(fastmlp.from_numpy(X), fastmlp.from_numpy(Y))


def make_opt(kind, params):
    if kind == "sgd":
        return optim.SGD(params, lr=0.05)
    if kind == "momentum":
        return optim.SGD(params, lr=0.03, momentum=0.9, nesterov=True, weight_decay=1e-3)
    return optim.Adam(params, lr=0.01)


def eager(kind, epochs, net=None, opt_state=None, start_epoch=0, accumulate=False):
    """The DDP loop: DistributedSampler + local batch GLOBAL_BATCH / world."""
    if net is None:
        net = make_net(16, 100 + rank)  # different on each rank: DDP broadcasts rank 0's
    model = DDP(net, bucket_cap_mb=0.0005)  # ~500 bytes: several buckets
    opt = make_opt(kind, model.parameters())
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    sampler = DistributedSampler(ds, shuffle=True, seed=7)
    loader = DataLoader(ds, batch_size=GLOBAL_BATCH // world, sampler=sampler)
    loss_fn = nn.MSELoss()
    for e in range(start_epoch, start_epoch + epochs):
        sampler.set_epoch(e)
        for xb, yb in loader:
            opt.zero_grad()
            if accumulate:  # two micro-batches: the first without communication
                h = xb.shape[0] // 2
                with model.no_sync():
                    loss_fn(model(xb[:h]), yb[:h]).backward()
                loss_fn(model(xb[h:]), yb[h:]).backward()
            else:
                loss_fn(model(xb), yb).backward()
            opt.step()
    return net, opt


kinds = ["sgd", "momentum"] + (["adam"] if hasattr(optim, "Adam") else [])
for kind in kinds:
    net, opt = eager(kind, 3, accumulate=kind == "momentum")
    results[f"eager_{kind}"] = flat(net)
    checks[f"eager_{kind}_ranks_equal"] = same_on_all_ranks(flat(net))

# Checkpoint on rank 0 after 2 epochs, every rank resumes from the file: same as 3 epochs straight.
net, opt = eager("momentum", 2)
ckpt = os.path.join(out_dir, "eager_ckpt.pt")
dist.save_on_rank0({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 2}, ckpt)
state = fastmlp.load(ckpt)
net2 = make_net(16, 999)
net2.load_state_dict(state["model"])
net2, _ = eager("momentum", 1, net=net2, opt_state=state["optimizer"], start_epoch=state["epoch"])
net3, _ = eager("momentum", 3)
checks["eager_resume_exact"] = bool(np.array_equal(flat(net2), flat(net3)))

# fit(distributed=True): 50 rows (the last batch has 2 rows: with 3 ranks one rank has none),
# the small path (width 16) and the gemm path (width 300), SGD and momentum.
Xf = rng.standard_normal((50, 6)).astype(np.float32)
Yf = (np.cos(Xf[:, :2]) + 0.1 * rng.standard_normal((50, 2))).astype(np.float32)
Xv = rng.standard_normal((17, 6)).astype(np.float32)
Yv = np.cos(Xv[:, :2]).astype(np.float32)
fit_opts = {"sgd": dict(lr=0.05), "momentum": dict(lr=0.02, momentum=0.9, weight_decay=1e-3)}
for width in (16, 300):
    for kind, kw in fit_opts.items():
        net = make_net(width, 200 + rank)
        h = fastmlp.fit(net, Xf, Yf, epochs=3, batch_size=GLOBAL_BATCH, seed=5,
                        validation_data=(Xv, Yv), distributed=True, progress=False, **kw)
        key = f"fit_{kind}_{width}"
        results[key] = flat(net)
        results[key + "_loss"] = np.array(h["loss"])
        results[key + "_val_loss"] = np.array(h["val_loss"])
        checks[key + "_ranks_equal"] = same_on_all_ranks(flat(net))

# fit: checkpoint after 2 epochs (rank 0 writes), resume for 1: same as 3 epochs straight.
kw = fit_opts["momentum"]
net = make_net(300, 300 + rank)
h = fastmlp.fit(net, Xf, Yf, epochs=2, batch_size=GLOBAL_BATCH, seed=9, distributed=True,
                progress=False, **kw)
ckpt = os.path.join(out_dir, "fit_ckpt.pt")
dist.save_on_rank0({"model": net.state_dict(), "fit": h["state"]}, ckpt)
state = fastmlp.load(ckpt)
net2 = make_net(300, 999)
net2.load_state_dict(state["model"])
fastmlp.fit(net2, Xf, Yf, epochs=1, batch_size=GLOBAL_BATCH, distributed=True, progress=False,
            resume=state["fit"], **kw)
net3 = make_net(300, 300 + rank)
fastmlp.fit(net3, Xf, Yf, epochs=3, batch_size=GLOBAL_BATCH, seed=9, distributed=True,
            progress=False, **kw)
checks["fit_resume_exact"] = bool(np.array_equal(flat(net2), flat(net3)))
results["fit_resume"] = flat(net2)

# fit(distributed=True) on the general trainer (mlp_fit): Adam; AdamW + cross-entropy with class
# and sample weights (the loss denominator is the global batch's sum of weights); Tanh + Huber +
# RMSprop; dropout (masks per global row). 50 rows: with 3 ranks the last batch leaves one empty.
Yc = (Xf[:, 0] > 0).astype(np.int64) + (Xf[:, 1] > 0.5)
Yvc = (Xv[:, 0] > 0).astype(np.int64) + (Xv[:, 1] > 0.5)
swf = rng.uniform(0.5, 1.5, 50)


def make_general(kind, seed):
    fastmlp.manual_seed(seed)
    if kind == "tanh_huber_rmsprop":
        return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                             nn.Linear(16, 2))
    if kind == "adamw_ce":
        return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 3))
    if kind == "dropout":
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 2))
    return make_net(16, seed)


general = {
    "adam": (Yf, Yv, dict(optimizer="adam", lr=0.01)),
    "adamw_ce": (Yc, Yvc, dict(optimizer="adamw", lr=0.01, weight_decay=0.05, loss="cross_entropy",
                               class_weight=np.array([1.0, 0.5, 2.0]), sample_weight=swf)),
    "tanh_huber_rmsprop": (Yf, Yv, dict(optimizer="rmsprop", lr=0.003, momentum=0.3,
                                        loss=nn.HuberLoss(delta=0.3))),
    "dropout": (Yf, Yv, dict(optimizer="sgd", lr=0.05, momentum=0.9)),
}
for kind, (yt, yv, kw) in general.items():
    net = make_general(kind, 400 + rank)
    h = fastmlp.fit(net, Xf, yt, epochs=3, batch_size=GLOBAL_BATCH, seed=5,
                    validation_data=(Xv, yv), distributed=True, progress=False, **kw)
    key = f"fit_{kind}"
    results[key] = flat(net)
    results[key + "_loss"] = np.array(h["loss"])
    results[key + "_val_loss"] = np.array(h["val_loss"])
    if "val_accuracy" in h:
        results[key + "_val_accuracy"] = np.array(h["val_accuracy"])
    checks[key + "_ranks_equal"] = same_on_all_ranks(flat(net))

# The general trainer's resume: Adam's state rides in the optim instance; rank 0 saves model,
# optimizer and fit state after 2 epochs, every rank loads and continues 1: same as 3 straight.
net = make_net(16, 500 + rank)
opt = optim.Adam(net.parameters(), lr=0.01)
h = fastmlp.fit(net, Xf, Yf, epochs=2, batch_size=GLOBAL_BATCH, seed=9, optimizer=opt,
                distributed=True, progress=False)
ckpt = os.path.join(out_dir, "fit_adam_ckpt.pt")
dist.save_on_rank0({"model": net.state_dict(), "optimizer": opt.state_dict(), "fit": h["state"]},
                   ckpt)
state = fastmlp.load(ckpt)
net2 = make_net(16, 999)
net2.load_state_dict(state["model"])
opt2 = optim.Adam(net2.parameters(), lr=0.01)
opt2.load_state_dict(state["optimizer"])
fastmlp.fit(net2, Xf, Yf, epochs=1, batch_size=GLOBAL_BATCH, optimizer=opt2, distributed=True,
            progress=False, resume=state["fit"])
net3 = make_net(16, 500 + rank)
fastmlp.fit(net3, Xf, Yf, epochs=3, batch_size=GLOBAL_BATCH, seed=9,
            optimizer=optim.Adam(net3.parameters(), lr=0.01), distributed=True, progress=False)
checks["fit_adam_resume_exact"] = bool(np.array_equal(flat(net2), flat(net3)))
results["fit_adam_resume"] = flat(net2)

if rank == 0:
    np.savez(os.path.join(out_dir, "results.npz"), world=world, kinds=np.array(kinds),
             checks=np.array([f"{k}={v}" for k, v in checks.items()]), **results)
dist.barrier()
