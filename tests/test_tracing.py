"""fit/predict read a fastmlp model by tracing its forward (fastmlp.tracing): what they run is
exactly what model(x) computes, or they refuse naming the op. Issue 16's first class: shared
modules, blocks applied twice, tied weights, layers called in another order than registered."""
import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.tracing import TraceError
from fastmlp.trainer import extract_chain, fit, predict


def X(n=16, f=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, f)).astype(np.float32)


def same_as_forward(model, x):
    with fastmlp.no_grad():
        want = model(fastmlp.tensor(x)).numpy()
    got = predict(model, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class Reordered(nn.Module):
    """Registered out, hidden, inp; applied inp -> hidden -> out."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(7, 2)
        self.hidden = nn.Linear(6, 7)
        self.inp = nn.Linear(5, 6)

    def forward(self, x):
        return self.out(fastmlp.relu(self.hidden(fastmlp.relu(self.inp(x)))))


class SharedAct(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.a = nn.Linear(5, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 1)

    def forward(self, x):
        return self.c(self.act(self.b(self.act(self.a(x)))))


class NoReluAtEnd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.b = nn.Linear(4, 3)

    def forward(self, x):
        h = self.a(x)
        h = fastmlp.relu(h)
        return self.b(h)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)),
    lambda: nn.Sequential(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), nn.Linear(8, 3), nn.ReLU()),
    lambda: nn.Sequential(nn.Linear(5, 4), nn.Identity(), nn.Linear(4, 1)),
    lambda: (lambda act: nn.Sequential(nn.Linear(5, 6), act, nn.Linear(6, 6), act, nn.Linear(6, 1)))(nn.ReLU()),
    Reordered, SharedAct, NoReluAtEnd,
], ids=["seq", "nested-relu-end", "identity", "shared-relu-in-seq", "reordered", "shared-act",
        "functional"])
def test_predict_equals_forward_for_every_accepted_model(make):
    m = make()
    same_as_forward(m, X())
    # and one epoch of fit equals the eager loop on the same order
    x, y = X(32), np.random.default_rng(1).standard_normal((32, m(fastmlp.tensor(X(1))).shape[1])).astype(np.float32)
    eager = make()
    eager.load_state_dict(m.state_dict())
    opt = fastmlp.optim.SGD(eager.parameters(), lr=0.05)
    for i in range(0, 32, 8):
        loss = nn.MSELoss()(eager(fastmlp.tensor(x[i:i + 8])), fastmlp.tensor(y[i:i + 8]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    fit(m, x, y, epochs=1, batch_size=8, lr=0.05, shuffle=False, progress=False)
    for (k, p), q in zip(m.state_dict().items(), eager.state_dict().values()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_reordered_registration_is_read_in_forward_order():
    c = extract_chain(Reordered())
    assert [w.shape for w in c.weights] == [(6, 5), (7, 6), (2, 7)]
    assert c.relu == [True, True, False]


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        return self.out(fastmlp.relu(self.a(fastmlp.relu(self.a(x)))))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(fastmlp.relu(self.a(x)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x) + x


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 1)

    def forward(self, x):
        return self.a(x) * 2.0


@pytest.mark.parametrize("model, match", [
    (Twice(), r"'a.weight' is used at two places"),
    (Tied(), r"'a.weight' is used at two places"),
    (Residual(), r"applies AddBackward0"),
    (Scaled(), r"applies MulBackward0"),
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 1)), r"relu to its input before the first Linear"),
])
def test_models_fit_cannot_run_are_refused_naming_the_op(model, match):
    with pytest.raises(TraceError, match=match):
        predict(model, X(4, 4 if not isinstance(model, nn.Sequential) else 3))
    with pytest.raises(ValueError, match=match):  # TraceError is a ValueError
        fit(model, X(8, 4 if not isinstance(model, nn.Sequential) else 3), np.zeros((8, 1), np.float32),
            epochs=1, batch_size=4, lr=0.1, progress=False)


def test_cached_chain_follows_module_changes():
    m = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    x = X()
    same_as_forward(m, x)
    c1 = extract_chain(m)
    assert extract_chain(m) is c1  # cached: no re-trace while nothing changed
    m[1] = nn.Identity()  # the ReLU goes away
    same_as_forward(m, x)
    assert extract_chain(m).relu == [False, False]
    m[2].weight = nn.Parameter(fastmlp.randn(2, 4))  # a new parameter object
    same_as_forward(m, x)
    m[2].weight.data = fastmlp.randn(2, 4)  # a new array behind the same parameter
    same_as_forward(m, x)


def test_custom_module_attribute_change_invalidates():
    m = NoReluAtEnd()
    x = X()
    same_as_forward(m, x)
    m.a = nn.Linear(5, 4)
    same_as_forward(m, x)
