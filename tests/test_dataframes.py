"""fit / predict / the estimators accept pandas and polars frames and series, and any object with
__array__ or __dlpack__, without a copy where the memory is already float32 and C-contiguous."""
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import nn
from fastmlp.trainer import _as_data, _f32, extract_chain, fit, predict, prepare_data


def model(d=4, out=1):
    fastmlp.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, out))


def arrays(n=64, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, (X[:, :1] * 2 - X[:, 1:2]).astype(np.float32)


class DLPackOnly:
    """Exposes only the DLPack protocol (no __array__)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


class ArrayLike:
    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def train_same(Xa, ya, X, y):
    """fit on (X, y) gives the weights fit on the numpy arrays gives; predict agrees too."""
    m1, m2 = model(Xa.shape[1]), model(Xa.shape[1])
    fit(m1, Xa, ya, epochs=2, batch_size=16, lr=0.05, seed=1)
    fit(m2, X, y, epochs=2, batch_size=16, lr=0.05, seed=1)
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    np.testing.assert_array_equal(predict(m2, X), predict(m1, Xa))


def test_no_copy_numpy_dlpack_array_like():
    X, y = arrays()
    chain = extract_chain(model())
    for wrap in (lambda a: a, DLPackOnly, ArrayLike):
        Xp, yp = prepare_data(chain, wrap(X), wrap(y))
        assert np.shares_memory(Xp, X) and np.shares_memory(yp, y)
    train_same(X, y, DLPackOnly(X), DLPackOnly(y))
    train_same(X, y, ArrayLike(X), ArrayLike(y))


def test_dlpack_from_torch_and_jax():
    torch = pytest.importorskip("torch")
    X, y = arrays()
    chain = extract_chain(model())
    Xt = torch.from_numpy(X)
    assert np.shares_memory(prepare_data(chain, DLPackOnly(Xt), y)[0], X)


def test_pandas():
    pd = pytest.importorskip("pandas")
    X, y = arrays()
    chain = extract_chain(model())
    df = pd.DataFrame(X, columns=list("abcd"), copy=False)  # one C-contiguous float32 block
    ys = pd.Series(y[:, 0].copy())
    Xp, yp = prepare_data(chain, df, ys)
    assert np.shares_memory(Xp, X)
    assert np.shares_memory(yp, ys.to_numpy())
    train_same(X, y, df, ys)
    train_same(X, y, pd.DataFrame(X.astype(np.float64), columns=list("abcd")), y[:, 0])
    mixed = pd.DataFrame({"a": X[:, 0], "b": X[:, 1].astype(np.float64), "c": (X[:, 2] > 0),
                          "d": pd.array((X[:, 3] * 10).astype(int), dtype="Int64")})
    ref = np.column_stack([X[:, 0], X[:, 1], X[:, 2] > 0, (X[:, 3] * 10).astype(int)]).astype(np.float32)
    np.testing.assert_array_equal(_f32(_as_data(mixed, "X")), ref)
    bad = df.assign(b=["x"] * len(df))
    with pytest.raises(TypeError, match="column 'b' has dtype"):
        fit(model(), bad, y, epochs=1, batch_size=8, lr=0.1)


def test_polars():
    pl = pytest.importorskip("polars")
    X, y = arrays()
    chain = extract_chain(model())
    ys = pl.Series("y", y[:, 0].copy())
    _, yp = prepare_data(chain, X, ys)
    assert np.shares_memory(yp, ys.to_numpy())  # a float32 Series without nulls: zero copy
    df = pl.DataFrame({k: X[:, i] for i, k in enumerate("abcd")})
    train_same(X, y, df, ys)
    with pytest.raises(TypeError, match="column 'b' has dtype"):
        predict(model(), df.with_columns(pl.lit("x").alias("b")))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_frames():
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPRegressor

    X, y = arrays(n=120)
    ref = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y[:, 0])
    inputs = [(DLPackOnly(X), DLPackOnly(y[:, 0].copy()))]
    try:
        import pandas as pd

        inputs.append((pd.DataFrame(X, columns=list("abcd")), pd.Series(y[:, 0])))
    except ImportError:
        pass
    try:
        import polars as pl

        inputs.append((pl.DataFrame({k: X[:, i] for i, k in enumerate("abcd")}), pl.Series(y[:, 0])))
    except ImportError:
        pass
    for Xf, yf in inputs:
        est = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(Xf, yf)
        np.testing.assert_allclose(est.predict(Xf), ref.predict(X), rtol=1e-6, atol=1e-6)
        if type(Xf).__name__ == "DataFrame":
            assert list(est.feature_names_in_) == list("abcd")
