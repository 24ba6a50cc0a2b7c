"""Helpers shared by the fit / inference / cost-model tests (imported by name: tests/ is on the
path under pytest's default import mode). A plain module, not conftest.py: tests/cuda/conftest.py
would shadow a `from conftest import` when the whole suite is collected."""
import fastmlp


def chain_net(sizes, act, dropout=0.0, seed=0):
    """Linear layers of `sizes` with act() (and Dropout) between them, seeded."""
    from fastmlp import nn

    fastmlp.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(act())
            if dropout:
                mods.append(nn.Dropout(dropout))
    return nn.Sequential(*mods)


def eager_epoch(model, opt, lossf, X, y, perm, B):
    """One epoch of the eager loop over X[perm] in batches of B; returns the row-weighted mean loss."""
    tot = 0.0
    for s in range(0, len(perm), B):
        idx = perm[s:s + B]
        opt.zero_grad()
        loss = lossf(model(fastmlp.tensor(X[idx])), fastmlp.tensor(y[idx]))
        loss.backward()
        opt.step()
        tot += float(loss.item()) * len(idx)
    return tot / len(perm)
